"""Scaling-law sweeps: runs over model size × data fraction × step budget × schedule × seed,
run here one after another (resumable) or written out as cluster launch commands, and one
table per sweep (sweep.jsonl, sweep.md).

Modules (imported by name, so that reading a finished sweep's table imports no JAX):
``plan`` (the runs, their names, configs and cost), ``run`` (training, evaluation, rows and
tables, ``run_sweep``) and ``emit`` (SLURM, TPU VM and shell commands). The model sizes:
``fastvgs_jax.models.family``. The command: ``launch/sweep.py``; presets: ``configs/sweep.py``.
"""
