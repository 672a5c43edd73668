"""Evaluating a run: cross-modal retrieval and per-layer ABX of a snapshot, a report, and a
hook that tracks both on a small fixed subset while training.

- ``evaluate_run(workdir, snapshot, tasks, layers, split)``: retrieval in both directions on a
  split (every unique image encoded once, every caption), and ABX within/across speakers for
  each chosen layer of the snapshot, of a randomly initialised encoder of the same
  architecture, and of MFCCs. ``write_report`` writes ``evaluation.json`` and
  ``evaluation.md``. ``launch/evaluate.py`` is its command line.
- ``EvaluationHook``: the trainer's ``eval_hook``; appends one line per call to
  ``WORKDIR/eval_history.jsonl`` and redraws ``WORKDIR/eval_history.png`` (``plot_history``).

All numbers are percentages. Retrieval follows ``eval/retrieval.py`` (pessimistic ties) on the
run's training view of a caption (its audio-image crop length, from the start), so the VGS
branch sees what it was trained on; ABX follows ``eval/abx.py`` on whole utterances
(``eval/features.py``). Evaluation runs in float32 whatever the run's training precision.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from fastvgs_jax import workdir as workdir_lib
from fastvgs_jax.data import pipelines, sources
from fastvgs_jax.eval import abx, features, retrieval
from fastvgs_jax.models import fastvgs, speech

log = logging.getLogger(__name__)

TASKS = ("retrieval", "abx")
REPORT_JSON = "evaluation.json"
REPORT_MARKDOWN = "evaluation.md"
HISTORY_FILE = "eval_history.jsonl"
HISTORY_PLOT = "eval_history.png"
ABX_SPLIT = "abx"
SAMPLE_RATE = 16_000  # the corpus's, checked by sources.open_split


class EvaluationError(RuntimeError):
    """A run that cannot be evaluated as asked (no manifest, unknown task, no history)."""


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    workdir: str
    config: ml_collections.ConfigDict  # the resolved run config from the manifest
    variables: dict  # {"params", "batch_stats"} as numpy arrays
    step: int
    phase: str | None
    requested: str  # the snapshot name asked for ("latest" when none)


def read_manifest(workdir: str) -> dict:
    """The workdir's ``manifest.json`` (EvaluationError naming the path when missing)."""
    manifest = workdir_lib.read_manifest(workdir)
    if manifest is None:
        raise EvaluationError(f"{workdir} is not a run directory: no {workdir_lib.MANIFEST}")
    return manifest


def run_config(workdir: str) -> ml_collections.ConfigDict:
    """The run config recorded in the manifest (tuples come back as lists; every reader of
    these fields converts with ``tuple(...)``)."""
    return ml_collections.ConfigDict(read_manifest(workdir)["config"])


def load_run(workdir: str, snapshot: str | int | None = None) -> LoadedRun:
    """Config and model variables of one snapshot (a step, a phase name, or None = latest).

    Raises:
      EvaluationError: no manifest. workdir_lib.SnapshotError: no such snapshot (listing those
        there are).
    """
    config = run_config(workdir)
    name = None if snapshot is None else str(snapshot)
    variables, step, meta = workdir_lib.load_variables(workdir, name)
    return LoadedRun(workdir, config, variables, step, meta.get("phase"), name or "latest")


def _data_dir(config: ml_collections.ConfigDict, override: str | None) -> str:
    return override if override is not None else str(config.data.data_dir)


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _embedders(model_json: str):
    """Jitted ``(variables, audio, frame_mask) → [B, D]`` and ``(variables, image) → [B, D]``
    (variables are arguments: trained and random weights share the executables)."""
    model = fastvgs.FaSTVGSPlus(ml_collections.ConfigDict(json.loads(model_json)))
    audio = jax.jit(lambda v, a, m: model.apply(v, a, m, method=model.encode_audio))
    image = jax.jit(lambda v, x: model.apply(v, x, method=model.encode_image))
    return audio, image


def caption_spec(
    config: ml_collections.ConfigDict,
    batch_size: int | None = None,
    crop_seconds: float | None = None,
) -> pipelines.StreamSpec:
    """The run's audio-image stream spec (crop length, frame geometry), batch size replaced."""
    spec = pipelines.stream_spec(config.data, pipelines.AUDIO_IMAGE)
    changes = {"min_seconds": 0.0}  # evaluation keeps every caption
    if batch_size is not None:
        changes["batch_size"] = int(batch_size)
    if crop_seconds is not None:
        changes["crop_seconds"] = float(crop_seconds)
    return dataclasses.replace(spec, **changes)


