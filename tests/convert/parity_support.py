"""Shared helpers for tests against HF transformers' PyTorch wav2vec2.

CI sets FASTVGS_REQUIRE_PARITY=1 so that a missing torch/transformers is an error there,
never a silent skip.
"""

from __future__ import annotations

import importlib
import os

import pytest


def require(module: str):
    """Import ``module``; skip when it is absent, unless CI requires parity tests."""
    if os.environ.get("FASTVGS_REQUIRE_PARITY") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason="install the parity extra: pip install -e .[parity]")
