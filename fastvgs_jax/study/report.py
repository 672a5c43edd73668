"""The study's report: the summary over seeds, its markdown tables, plots, and timing.json."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from fastvgs_jax.data.corpora import registry
from fastvgs_jax.eval import evaluate
from fastvgs_jax.study.plan import label, run_dir, study_models, study_seeds


def _read_timing(path: str) -> dict[str, float]:
    """An earlier run's timing.json, or {} (absent or unreadable: timings are informative)."""
    try:
        with open(path) as f:
            timing = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(timing, dict):
        return {}
    return {k: v for k, v in timing.items() if isinstance(v, (int, float))}


RETRIEVAL_COLUMNS = (
    ("speech_to_image", "r1"),
    ("speech_to_image", "r5"),
    ("speech_to_image", "r10"),
    ("image_to_speech", "r1"),
    ("image_to_speech", "r5"),
    ("image_to_speech", "r10"),
)


def _layer_order(name: str) -> int:
    """frontend, layer_1, layer_2, …, layer_12 (not the string order)."""
    return 0 if not name.startswith("layer_") else int(name.split("_")[1])


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "n": len(finite)}


def _best(rows: Mapping[str, Mapping[str, float]], mode: str) -> tuple[str | None, float | None]:
    finite = {k: v[mode] for k, v in rows.items() if v.get(mode) is not None}
    finite = {k: v for k, v in finite.items() if math.isfinite(v)}
    if not finite:
        return None, None
    layer = min(finite, key=finite.get)
    return layer, finite[layer]


def summarise(
    settings,
    per_model: Mapping[str, list[dict]],
    baselines: list[dict],
    tower_metrics: Mapping[str, float] | None = None,
) -> dict:
    """Means ± std over seeds; deterministic (no timestamps or paths)."""
    models = {}
    for model, runs in per_model.items():
        retrieval = {
            f"{d}_{k}": _mean_std([r["retrieval"][d][k] for r in runs])
            for d, k in RETRIEVAL_COLUMNS
        }
        layers = sorted(runs[0]["abx"]["trained"], key=_layer_order)
        abx = {
            layer: {
                mode: _mean_std([r["abx"]["trained"][layer][mode] for r in runs])
                for mode in ("within", "across")
            }
            for layer in layers
        }
        best = {}
        for mode in ("within", "across"):
            picks = [_best(r["abx"]["trained"], mode) for r in runs]
            best[mode] = {
                "layers": [p[0] for p in picks],
                **_mean_std([p[1] for p in picks]),
            }
        models[model] = {"label": label(model), "retrieval": retrieval, "abx": abx, "best": best}
    reference = {}
    for name in ("mfcc", "random_init"):
        if name == "mfcc":
            rows = [{"mfcc": b["mfcc"]} for b in baselines]
        else:
            rows = [b["random_init"] for b in baselines]
        reference[name] = {
            mode: {
                "layers": [_best(r, mode)[0] for r in rows],
                **_mean_std([_best(r, mode)[1] for r in rows]),
            }
            for mode in ("within", "across")
        }
        reference[name]["per_layer"] = {
            layer: {m: _mean_std([r[layer][m] for r in rows]) for m in ("within", "across")}
            for layer in sorted(rows[0], key=_layer_order)
        }
    return {
        "study": settings.name,
        "seeds": study_seeds(settings),
        "steps": int(settings.steps),
        "model": {
            "size": str(settings.run.model.size),
            "frontend": str(settings.run.model.frontend),
            "num_layers": int(settings.run.model.num_layers),
            "hidden_dim": int(settings.run.model.hidden_dim),
        },
        "data": {
            "corpus": registry.role_config(settings.run.data, "retrieval")[0],
            "preset": str(settings.run.data.preset),
            "split": settings.test_split,
        },
        # The pretrained, frozen image tower's held-out scores (None: trained from scratch).
        "image_tower": None if tower_metrics is None else dict(tower_metrics),
        "units": "percent",
        "models": models,
        "reference": reference,
    }


def _cell(stat: Mapping, digits: int = 1) -> str:
    if stat.get("mean") is None:
        return "–"
    if stat.get("n", 1) > 1:
        return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"
    return f"{stat['mean']:.{digits}f}"


