"""Real corpora read in their published layouts (and the embedded one), behind one registry.

``registry.open_role(data_config, role)`` is the single entry point the pipelines and the
evaluation use.
"""
