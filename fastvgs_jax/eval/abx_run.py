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
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import abx, features
from fastvgs_jax.eval.snapshot import LoadedRun
from fastvgs_jax.models import fastvgs, speech

ABX_SPLIT = "abx"
SAMPLE_RATE = 16_000  # the corpus's, checked by sources.open_split


def abx_utterances(
    source, indices: Iterable[int] | None = None, only: set[str] | None = None
) -> dict[str, np.ndarray]:
    """utterance id → raw int16 waveform, for ``indices`` of the ABX split (default all),
    only the utterances named in ``only`` when given (the files of an item file)."""
    indices = range(len(source)) if indices is None else indices
    entries = source.index.entries if hasattr(source, "index") else None
    out = {}
    for i in indices:
        if only is not None and entries is not None and entries[i].utterance_id not in only:
            continue  # a real corpus's index tells without decoding the audio
        example = source[i]
        name = sources.decode_text(example["utterance_id"])
        if only is None or name in only:
            out[name] = np.asarray(example["audio"])
    return out


def abx_set(data_config) -> tuple[dict[str, np.ndarray], list]:
    """The ABX utterances (those the item file names) and the item rows over them.

    Raises:
      CorpusError: an item file naming utterances the ABX corpus split does not have.
    """
    items = abx.read_item_file(item_file_path(data_config))
    wanted = {item[0] for item in items}
    utterances = abx_utterances(registry.open_role(data_config, "abx"), only=wanted)
    missing = sorted(wanted - set(utterances))
    if missing:
        corpus, split = registry.role_config(data_config, "abx")
        raise sources.CorpusError(
            f"{len(missing)} of the {len(wanted)} files of {item_file_path(data_config)} are not "
            f"in {corpus}/{split} (e.g. {', '.join(missing[:5])})"
        )
    return utterances, items


def item_file_path(data_config) -> str:
    """The ABX item file a data config names: ``data.abx.item_file`` (e.g. Libri-light's
    ``dev-clean.item``), or the embedded corpus's own ``abx.item``."""
    configured = str((data_config.get("abx") or {}).get("item_file", "") or "")
    if configured:
        return configured
    corpus, _ = registry.role_config(data_config, "abx")
    if corpus != registry.EMBEDDED:
        raise sources.CorpusError(
            f"data.abx.corpus={corpus!r} needs data.abx.item_file (e.g. Libri-light's "
            "dev-clean.item)"
        )
    version = sources.version_dir(data_config.data_dir, data_config.preset, data_config.corpus_seed)
    return os.path.join(version, sources.ITEM_FILE)


def abx_items(data_config, files: Iterable[str] | None = None):
    """Rows of the data config's ABX item file, only those of ``files`` when given."""
    items = abx.read_item_file(item_file_path(data_config))
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
    data_config,
    layer_ids: tuple[int, ...],
    seed: int,
    inclusive_end: bool,
    baselines: bool,
    random_init_seed: int | None,
    progress: bool,
) -> dict:
    """The ``abx`` section of ``evaluate_run``: trained layers, then the baseline rows."""
    utterances, items = abx_set(data_config)
    model_config = run.config.model
    frame_rate = SAMPLE_RATE / speech.frame_geometry(model_config).stride
    score = functools.partial(abx_scores, seed=seed, inclusive_end=inclusive_end, progress=progress)
    trained = features.extract_features(
        model_config, run.variables, utterances, layer_ids, progress=progress
    )
    rows, num_items = score(trained, items, frame_rate=frame_rate, description="ABX (trained)")
    del trained  # every layer of every utterance: the largest thing held here
    corpus, split = registry.role_config(data_config, "abx")
    out = {
        "corpus": corpus,
        "split": split,
        "item_file": item_file_path(data_config),
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
