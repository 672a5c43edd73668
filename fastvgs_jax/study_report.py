"""docs/results.md (and the README's results table) written from a finished study's own files.

python -m fastvgs_jax.study_report --report results/demo         # docs/results.md, README
python -m fastvgs_jax.study_report --report results/demo --doc out.md --readme ''
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence

import numpy as np

# The paper's numbers (Khorrami et al.: SpokenCOCO Karpathy 5k test images, LibriSpeech
# dev-clean ABX, best layer), %: S→I R@10, I→S R@10, ABX within, ABX across.
PAPER = {
    "w2v2": (0.2, 0.2, 7.05, 9.53),
    "vgs": (69.4, 81.5, 4.82, 6.44),
    "vgsplus": (70.1, 81.8, 5.09, 6.81),
    "w2v2_vgsplus": (74.7, 85.0, 6.95, 8.72),
    "vgs_vgsplus": (68.8, 81.3, 5.49, 7.55),
    "w2v2_vgs": (74.9, 84.8, 6.74, 8.75),
    "vgs_w2v2": (0.2, 0.2, 8.4, 11.54),
    "vgsplus_w2v2": (52.0, 32.5, 6.23, 8.35),
    "vgsplus_vgs": (70.0, 81.5, 4.50, 6.02),
}
README_BEGIN = "<!-- results:begin (python -m fastvgs_jax.study_report --report) -->"
README_END = "<!-- results:end -->"
# Plots copied beside the document: (name under the study's plots/, name under images/).
PLOTS = (
    ("abx_per_layer.png", "results_abx_per_layer.png"),
    ("history_w2v2_vgs_seed{seed}.png", "results_history_w2v2_vgs.png"),
)


class ReportError(ValueError):
    """The study folder is not a finished study (a file missing or unreadable)."""


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: no {what} (is the study finished?)") from None
    except (OSError, ValueError) as error:
        raise ReportError(f"{path}: unreadable {what} ({error})") from None


def load_study(out: str) -> dict:
    """results.json, every run's evaluation.json and the baselines of a finished study.

    Returns ``{"results", "per_seed", "baselines", "timing", "manifest"}``; ``per_seed`` maps
    model → [evaluation.json of each seed], in results.json's seed order.
    """
    results = _read_json(os.path.join(out, "results.json"), "results.json")
    seeds = results["seeds"]
    per_seed = {
        model: [
            _read_json(
                os.path.join(out, "runs", model, f"seed{seed}", "evaluation.json"),
                "evaluation",
            )
            for seed in seeds
        ]
        for model in results["models"]
    }
    baselines = [
        _read_json(os.path.join(out, "baselines", f"seed{seed}.json"), "baselines")
        for seed in seeds
    ]
    timing_path = os.path.join(out, "timing.json")
    timing = _read_json(timing_path, "timing") if os.path.exists(timing_path) else {}
    first = next(iter(results["models"]))
    manifest_path = os.path.join(out, "runs", first, f"seed{seeds[0]}", "manifest.json")
    manifest = _read_json(manifest_path, "manifest") if os.path.exists(manifest_path) else {}
    return {
        "results": results,
        "per_seed": per_seed,
        "baselines": baselines,
        "timing": timing,
        "manifest": manifest,
    }


def _best(rows: Mapping[str, Mapping[str, float]], mode: str) -> float:
    values = [r[mode] for r in rows.values() if r.get(mode) is not None]
    return min(v for v in values if math.isfinite(v))


def _stat(values: Sequence[float], digits: int) -> str:
    if len(values) > 1:
        return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"
    return f"{values[0]:.{digits}f}"


def _recall(evaluation: Mapping, direction: str, k: str = "r10") -> float:
    return float(evaluation["retrieval"][direction][k])


def _seed_values(study: Mapping, model: str) -> dict[str, list[float]]:
    """Per-seed S→I / I→S R@10 and best-layer ABX within / across of one model."""
    runs = study["per_seed"][model]
    return {
        "s2i": [_recall(r, "speech_to_image") for r in runs],
        "i2s": [_recall(r, "image_to_speech") for r in runs],
        "within": [_best(r["abx"]["trained"], "within") for r in runs],
        "across": [_best(r["abx"]["trained"], "across") for r in runs],
    }


def _random_init(study: Mapping, mode: str) -> list[float]:
    return [_best(b["random_init"], mode) for b in study["baselines"]]


def chance_r10(study: Mapping) -> float:
    """S→I R@10 of a random ranking: 10 of the split's images, %."""
    first = next(iter(study["per_seed"].values()))[0]
    return min(100.0, 1000.0 / first["retrieval"]["num_images"])


