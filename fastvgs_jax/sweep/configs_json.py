"""Sweep configs as JSON: what ``--emit`` writes and ``configs/resolved.py`` reads back."""

from __future__ import annotations

import json
from collections.abc import Mapping

import ml_collections


def config_json(config: ml_collections.ConfigDict) -> str:
    return config.to_json_best_effort(indent=1, sort_keys=False)


def _restore(value):
    if isinstance(value, Mapping):
        return ml_collections.ConfigDict({k: _restore(v) for k, v in value.items()})
    if isinstance(value, list):
        items = [_restore(v) for v in value]
        # Lists of sections (the run's phases) stay lists; lists of values were tuples.
        return (
            items if any(isinstance(v, ml_collections.ConfigDict) for v in items) else tuple(items)
        )
    return value


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A config written by ``config_json`` (or a run manifest's ``config``) as a ConfigDict:
    sections as ConfigDicts, the phases as a list of them, other lists as tuples."""
    value = json.loads(text)
    if isinstance(value, Mapping) and "config" in value and "started" in value:
        value = value["config"]  # a run's manifest.json
    return _restore(value)