def embed_captions(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    batches: Iterable[dict],
    *,
    progress: bool = False,
    total: int | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """Audio embeddings of every caption, and the first normalised image of each image id.

    Args:
      batches: ``pipelines.evaluation_batches`` output (fixed shapes, ``example_mask``).
    Returns:
      ([captions, D] float32, [captions] image ids, {image id: [H, W, 3] float32}).
    """
    encode_audio, _ = _embedders(model_config.to_json())
    embeddings, image_ids, images = [], [], {}
    for batch in tqdm(batches, desc="captions", total=total, disable=not progress, leave=False):
        keep = np.asarray(batch["example_mask"])
        emb = jax.device_get(encode_audio(variables, batch["audio"], batch["frame_mask"]))
        embeddings.append(np.asarray(emb, np.float32)[keep])
        for image_id, image in zip(batch["image_id"][keep], batch["image"][keep], strict=True):
            image_ids.append(int(image_id))
            if int(image_id) not in images:  # a copy: a view would keep the whole batch alive
                images[int(image_id)] = np.array(image)
    return np.concatenate(embeddings), np.asarray(image_ids, np.int64), images


def embed_images(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    images: Sequence[np.ndarray],
    batch_size: int,
) -> np.ndarray:
    """[images, D] float32 embeddings, in fixed-size batches (the last one padded)."""
    _, encode_image = _embedders(model_config.to_json())
    out = []
    for start in range(0, len(images), batch_size):
        chunk = list(images[start : start + batch_size])
        count = len(chunk)
        chunk += [chunk[-1]] * (batch_size - count)  # filler rows: one compiled shape
        emb = jax.device_get(encode_image(variables, np.stack(chunk)))
        out.append(np.asarray(emb, np.float32)[:count])
    return np.concatenate(out)


def retrieval_metrics(
    model_config: ml_collections.ConfigDict,
    variables: Mapping,
    batches: Iterable[dict],
    batch_size: int,
    *,
    ks: Sequence[int] = (1, 5, 10, 100),
    progress: bool = False,
    total: int | None = None,
) -> dict:
    """Recall@K in both directions (percent) of captions against their unique images.

    Returns:
      ``{"speech_to_image": {"r1": %, ...}, "image_to_speech": {...}, "mean_r1": %,
      "num_images", "num_captions"}``.
    """
    audio, image_ids, images = embed_captions(
        model_config, variables, batches, progress=progress, total=total
    )
    unique_ids, caption_image = retrieval.caption_image_index(image_ids)
    image_emb = embed_images(
        model_config, variables, [images[int(i)] for i in unique_ids], batch_size
    )
    recalls = retrieval.retrieval_recalls(image_emb, audio, caption_image, ks)
    out: dict = {"speech_to_image": {}, "image_to_speech": {}}
    for key, value in recalls.items():
        direction, _, k = key.rpartition("_")
        if direction in out:
            out[direction][k] = 100.0 * value
    out["mean_r1"] = 100.0 * recalls["mean_r1"]
    out["num_images"], out["num_captions"] = int(len(unique_ids)), int(len(audio))
    return out


# --------------------------------------------------------------------------------------------
# ABX
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# evaluate_run
# --------------------------------------------------------------------------------------------


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise EvaluationError(f"tasks {list(tasks)}: expected a non-empty subset of {TASKS}")
    return tasks


def evaluate_run(
    workdir: str,
    snapshot: str | int | None = None,
    tasks: Sequence[str] = TASKS,
    layers: str | Sequence[int | str] = "all",
    split: str = "test",
    *,
    data_dir: str | None = None,
    batch_size: int | None = None,
    ks: Sequence[int] = (1, 5, 10, 100),
    abx_seed: int = 0,
    inclusive_end: bool = False,
    baselines: bool = True,
    random_init_seed: int | None = None,
    progress: bool = True,
) -> dict:
    """Retrieval and/or per-layer ABX of one snapshot of a run (percentages).

    Args:
      workdir: the run's directory (manifest and snapshots).
      snapshot: a step, a phase name (that phase's last snapshot) or None (the newest).
      tasks: any of "retrieval", "abx".
      layers: ABX layers, "all" or e.g. "frontend,1,3" (see ``features.parse_layers``).
      split: the retrieval split (every caption; each unique image once).
      data_dir: where the corpus is (default: the run config's ``data.data_dir``).
      batch_size: captions/images/… per batch (default: the run's audio-image batch).
      abx_seed, inclusive_end: ABX subsampling seed and frame convention (``abx.abx_error``).
      baselines: also score MFCCs and a randomly initialised encoder on the same ABX items
        and layers: the very encoder a run of the run's config and seed ``random_init_seed``
        (None: the run's own seed, so the one it started from) is initialised to.
    Returns:
      A JSON-able dict: ``snapshot``, ``model``, ``data`` and ``retrieval`` / ``abx``.
    Raises:
      EvaluationError, workdir_lib.SnapshotError, sources.CorpusError, ValueError (layers).
    """
    tasks = _check_tasks(tasks)
    # Validate what was asked before reading any snapshot.
    layer_ids = features.parse_layers(layers, int(run_config(workdir).model.num_layers))
    run = load_run(workdir, snapshot)
    config = run.config
    data = {
        "data_dir": _data_dir(config, data_dir),
        "preset": str(config.data.preset),
        "corpus_seed": int(config.data.corpus_seed),
    }
    results: dict = {
        "workdir": os.path.abspath(workdir),
        "evaluated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "units": "percent",
        "snapshot": {"requested": run.requested, "step": run.step, "phase": run.phase},
        "model": {
            "size": str(config.model.get("size", "?")),
            "frontend": str(config.model.frontend),
            "num_layers": int(config.model.num_layers),
            "vgs_layer": int(config.model.vgs_layer),
        },
        "data": data,
    }
    if "retrieval" in tasks:
        spec = caption_spec(config, batch_size)
        source = sources.open_split(
            data["data_dir"], data["preset"], split, seed=data["corpus_seed"]
        )
        batches = pipelines.evaluation_batches(source, pipelines.AUDIO_IMAGE, spec)
        scores = retrieval_metrics(
            config.model,
            run.variables,
            batches,
            spec.batch_size,
            ks=ks,
            progress=progress,
            total=-(-len(source) // spec.batch_size),
        )
        results["retrieval"] = {"split": split, "crop_seconds": spec.crop_seconds, **scores}
    if "abx" in tasks:
        results["abx"] = _evaluate_abx(
            run, data, layer_ids, abx_seed, inclusive_end, baselines, random_init_seed, progress
        )
    return results


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


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _json_safe(value):
    """NaN/inf → None, recursively (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.1f}"


def _layer_label(name: str) -> str:
    return name.replace("_", " ")


def _retrieval_markdown(section: Mapping) -> list[str]:
    lines = [
        f"## Retrieval ({section['split']} split: {section['num_images']} images, "
        f"{section['num_captions']} captions, first {section['crop_seconds']:g} s of each)",
        "",
        "| direction | R@1 | R@5 | R@10 |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("speech_to_image", "speech → image (caption finds its image)"),
        ("image_to_speech", "image → speech (image finds any of its captions)"),
    ):
        r = section[key]
        lines.append(
            f"| {label} | {_pct(r.get('r1'))} | {_pct(r.get('r5'))} | {_pct(r.get('r10'))} |"
        )
    lines += ["", f"Mean R@1 (model selection): {_pct(section['mean_r1'])} %", ""]
    return lines


def _abx_markdown(section: Mapping) -> list[str]:
    lines = [
        f"## ABX phone discriminability (error %, lower is better; {section['num_items']} "
        f"triphone items from {section['utterances']} utterances, seed {section['seed']}, "
        f"end frame {section['end']})",
        "",
        "| features | layer | within speaker | across speakers |",
        "|---|---|---|---|",
    ]
    best = section.get("best_layer", {})

    def cell(name: str, row: Mapping, mode: str, mark: bool) -> str:
        text = _pct(row.get(mode))
        return f"**{text}** (best)" if mark and best.get(mode) == name else text

    for source, label in (("trained", "trained"), ("random_init", "random init")):
        for name, row in section.get(source, {}).items():
            within = cell(name, row, "within", source == "trained")
            across = cell(name, row, "across", source == "trained")
            lines.append(f"| {label} | {_layer_label(name)} | {within} | {across} |")
    if "mfcc" in section:
        mfcc = section["mfcc"]
        lines.append(
            f"| MFCC (13 + Δ + ΔΔ) | — | {_pct(mfcc['within'])} | {_pct(mfcc['across'])} |"
        )
    lines.append("")
    return lines


def report_markdown(results: Mapping) -> str:
    """The markdown report of ``evaluate_run`` results."""
    snap = results["snapshot"]
    lines = [
        f"# Evaluation of {results['workdir']}",
        "",
        f"Snapshot: step {snap['step']} (phase {snap['phase']}; asked for {snap['requested']}). "
        f"Model: {results['model']['size']}, {results['model']['frontend']} frontend, "
        f"{results['model']['num_layers']} layers. Corpus: spoken_scenes/"
        f"{results['data']['preset']} (seed {results['data']['corpus_seed']}).",
        "",
    ]
    if "retrieval" in results:
        lines += _retrieval_markdown(results["retrieval"])
    if "abx" in results:
        lines += _abx_markdown(results["abx"])
    return "\n".join(lines)


def write_report(results: Mapping, out_dir: str) -> tuple[str, str]:
    """Write ``evaluation.json`` and ``evaluation.md`` to ``out_dir``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = os.path.join(out_dir, REPORT_JSON)
    md_path = os.path.join(out_dir, REPORT_MARKDOWN)
    with open(json_path, "w") as f:
        json.dump(_json_safe(results), f, indent=1, allow_nan=False)
    with open(md_path, "w") as f:
        f.write(report_markdown(results))
    return json_path, md_path


# --------------------------------------------------------------------------------------------
# During training: the evaluation hook and its history plot
# --------------------------------------------------------------------------------------------


def caption_subset(source, num_images: int, captions_per_image: int) -> list[int]:
    """Indices of the first ``captions_per_image`` captions of the first ``num_images``
    distinct images, in split order (every chosen image keeps at least one caption)."""
    taken: dict[int, int] = {}
    chosen = []
    for i in range(len(source)):
        image_id = int(source[i]["image_id"])
        if image_id not in taken:
            if len(taken) == num_images:
                continue
            taken[image_id] = 0
        if taken[image_id] < captions_per_image:
            taken[image_id] += 1
            chosen.append(i)
    return chosen


def sentence_subset(source, count: int) -> list[int]:
    """About ``count`` ABX utterances, whole sentences at a time (every speaker's reading of
    a sentence), so that both within- and across-speaker cells exist."""
    by_text: dict[str, list[int]] = collections.defaultdict(list)
    for i in range(len(source)):
        by_text[sources.decode_text(source[i]["text"])].append(i)
    chosen: list[int] = []
    for text in sorted(by_text):
        if len(chosen) >= count:
            break
        chosen += by_text[text]
    return sorted(chosen)


class EvaluationHook:
    """``eval_hook(state, step, phase)`` for ``train.loop.train``: retrieval and ABX on a fixed
    small subset, one JSON line per call in ``WORKDIR/eval_history.jsonl``.

    The subset (the first ``num_images`` images of ``split`` with up to
    ``captions_per_image`` captions each, and about ``num_abx_utterances`` ABX utterances,
    whole sentences at a time) is read once, at the first call; a count of 0 turns that task
    off. ``layers`` default to the frontend, the VGS layer and the last layer. Lines are
    written by process 0 only.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str,
        *,
        split: str = "validation",
        num_images: int = 32,
        captions_per_image: int = 2,
        num_abx_utterances: int = 64,
        layers: str | Sequence[int | str] | None = None,
        abx_seed: int = 0,
        plot: bool = True,
    ):
        self.config = config
        self.workdir = workdir
        self.split = split
        self.num_images = num_images
        self.captions_per_image = captions_per_image
        self.num_abx_utterances = num_abx_utterances
        num_layers = int(config.model.num_layers)
        if layers is None:
            layers = [0, int(config.model.vgs_layer), num_layers]
        self.layers = features.parse_layers(layers, num_layers)
        self.abx_seed = abx_seed
        self.plot = plot
        self._inputs = None

    def _load_inputs(self) -> dict:
        data = self.config.data
        inputs = {"batches": [], "batch_size": 0, "utterances": {}, "items": []}
        if self.num_images > 0 and self.captions_per_image > 0:
            captions = sources.open_split(data.data_dir, data.preset, self.split, data.corpus_seed)
            chosen = caption_subset(captions, self.num_images, self.captions_per_image)
            subset = [captions[i] for i in chosen]
            spec = caption_spec(self.config, min(len(subset), int(data.audio_image.batch_size)))
            # Materialised once: a list is a random-access source, and these are small.
            batches = pipelines.evaluation_batches(subset, pipelines.AUDIO_IMAGE, spec)
            inputs.update(batches=list(batches), batch_size=spec.batch_size)
        if self.num_abx_utterances > 0:
            abx_source = sources.open_split(data.data_dir, data.preset, ABX_SPLIT, data.corpus_seed)
            chosen = sentence_subset(abx_source, self.num_abx_utterances)
            utterances = abx_utterances(abx_source, chosen)
            items = abx_items(data.data_dir, data.preset, data.corpus_seed, utterances)
            inputs.update(utterances=utterances, items=items)
        return inputs

    def metrics(self, variables: Mapping) -> dict[str, float]:
        """Flat metrics (percent) of ``variables`` on the subset."""
        if self._inputs is None:
            self._inputs = self._load_inputs()
        inputs = self._inputs
        out = {}
        if inputs["batches"]:
            scores = retrieval_metrics(
                self.config.model, variables, inputs["batches"], inputs["batch_size"], ks=(1, 5, 10)
            )
            out.update({f"speech_to_image_{k}": v for k, v in scores["speech_to_image"].items()})
            out.update({f"image_to_speech_{k}": v for k, v in scores["image_to_speech"].items()})
            out["mean_r1"] = scores["mean_r1"]
        if inputs["items"]:
            extracted = features.extract_features(
                self.config.model, variables, inputs["utterances"], self.layers
            )
            frame_rate = SAMPLE_RATE / speech.frame_geometry(self.config.model).stride
            rows, _ = abx_scores(
                extracted, inputs["items"], frame_rate=frame_rate, seed=self.abx_seed
            )
            for name, row in rows.items():
                for mode, value in row.items():
                    out[f"abx_{mode}/{name}"] = value
        return out

    def __call__(self, state, step: int, phase: str) -> dict[str, float]:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        values = self.metrics(variables)
        if jax.process_index() == 0:
            line = {"step": int(step), "phase": phase, "metrics": _json_safe(values)}
            with open(os.path.join(self.workdir, HISTORY_FILE), "a") as f:
                f.write(json.dumps(line) + "\n")
            if self.plot:
                self._plot()
        return values

    def _plot(self) -> None:
        try:
            plot_history(self.workdir)
        except ImportError as error:  # matplotlib is optional: never stop training for a plot
            log.warning("no evaluation plot (%s); install matplotlib", error)
            self.plot = False


def read_history(workdir: str) -> list[dict]:
    """History lines in step order; when a resumed run repeats a step, its last line wins."""
    path = os.path.join(workdir, HISTORY_FILE)
    if not os.path.exists(path):
        raise EvaluationError(f"no evaluation history at {path}")
    by_step = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                entry = json.loads(line)
                by_step[int(entry["step"])] = entry
    return [by_step[s] for s in sorted(by_step)]


def phase_boundaries(workdir: str) -> list[tuple[int, str]]:
    """(step, name of the phase starting there) for every phase after the first."""
    try:
        phases = read_manifest(workdir)["config"].get("phases") or []
    except EvaluationError:
        return []
    out, total = [], 0
    for previous, phase in zip(phases, phases[1:], strict=False):
        total += int(previous["steps"])
        out.append((total, str(phase["name"])))
    return out


def _natural_key(name: str) -> list:
    """Numbers compare as numbers: r5 before r10, layer_2 before layer_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


_PANELS = (
    ("speech → image recall (%)", "speech_to_image_"),
    ("image → speech recall (%)", "image_to_speech_"),
    ("ABX within speaker (error %)", "abx_within/"),
    ("ABX across speakers (error %)", "abx_across/"),
)


def plot_history(workdir: str, out_path: str | None = None) -> str:
    """One PNG of every history metric over steps (one panel per metric family), with the
    phase boundaries from the manifest marked; returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415 - no pyplot: no global backend

    history = read_history(workdir)
    steps = [entry["step"] for entry in history]
    names = sorted({name for entry in history for name in entry["metrics"]}, key=_natural_key)
    panels = [(title, [n for n in names if n.startswith(p)], p) for title, p in _PANELS]
    panels = [panel for panel in panels if panel[1]]
    figure = Figure(figsize=(6 * min(2, len(panels)), 3.6 * math.ceil(len(panels) / 2)))
    FigureCanvasAgg(figure)
    for index, (title, metric_names, prefix) in enumerate(panels):
        axes = figure.add_subplot(math.ceil(len(panels) / 2), min(2, len(panels)), index + 1)
        for name in metric_names:
            values = [entry["metrics"].get(name) for entry in history]
            values = [np.nan if v is None else v for v in values]
            axes.plot(steps, values, marker="o", label=name[len(prefix) :].replace("_", " "))
        for boundary, phase in phase_boundaries(workdir):
            axes.axvline(boundary, color="grey", linestyle="--", linewidth=1)
            axes.annotate(
                phase,
                (boundary, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                color="grey",
                fontsize=8,
            )
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("step")
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    figure.suptitle(os.path.basename(os.path.abspath(workdir)))
    figure.tight_layout()
    out_path = out_path or os.path.join(workdir, HISTORY_PLOT)
    figure.savefig(out_path, dpi=100)
    return out_path
