"""The evaluation report: ``evaluation.json`` and ``evaluation.md`` of ``evaluate_run`` results."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

REPORT_JSON = "evaluation.json"
REPORT_MARKDOWN = "evaluation.md"


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
