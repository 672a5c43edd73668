"""ABX of a run's layers on the abx split: utterances, items, scores, best layers, baselines."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from fastvgs_jax.data import sources
from fastvgs_jax.eval import abx, features
from fastvgs_jax.eval.snapshot import LoadedRun
from fastvgs_jax.models import fastvgs, speech

ABX_SPLIT = "abx"
SAMPLE_RATE = 16_000  # the corpus's, checked by sources.open_split


def abx_utterances(source, indices: Iterable[int] | None = None) -> dict[str, np.ndarray]:
    """utterance id → raw int16 waveform, for ``indices`` of the ABX split (default all)."""
    indices = range(len(source)) if indices is None else indices
    out = {}
    for i in indices:
        example = source[i]
        out[sources.decode_text(example["utterance_id"])] = np.asarray(example["audio"])
    return out


def abx_items(data_dir: str, preset: str, corpus_seed: int, files: Iterable[str] | None = None):
    """Rows of the corpus's ``abx.item``, only those of ``files`` when given."""
    path = os.path.join(sources.version_dir(data_dir, preset, corpus_seed), sources.ITEM_FILE)
    items = abx.read_item_file(path)
    if files is not None:
        keep = set(files)
        items = [item for item in items if item[0] in keep]
    return items


def abx_scores(
    features_by_layer: Mapping[str, Mapping[str, np.ndarray]],
    items: Sequence,
    *,
    frame_rate: float = 50.0,
    seed: int = 0,
    inclusive_end: bool = False,
    progress: bool = False,
    description: str = "ABX",
) -> tuple[dict[str, dict[str, float]], int]:
    """ABX error (percent) per feature set: ``({name: {"within", "across"}}, items kept)``."""
    rows, num_items = {}, 0
    for name in tqdm(list(features_by_layer), desc=description, disable=not progress, leave=False):
        result = abx.abx_error(
            features_by_layer[name],
            items,
            frame_rate=frame_rate,
            seed=seed,
            inclusive_end=inclusive_end,
        )
        rows[name] = result.as_percent()
        num_items = result.num_items
    return rows, num_items


def best_layers(rows: Mapping[str, Mapping[str, float]]) -> dict[str, str | None]:
    """The layer with the lowest error, per speaker mode (None when every value is NaN)."""
    best = {}
    for mode in abx.SPEAKER_MODES:
        finite = {name: row[mode] for name, row in rows.items() if math.isfinite(row[mode])}
        best[mode] = min(finite, key=finite.get) if finite else None
    return best


def mfcc_table(utterances: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: features.mfcc_features(wave) for name, wave in utterances.items()}


def _evaluate_abx(
    run: LoadedRun,
    data: dict,
    layer_ids: tuple[int, ...],
    seed: int,
    inclusive_end: bool,
    baselines: bool,
    random_init_seed: int | None,
    progress: bool,
) -> dict:
    """The ``abx`` section of ``evaluate_run``: trained layers, then the baseline rows."""
    source = sources.open_split(
        data["data_dir"], data["preset"], ABX_SPLIT, seed=data["corpus_seed"]
    )
    utterances = abx_utterances(source)
    items = abx_items(data["data_dir"], data["preset"], data["corpus_seed"])
    model_config = run.config.model
    frame_rate = SAMPLE_RATE / speech.frame_geometry(model_config).stride
    score = functools.partial(abx_scores, seed=seed, inclusive_end=inclusive_end, progress=progress)
    trained = features.extract_features(
        model_config, run.variables, utterances, layer_ids, progress=progress
    )
    rows, num_items = score(trained, items, frame_rate=frame_rate, description="ABX (trained)")
    del trained  # every layer of every utterance: the largest thing held here
    out = {
        "split": ABX_SPLIT,
        "utterances": len(utterances),
        "num_items": num_items,
        "seed": seed,
        "end": "inclusive" if inclusive_end else "exclusive (reference)",
        "frame_rate": frame_rate,
        "trained": rows,
        "best_layer": best_layers(rows),
    }
    if baselines:
        if random_init_seed is None:
            random_init_seed = int(run.config.seed)
        run_key = jax.random.key(random_init_seed, impl=run.config.prng_impl)
        random_vars = fastvgs.init_variables(model_config, fastvgs.split_run_key(run_key)[0])
        random_features = features.extract_features(
            model_config, random_vars, utterances, layer_ids, progress=progress
        )
        out["random_init"], _ = score(
            random_features, items, frame_rate=frame_rate, description="ABX (random init)"
        )
        out["random_init_seed"] = random_init_seed
        mfcc = {"mfcc": mfcc_table(utterances)}  # 20 ms hop: 50 Hz
        mfcc_rows, _ = score(mfcc, items, frame_rate=50.0, description="ABX (MFCC)")
        out["mfcc"] = mfcc_rows["mfcc"]
    return out