def summary_table(study: Mapping) -> list[str]:
    """The README's table: mean ± std over seeds beside the paper's numbers."""
    lines = [
        "| model | S→I R@10 | I→S R@10 | ABX within | ABX across | paper S→I / I→S R@10 "
        "| paper ABX within / across |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, row in study["results"]["models"].items():
        v = _seed_values(study, model)
        paper = PAPER.get(model)
        paper_cells = f"{paper[0]} / {paper[1]} | {paper[2]} / {paper[3]}" if paper else "– | –"
        lines.append(
            f"| {row['label']} | {_stat(v['s2i'], 1)} | {_stat(v['i2s'], 1)} | "
            f"{_stat(v['within'], 2)} | {_stat(v['across'], 2)} | {paper_cells} |"
        )
    lines.append(
        f"| random init | | | {_stat(_random_init(study, 'within'), 2)} | "
        f"{_stat(_random_init(study, 'across'), 2)} | | |"
    )
    return lines


def findings(study: Mapping) -> list[str]:
    """What the numbers say about the paper's claims, each computed, never typed."""
    models = study["results"]["models"]
    values = {m: _seed_values(study, m) for m in models}
    mean = {m: {k: float(np.mean(v)) for k, v in vals.items()} for m, vals in values.items()}
    out = []
    chance = chance_r10(study)
    if "vgs" in mean:
        out.append(
            f"VGS reaches {mean['vgs']['s2i']:.1f} % test S→I R@10 against {chance:.1f} % "
            "chance"
            + (
                f"; W2V2, which never sees an image, {mean['w2v2']['s2i']:.1f} %."
                if "w2v2" in mean
                else "."
            )
        )
    if {"w2v2_vgs", "vgsplus"} <= mean.keys():
        seq, sim = mean["w2v2_vgs"]["s2i"], mean["vgsplus"]["s2i"]
        verdict = "beats" if seq > sim else "does not beat"
        out.append(
            f"Sequential (W2V2, VGS) {verdict} simultaneous VGS+ at retrieval: "
            f"{seq:.1f} vs {sim:.1f} % S→I R@10 (paper: 74.9 vs 70.1)."
        )
    if {"vgsplus_w2v2", "vgs_w2v2"} <= mean.keys():
        plus, plain = mean["vgsplus_w2v2"]["s2i"], mean["vgs_w2v2"]["s2i"]
        spread = max(np.ptp(values["vgsplus_w2v2"]["s2i"]), np.ptp(values["vgs_w2v2"]["s2i"]), 0.0)
        keeps = plus - plain > max(spread, 1.0)
        out.append(
            "After a final SSL phase, a VGS+ start "
            + (
                "keeps more retrieval than a VGS start"
                if keeps
                else "keeps no more retrieval than a VGS start (within seed spread)"
            )
            + f": (VGS+, W2V2) {plus:.1f} vs (VGS, W2V2) {plain:.1f} % S→I R@10, chance "
            f"{chance:.1f} % (paper: 52.0 vs 0.2)."
        )
    ssl_models = [m for m in models if m != "vgs"]
    if ssl_models:
        for mode in ("within", "across"):
            bars = _random_init(study, mode)
            per_seed = [
                sum(values[m][mode][i] < bars[i] for m in ssl_models) for i in range(len(bars))
            ]
            out.append(
                f"ABX {mode} speaker: {', '.join(str(n) for n in per_seed)} of the "
                f"{len(ssl_models)} SSL-trained models (per seed) have a best layer below the "
                f"random-init encoder's ({_stat(bars, 2)} %)."
            )
    if len(study["results"]["seeds"]) > 1:
        worst = max(np.ptp(v["i2s"]) for v in values.values())
        worst_abx = max(max(np.ptp(v["within"]), np.ptp(v["across"])) for v in values.values())
        out.append(
            f"Seeds differ by up to {worst:.1f} points of I→S R@10 and {worst_abx:.2f} of ABX: "
            "rows closer than that are level."
        )
    return out


def _provenance(study: Mapping) -> list[str]:
    results, timing, manifest = study["results"], study["timing"], study["manifest"]
    seeds = ",".join(str(s) for s in results["seeds"])
    lines = [
        f"- Command: `python launch/study.py --seeds={seeds}` (preset `{results['study']}`, "
        f"{results['steps']} steps per model), then "
        f"`python -m fastvgs_jax.study_report --report <its out folder>`.",
    ]
    devices = manifest.get("devices", {})
    if devices:
        lines.append(
            f"- Host: {devices.get('host_cpu', '?')}, {devices.get('host_cores', '?')} cores, "
            f"{devices.get('count', '?')} {devices.get('platform', '?')} device(s)."
        )
    git = manifest.get("git") or {}
    packages = manifest.get("packages", {})
    if git or packages:
        versions = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
        commit = git.get("commit", "?")[:12] + (
            " (uncommitted changes)" if git.get("dirty") else ""
        )
        lines.append(f"- Code: commit {commit}; {versions}.")
    if timing:
        total = timing.get("total")
        parts = ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in timing.items() if k not in ("total", "this run")
        )
        lines.append(
            (f"- Wall time: {total / 60:.1f} min in all" if total else "- Wall time")
            + f" ({parts})."
        )
    tower = results.get("image_tower")
    if tower:
        lines.append(
            f"- Image tower (pretrained, frozen): held-out attribute F1 "
            f"{tower['attribute_f1']:.1f} %, every attribute of a scene right "
            f"{tower['scene_exact_match']:.1f} %."
        )
    return lines


