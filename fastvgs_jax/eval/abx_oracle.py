"""ABX cross-checks: the reference libriabx oracle and a synthetic item set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fastvgs_jax.eval.abx_items import SPEAKER_MODES, Item, write_item_file

# --------------------------------------------------------------------------------------------
# Optional oracle: the reference package, run in its own interpreter
# --------------------------------------------------------------------------------------------

ORACLE_PYTHON_ENV = "FASTVGS_ABX_ORACLE_PYTHON"

_ORACLE_SCRIPT = """
import json, os, random, sys
import numpy as np, torch
from libriabx.libri_light import eval_ABX
feature_dir, item_path, rate, modes, max_x, max_group = json.loads(sys.argv[1])
random.seed(0)
seq = sorted((f[:-4], os.path.join(feature_dir, f)) for f in os.listdir(feature_dir))
load = lambda p: torch.tensor(np.load(p))
scores = eval_ABX.ABX(load, item_path, seq, "cosine", rate, modes, cuda=False,
                      max_x_across=max_x, max_size_group=max_group)
print("ORACLE " + json.dumps(scores))
"""


def oracle_python() -> str | None:
    """An interpreter that can import the reference ``libriabx`` package, or None.

    ``$FASTVGS_ABX_ORACLE_PYTHON`` if set (a side virtual environment, see docs/abx.md), else
    this interpreter if it happens to have the package.
    """
    if os.environ.get(ORACLE_PYTHON_ENV):
        return os.environ[ORACLE_PYTHON_ENV]
    try:
        import libriabx  # noqa: F401
    except Exception:  # the package or one of its heavy dependencies is missing
        return None
    return sys.executable


def oracle_abx_error(
    features: Mapping[str, np.ndarray],
    items: Iterable[Item],
    *,
    frame_rate: float = 50.0,
    max_x_speakers: int = 5,
    max_group_size: int = 10,
    speaker_modes: Sequence[str] = SPEAKER_MODES,
    python: str | None = None,
    timeout_s: float = 600.0,
) -> dict[str, float]:
    """Error fractions from the reference ``zerospeech-libriabx`` 1.0.5, for cross-checks only.

    Runs the package in a subprocess (``python``, default ``oracle_python()``) on ``features``
    saved as float32 ``.npy`` files. Its subsampling is unseeded: compare only on sets where
    no group exceeds ``max_group_size`` and no (context, phone) has more other speakers than
    ``max_x_speakers``.

    Raises:
      RuntimeError: when no oracle interpreter is available or the package fails.
    """
    python = python or oracle_python()
    if python is None:
        raise RuntimeError(f"no interpreter with libriabx; set ${ORACLE_PYTHON_ENV}")
    with tempfile.TemporaryDirectory() as tmp:
        feature_dir = os.path.join(tmp, "features")
        os.makedirs(feature_dir)
        for stem, x in features.items():
            np.save(os.path.join(feature_dir, f"{stem}.npy"), np.asarray(x, np.float32))
        item_path = os.path.join(tmp, "items.item")
        write_item_file(item_path, items)
        settings = [frame_rate, list(speaker_modes), max_x_speakers, max_group_size]
        args = json.dumps([feature_dir, item_path, *settings])
        proc = subprocess.run(
            [python, "-c", _ORACLE_SCRIPT, args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ORACLE ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"libriabx oracle failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {k: float(v) for k, v in json.loads(lines[-1][len("ORACLE ") :]).items()}


def synthetic_abx_set(
    seed: int = 0,
    *,
    num_speakers: int = 4,
    num_phones: int = 4,
    num_contexts: int = 5,
    max_tokens_per_group: int = 4,
    dim: int = 16,
    frame_rate: float = 50.0,
    silence_fraction: float = 0.1,
    noise: float = 1.2,
) -> tuple[dict[str, np.ndarray], list[Item]]:
    """A random item set with its features, for tests and benchmarks.

    Every speaker says 1..``max_tokens_per_group`` tokens of every (context, phone); a token
    is 2..8 frames of ``phone prototype + speaker and context offsets + noise`` (noise
    standard deviation ``noise``; at the default and ``dim=16`` errors are around 10-25 %;
    higher ``dim`` needs more noise for the same error). Tokens are strung into utterances
    with gaps; onsets and offsets carry sub-frame jitter so both rounding directions occur; a
    fraction of tokens starts with an all-zero frame; each utterance's last item runs past
    its end.

    Returns:
      (features: utterance id -> [frames, dim] float32, item rows).
    """
    rng = np.random.default_rng(seed)
    phone_protos = rng.normal(size=(num_phones, dim))
    speaker_offsets = 0.7 * rng.normal(size=(num_speakers, dim))
    context_offsets = 0.5 * rng.normal(size=(num_contexts, dim))
    features: dict[str, np.ndarray] = {}
    items: list[Item] = []
    for s in range(num_speakers):
        tokens = [
            (c, p)
            for c in range(num_contexts)
            for p in range(num_phones)
            for _ in range(rng.integers(1, max_tokens_per_group + 1))
        ]
        rng.shuffle(tokens)
        for u, start in enumerate(range(0, len(tokens), 12)):
            file_id = f"spk{s}-utt{u}"
            frames, spans = [rng.normal(size=(2, dim))], []
            position = 2
            for c, p in tokens[start : start + 12]:
                size = int(rng.integers(2, 9))
                seg = phone_protos[p] + speaker_offsets[s] + context_offsets[c]
                seg = seg + noise * rng.normal(size=(size, dim))
                if rng.random() < silence_fraction:
                    seg[0] = 0.0
                frames.append(seg)
                frames.append(rng.normal(size=(1, dim)))
                spans.append((position, position + size, c, p))
                position += size + 1
            x = np.concatenate(frames).astype(np.float32)
            features[file_id] = x
            for k, (lo, hi, c, p) in enumerate(spans):
                onset = max(0.0, (lo + rng.uniform(-0.45, 0.45)) / frame_rate)
                offset = (hi + 0.5 + rng.uniform(-0.45, 0.45)) / frame_rate
                if k == len(spans) - 1:
                    offset = (len(x) + 2.0) / frame_rate  # past the end: clipped to T
                items.append((file_id, onset, offset, f"P{p}", "L", f"R{c}", f"spk{s}"))
    return features, items
