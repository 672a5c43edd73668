"""During training: the EvaluationHook, its ``eval_history.jsonl`` and the history plot."""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence

import jax
import ml_collections
import numpy as np

from fastvgs_jax.data import pipelines, sources
from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import features
from fastvgs_jax.eval.abx_run import SAMPLE_RATE, abx_items, abx_scores, abx_utterances
from fastvgs_jax.eval.report import _json_safe
from fastvgs_jax.eval.retrieval_run import caption_spec, retrieval_metrics
from fastvgs_jax.eval.snapshot import EvaluationError, read_manifest
from fastvgs_jax.models import speech

log = logging.getLogger(__name__)

HISTORY_FILE = "eval_history.jsonl"
HISTORY_PLOT = "eval_history.png"


def caption_subset(source, num_images: int, captions_per_image: int) -> list[int]:
    """Indices of the first ``captions_per_image`` captions of the first ``num_images``
    distinct images, in split order (every chosen image keeps at least one caption)."""
    taken: dict[int, int] = {}
    chosen = []
    for i in range(len(source)):
        image_id = int(_field(source, i, "image_id"))
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
    if hasattr(source, "index"):
        return speaker_subset(source, count)
    by_text: dict[str, list[int]] = collections.defaultdict(list)
    for i in range(len(source)):
        by_text[sources.decode_text(source[i]["text"])].append(i)
    chosen: list[int] = []
    for text in sorted(by_text):
        if len(chosen) >= count:
            break
        chosen += by_text[text]
    return sorted(chosen)


def speaker_subset(source, count: int, speakers: int = 4) -> list[int]:
    """About ``count`` utterances of a real corpus's ABX split (read speech: no sentence is
    read twice), ``count / speakers`` from each of the first ``speakers`` speakers, so that
    within-speaker cells (several utterances of one speaker) and across-speaker cells exist."""
    by_speaker: dict[str, list[int]] = collections.defaultdict(list)
    for i, entry in enumerate(source.index.entries):
        by_speaker[entry.speaker].append(i)
    per_speaker = max(1, -(-count // speakers))
    chosen = [i for name in sorted(by_speaker)[:speakers] for i in by_speaker[name][:per_speaker]]
    return sorted(chosen)


def _field(source, index: int, name: str):
    """One label of an example, from a real corpus's index when it has one (no decoding)."""
    if hasattr(source, "index"):
        return getattr(source.index.entries[index], name)
    return source[index][name]


class EvaluationHook:
    """``eval_hook(state, step, phase)`` for ``train.loop.train``: retrieval and ABX on a fixed
    small subset, one JSON line per call in ``WORKDIR/eval_history.jsonl``.

    The subset (the first ``num_images`` images of ``split``, default ``data.validation``,
    with up to ``captions_per_image`` captions each, and about ``num_abx_utterances`` ABX
    utterances, whole sentences at a time) is read once, at the first call; a count of 0 turns
    that task off. ``layers`` default to the frontend, the VGS layer and the last layer. Lines are
    written by process 0 only.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str,
        *,
        split: str | None = None,
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
            captions = registry.open_role(data, "validation", split=self.split)
            chosen = caption_subset(captions, self.num_images, self.captions_per_image)
            subset = [captions[i] for i in chosen]
            spec = caption_spec(self.config, min(len(subset), int(data.audio_image.batch_size)))
            # Materialised once: a list is a random-access source, and these are small.
            batches = pipelines.evaluation_batches(subset, pipelines.AUDIO_IMAGE, spec)
            inputs.update(batches=list(batches), batch_size=spec.batch_size)
        if self.num_abx_utterances > 0:
            abx_source = registry.open_role(data, "abx")
            chosen = sentence_subset(abx_source, self.num_abx_utterances)
            utterances = abx_utterances(abx_source, chosen)
            items = abx_items(data, utterances)
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