def _layer_note(layers: Sequence[str | None]) -> str:
    names = sorted({evaluate._layer_label(x) for x in layers if x not in (None, "mfcc")})
    return f" ({', '.join(names)})" if names else ""


def corpus_label(data: Mapping) -> str:
    """``spoken_scenes/small`` for the embedded corpus, the corpus's name for a real one."""
    corpus = data.get("corpus", registry.EMBEDDED)
    return f"{corpus}/{data['preset']}" if corpus == registry.EMBEDDED else corpus


def tables_markdown(results: Mapping) -> str:
    seeds = results["seeds"]
    lines = [
        f"# Study {results['study']}: {len(results['models'])} models, seeds {seeds}, "
        f"{results['steps']} steps each",
        "",
        f"Model: {results['model']['size']} ({results['model']['frontend']} frontend, "
        f"{results['model']['num_layers']} × {results['model']['hidden_dim']}); corpus "
        f"{corpus_label(results['data'])}, {results['data']['split']} split. "
        "Values in %, mean ± std over seeds.",
        "",
    ]
    tower = results.get("image_tower")
    if tower:
        lines += [
            "Image side: a conv tower pretrained on rendered scenes' object attributes and read "
            f"frozen by every model (held-out attribute F1 {tower['attribute_f1']:.1f} %, "
            f"every attribute of a scene right {tower['scene_exact_match']:.1f} %).",
            "",
        ]
    lines += [
        "## Cross-modal retrieval (coarse embeddings)",
        "",
        "| model | S→I R@1 | S→I R@5 | S→I R@10 | I→S R@1 | I→S R@5 | I→S R@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in results["models"].values():
        cells = [_cell(m["retrieval"][f"{d}_{k}"]) for d, k in RETRIEVAL_COLUMNS]
        lines.append(f"| {m['label']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "S→I: speech → image (each caption ranks all images); I→S: image → speech (a hit when "
        "any of the image's captions is in the top K).",
        "",
        "## ABX phone discriminability (error %, best layer in parentheses)",
        "",
        "| model | within speaker | across speaker |",
        "|---|---|---|",
    ]
    for m in results["models"].values():
        w, a = m["best"]["within"], m["best"]["across"]
        lines.append(
            f"| {m['label']} | {_cell(w, 2)}{_layer_note(w['layers'])} | "
            f"{_cell(a, 2)}{_layer_note(a['layers'])} |"
        )
    for name, title in (("random_init", "random init"), ("mfcc", "MFCC (13 + Δ + ΔΔ)")):
        r = results["reference"][name]
        lines.append(
            f"| {title} | {_cell(r['within'], 2)}{_layer_note(r['within']['layers'])} | "
            f"{_cell(r['across'], 2)}{_layer_note(r['across']['layers'])} |"
        )
    return "\n".join(lines) + "\n"


def write_plots(settings, results: Mapping) -> list[str]:
    """Per-layer ABX curves (one line per model, like the paper's figure) and each run's
    history plot (retrieval and ABX over steps, phase switch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = os.path.join(settings.out, "plots")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, mode in zip(axes, ("within", "across"), strict=True):
        for m in results["models"].values():
            layers = list(m["abx"])
            values = [m["abx"][layer][mode]["mean"] for layer in layers]
            ax.plot(range(len(layers)), values, marker="o", label=m["label"])
        random_rows = results["reference"]["random_init"]["per_layer"]
        ax.plot(
            range(len(random_rows)),
            [random_rows[layer][mode]["mean"] for layer in random_rows],
            color="grey",
            linestyle="--",
            label="random init",
        )
        mfcc = results["reference"]["mfcc"][mode]["mean"]
        if mfcc is not None:
            ax.axhline(mfcc, color="black", linestyle=":", label="MFCC")
        ax.set_xticks(range(len(layers)), [evaluate._layer_label(x) for x in layers])
        ax.set_title(f"ABX error, {mode} speaker")
        ax.set_xlabel("layer")
    axes[0].set_ylabel("error (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, "abx_per_layer.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    if settings.history.enabled:
        for model in study_models(settings):
            for seed in study_seeds(settings):
                workdir = run_dir(settings.out, model, seed)
                paths.append(
                    evaluate.plot_history(
                        workdir, os.path.join(out_dir, f"history_{model}_seed{seed}.png")
                    )
                )
    return paths