def results_markdown(study: Mapping, table_md: str, images: Sequence[str]) -> str:
    """The whole results page."""
    results = study["results"]
    lines = [
        f"# Results: the {results['study']} study",
        "",
        "<!-- Written by `python -m fastvgs_jax.study_report --report`; do not edit by hand. -->",
        "",
        "## How they were obtained",
        "",
        *_provenance(study),
        f"- Test split: {next(iter(study['per_seed'].values()))[0]['retrieval']['num_images']} "
        f"images, chance S→I R@10 {chance_r10(study):.1f} %. The paper's columns are "
        "SpokenCOCO (5k test images) and LibriSpeech ABX: another scale, compare directions, "
        "not levels. Why the demo departs from the paper: [demo_design.md](demo_design.md).",
        "",
        "## Summary beside the paper",
        "",
        *summary_table(study),
        "",
        "Best layer per model and seed; mean ± std over seeds.",
        "",
        "## What holds",
        "",
        *(f"- {f}" for f in findings(study)),
        "",
    ]
    for image in images:
        name = os.path.splitext(os.path.basename(image))[0].replace("_", " ")
        lines += [f"![{name}](images/{os.path.basename(image)})", ""]
    # table.md, one heading level down: the full tables (R@1/5/10, layers).
    body = re.sub(r"^(#+) ", r"#\1 ", table_md, flags=re.MULTILINE)
    lines += ["## Full tables", "", body.strip(), ""]
    return "\n".join(lines)


def replace_readme_block(readme: str, table: Sequence[str], doc_link: str) -> str:
    """The README with its results block (between the markers) replaced."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        raise ReportError(f"the README has no results block ({README_BEGIN} … {README_END})")
    block = [README_BEGIN, *table, "", f"Full results and how they were obtained: {doc_link}."]
    return readme[:start] + "\n".join(block) + "\n" + readme[end:]


# Sections other commands write into docs/results.md (e.g. the forgetting sweep's report),
# between their markers: a rewrite of the study's part keeps them.
KEPT_SECTIONS = (("<!-- forgetting:begin", "<!-- forgetting:end -->"),)


def kept_sections(doc: str) -> str:
    """The marked sections of the current ``doc`` that this report does not write."""
    try:
        with open(doc) as f:
            current = f.read()
    except OSError:
        return ""
    kept = []
    for begin, end in KEPT_SECTIONS:
        start = current.find(begin)
        stop = current.find(end, start)
        if start >= 0 and stop >= 0:
            kept.append(current[start : stop + len(end)])
    return "".join(f"\n{section}\n" for section in kept)


def write_report(out: str, doc: str, readme: str | None = None) -> list[str]:
    """Write ``doc`` (and its plots under ``images/`` beside it) from the study in ``out``;
    with ``readme``, replace its results block too. Returns the paths written."""
    study = load_study(out)  # everything is read before anything is written
    try:
        with open(os.path.join(out, "table.md")) as f:
            table_md = f.read()
    except OSError as error:
        raise ReportError(f"{out}/table.md: {error}") from None
    images_dir = os.path.join(os.path.dirname(os.path.abspath(doc)), "images")  # beside doc
    os.makedirs(images_dir, exist_ok=True)
    written = []
    for source, target in PLOTS:
        path = os.path.join(out, "plots", source.format(seed=study["results"]["seeds"][0]))
        if os.path.exists(path):
            shutil.copyfile(path, os.path.join(images_dir, target))
            written.append(os.path.join(images_dir, target))
    text = results_markdown(study, table_md, written) + kept_sections(doc)
    with open(doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(doc + ".tmp", doc)
    written.insert(0, doc)
    if readme is not None:
        with open(readme) as f:
            current = f.read()
        link = f"[{os.path.relpath(doc, os.path.dirname(os.path.abspath(readme)))}]"
        link += f"({os.path.relpath(doc, os.path.dirname(os.path.abspath(readme)))})"
        updated = replace_readme_block(current, summary_table(study), link)
        with open(readme + ".tmp", "w") as f:
            f.write(updated)
        os.replace(readme + ".tmp", readme)
        written.append(readme)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastvgs_jax.study_report", description=__doc__)
    parser.add_argument("--report", required=True, metavar="DIR", help="a finished study's out")
    parser.add_argument("--doc", default=os.path.join("docs", "results.md"), help="page to write")
    parser.add_argument(
        "--readme",
        default="README.md",
        help="README whose results block is replaced ('' to leave it; skipped when absent)",
    )
    args = parser.parse_args(argv)  # a usage mistake: argparse's own `error:` line, exit 2
    readme = args.readme if args.readme and os.path.exists(args.readme) else None
    try:
        written = write_report(args.report, args.doc, readme=readme)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
