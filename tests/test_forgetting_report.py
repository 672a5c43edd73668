"""The forgetting report: retention arithmetic, layer distances, computed findings, the
report's files and docs section, and a two-run forgetting sweep end to end."""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import shutil

import numpy as np
import pytest

from fastvgs_jax.sweep import forgetting, forgetting_rows, plan
from fastvgs_jax.sweep import run as sweep_run
from tests.test_sweep_forgetting import BLOCK_KEYS, ROOT, _settings

# --- Arithmetic ----------------------------------------------------------------------------


def test_retention_arithmetic_by_hand():
    assert forgetting_rows.chance_recall(100) == 10.0
    assert forgetting_rows.chance_recall(4) == 100.0  # 10 of 4 images: every ranking hits
    assert forgetting_rows.chance_recall(5000) == pytest.approx(0.2)  # the paper's test split
    assert forgetting_rows.retention(30.0, 50.0) == pytest.approx(0.6)
    assert forgetting_rows.retention(30.0, 0.0) is None
    assert forgetting_rows.retention(None, 50.0) is None
    assert forgetting_rows.retention_over_chance(30.0, 50.0, 10.0) == pytest.approx(0.5)
    assert forgetting_rows.retention_over_chance(10.0, 50.0, 10.0) == 0.0  # back at chance
    assert forgetting_rows.retention_over_chance(5.0, 50.0, 10.0) == pytest.approx(-0.125)
    assert forgetting_rows.retention_over_chance(60.0, 50.0, 10.0) == pytest.approx(1.25)
    assert forgetting_rows.retention_over_chance(12.0, 10.0, 10.0) is None  # nothing to keep
    assert forgetting_rows.retention_over_chance(12.0, 8.0, 10.0) is None


def test_layer_distance_on_handmade_parameter_trees():
    before = {
        "speech_encoder": {
            "frontend": {"conv_0": {"kernel": np.array([3.0, 4.0])}},
            "feature_projection": {"kernel": np.array([1.0, 0.0])},
            "positional_conv": {"bias": np.zeros(2)},
            "transformer": {
                "layer_0": {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])},
                "layer_1": {"a": np.zeros(2)},
            },
        },
        "audio_pooler": {"w": np.array([2.0])},
        "log_scale": np.array(1.0),
        "quantizer": {"codebook": np.ones(4)},
        "image_encoder": {"cnn": {"w": np.ones(1)}},
    }
    after = copy.deepcopy(before)
    after["speech_encoder"] = {
        "frontend": {"conv_0": {"kernel": np.array([3.0, 4.0])}},  # unchanged
        "feature_projection": {"kernel": np.array([1.0, 1.0])},  # |Δ| 1 of |θ| 1
        "positional_conv": {"bias": np.zeros(2)},
        "transformer": {
            # Δ = (0, 1, 1, 0): √2 of |θ| √2 → 1.
            "layer_0": {"a": np.array([1.0, 1.0]), "b": np.array([1.0, 1.0])},
            "layer_1": {"a": np.array([0.5, 0.0])},  # moved from all zeros: no ratio
        },
    }
    after["audio_pooler"] = {"w": np.array([3.0])}  # the branch with the CLIP scale:
    after["log_scale"] = np.array(1.0)  # |Δ| 1 of |θ| √5
    distance = forgetting_rows.layer_distance(before, after)
    assert list(distance) == [
        "frontend",
        "input",
        "layer_1",
        "layer_2",
        "vgs_branch",
        "ssl_head",
        "image",
    ]
    assert distance["frontend"] == 0.0 and distance["input"] == pytest.approx(1.0)
    assert distance["layer_1"] == pytest.approx(1.0) and distance["layer_2"] is None
    assert distance["vgs_branch"] == pytest.approx(1 / math.sqrt(5))
    assert distance["ssl_head"] == 0.0 and distance["image"] == 0.0
    after["quantizer"] = {"codebook": np.ones(3)}
    with pytest.raises(ValueError, match="quantizer/codebook differs"):
        forgetting_rows.layer_distance(before, after)


# --- The report on handmade rows -----------------------------------------------------------


def _row(schedule, alpha, seed, budget, switch, end, coarse=2.5, moved=0.1):
    start = schedule.split("_")[0]
    chance = 10.0
    return {
        "run": f"s-p200+{budget}-{schedule}-a{alpha}-seed{seed}",
        "schedule": schedule,
        "seed": seed,
        "forgetting": {
            "switch": {"s2i_r10": switch, "i2s_r10": switch, "abx_within": 3.0, "abx_across": 4.0},
            "end": {"s2i_r10": end, "i2s_r10": end, "abx_within": 2.5, "abx_across": 3.5},
            "retention": {"s2i": end / switch, "i2s": end / switch},
            "retention_over_chance": {
                d: forgetting_rows.retention_over_chance(end, switch, chance)
                for d in ("s2i", "i2s")
            },
            "chance_r10": chance,
            "num_images": 100,
            "first_phase": {
                "objective": start,
                "alpha": alpha,
                "steps": 200,
                "coarse_loss_end": coarse,
                "ssl_loss_end": None if start == "vgs" else 4.0,
                "coarse_loss_chance": math.log(16),
            },
            "second_phase": {"objective": "w2v2" if budget else None, "steps": budget},
            "layer_distance": {
                "layer_1": moved * (budget > 0),
                "layer_2": 2 * moved * (budget > 0),
                "vgs_branch": 0.0,
            },
            "vgs_layer": 1,
            "history": None,
        },
    }


def _rows(joint_end):
    """VGS starts at 35 % that fall to 15–17 % (over chance ≈ 0.2); VGS+ α=0.1 starts at
    20 % that end at ``joint_end`` (per seed); α=0.5 at chance at the switch."""
    rows = []
    for seed in (0, 1, 2):
        for budget in (0, 100):
            rows.append(
                _row("vgs_w2v2", 1.0, seed, budget, 35.0, 35.0 if not budget else 15 + seed)
            )
            end = 20.0 if not budget else joint_end[seed]
            rows.append(_row("vgsplus_w2v2", 0.1, seed, budget, 20.0, end, coarse=2.6, moved=0.2))
            rows.append(_row("vgsplus_w2v2", 0.5, seed, budget, 10.0, 10.0, coarse=2.77))
    return rows


def test_findings_are_computed_from_the_numbers():
    # α=0.1 keeps (18 − 10) / (20 − 10) = 0.8 and more of its above-chance recall at every
    # seed, the VGS start (15..17 − 10) / 25 ≤ 0.28: above beyond the seed spread.
    summary = forgetting_rows.summarise(_rows([18.0, 19.0, 20.0]), sweep="hand")
    text = "\n".join(summary["findings"])
    assert 3 <= len(summary["findings"]) <= 5
    assert "After 100 SSL steps (VGS, W2V2) keeps 24 ± 3 % of its above-chance" in text
    assert "more, beyond the seed spread (every seed above every VGS seed), at α = 0.1 (90" in text
    assert "no retention to measure at α = 0.5" in text
    assert "At every budget, α = 0.1 keeps more retrieval than the VGS start" in text
    assert "52.0 vs 0.2 %" in text and "the best VGS+ start (α=0.1) ends at 19.0 ± 0.8 %" in text
    assert "coarse loss ends at 2.60 at α=0.1, 2.77 at α=0.5 against the VGS phase's 2.50" in text
    assert "move by a relative L2 distance of 0.100–0.200 from VGS+ starts and 0.100" in text
    group = next(g for g in summary["groups"] if g["label"] == "VGS+ α=0.1" and g["budget"])
    assert group["s2i_retention_over_chance"]["values"] == pytest.approx([0.8, 0.9, 1.0])
    # Overlapping seeds: more by the mean only, and no α keeps more at every budget.
    overlap = forgetting_rows.summarise(_rows([12.0, 13.0, 18.0]), sweep="hand")
    text = "\n".join(overlap["findings"])
    assert "more by the mean only (the seed ranges overlap) at α = 0.1" in text
    assert "No α keeps more retrieval than the VGS start beyond the seed spread" in text
    assert "against (VGS, W2V2)'s 16.0 ± 0.8 % (level within the seed spread)" in text


def test_findings_name_the_budgets_where_a_start_keeps_more_when_not_all_do():
    # Budget 100 as in the overlapping case; a second budget, 150, where α=0.1 ends at
    # 18..20 % on every seed against the VGS start's 15..17: beyond the spread only there.
    rows = _rows([12.0, 13.0, 18.0])
    for seed in (0, 1, 2):
        rows.append(_row("vgs_w2v2", 1.0, seed, 150, 35.0, 15 + seed))
        rows.append(_row("vgsplus_w2v2", 0.1, seed, 150, 20.0, 18.0 + seed, moved=0.2))
        rows.append(_row("vgsplus_w2v2", 0.5, seed, 150, 10.0, 10.0))
    text = "\n".join(forgetting_rows.summarise(rows, sweep="hand")["findings"])
    assert (
        "Beyond the seed spread, VGS+ starts keep more than the VGS start at α = 0.1 after "
        "150 SSL steps; after 100 SSL steps no α does: the difference shows as the SSL phase "
        "grows." in text
    )
    assert "(above every VGS seed)" in text
    # The other way round (more at 100 steps, not at 150): no trend, no protection claimed.
    rows = _rows([18.0, 19.0, 20.0])
    for seed in (0, 1, 2):
        rows.append(_row("vgs_w2v2", 1.0, seed, 150, 35.0, 15 + seed))
        rows.append(_row("vgsplus_w2v2", 0.1, seed, 150, 20.0, 12.0 + 3 * seed, moved=0.2))
        rows.append(_row("vgsplus_w2v2", 0.5, seed, 150, 10.0, 10.0))
    findings = forgetting_rows.summarise(rows, sweep="hand")["findings"]
    assert 3 <= len(findings) <= 5
    assert (
        "at α = 0.1 after 100 SSL steps only; after 150 SSL steps no α does; no α does at every "
        "budget, so this sweep does not establish" in "\n".join(findings)
    )


def test_report_writes_tables_plots_and_replaces_its_docs_section(tmp_path):
    folder = tmp_path / "hand"
    folder.mkdir()
    rows = _rows([18.0, 19.0, 20.0])
    (folder / "sweep.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    page.write_text(f"# Results\n\nkept\n\n{forgetting.BEGIN}\nSTALE\n{forgetting.END}\n\ntail\n")
    assert forgetting.main([f"--sweep={folder}", f"--docs={page}"]) == 0
    table = (folder / "forgetting.md").read_text()
    assert "| (VGS+, W2V2) | VGS+ α=0.1 | 100 | 3 | 20.0 ± 0.0 | 19.0 ± 0.8 |" in table
    assert "| VGS | 3 | 2.500 ± 0.000 | – |" in table
    assert "## How far each part moves in 100 SSL steps" in table
    for plot in ("retention", "layer_distance"):
        assert (folder / "plots" / f"{plot}.png").stat().st_size > 0
        assert (page.parent / "images" / f"hand_{plot}.png").exists()
    text = page.read_text()
    assert text.startswith("# Results\n\nkept\n\n") and text.endswith("\n\ntail\n")
    assert "STALE" not in text and text.count(forgetting.BEGIN) == 1
    assert "![retention](images/hand_retention.png)" in text
    summary = json.loads((folder / "forgetting.json").read_text())
    assert summary["findings"][0] in text
    # Written again, identically; on a page without the markers, appended.
    forgetting.main([f"--sweep={folder}", f"--docs={page}"])
    assert page.read_text() == text
    bare = tmp_path / "docs" / "bare.md"
    bare.write_text("# Bare\n")
    forgetting.write_docs(str(folder), summary, str(bare))
    assert bare.read_text().startswith(f"# Bare\n\n{forgetting.BEGIN}\n")


def test_report_without_a_forgetting_block_says_so(tmp_path, capsys):
    (tmp_path / "sweep.jsonl").write_text(json.dumps({"run": "a", "schedule": "vgs"}) + "\n")
    assert forgetting.main([f"--sweep={tmp_path}"]) == 2
    assert "no runs with a forgetting block" in capsys.readouterr().err


# --- A real two-run sweep ------------------------------------------------------------------


def test_two_run_forgetting_sweep_trains_evaluates_and_reports(tiny_data_dir, tmp_path):
    settings = _settings(
        tmp_path,
        schedules="vgsplus_w2v2",
        alphas="0.3",
        second_phase_steps="0,2",
        steps="7",
        first_phase_steps=2,
        evaluation_layers="1",
    )
    settings.curves.seeds = "0"
    study = settings.study
    study.run.data.data_dir = tiny_data_dir
    study.image_tower.enabled = False  # the convs train from scratch: no tower to pretrain
    study.run.model.image.cnn_widths = (8, 16)  # less to compile
    study.progress = study.run.progress = False
    study.run.log_every, study.run.eval_every = 1, 2
    study.history.points = None  # the curves' resolution: run.eval_every, as the preset
    study.history.num_images, study.history.num_abx_utterances = 4, 8
    study.history.layers = "1"
    rows = sweep_run.run_sweep(settings)
    assert list(rows) == [
        "xxs-frac1-p2+0-vgsplus_w2v2-a0.3-seed0",
        "xxs-frac1-p2+2-vgsplus_w2v2-a0.3-seed0",
    ]
    switch, end = rows.values()
    assert set(end["forgetting"]) == BLOCK_KEYS
    f = end["forgetting"]
    assert f["switch"] == switch["forgetting"]["switch"] == switch["forgetting"]["end"]
    assert f["first_phase"]["alpha"] == 0.3 and f["first_phase"]["coarse_loss_end"] > 0
    assert f["chance_r10"] == 100.0  # 4 test images: R@10 is always 100
    assert f["retention"]["s2i"] == pytest.approx(f["end"]["s2i_r10"] / f["switch"]["s2i_r10"])
    assert set(f["layer_distance"]) >= {"frontend", "input", "layer_1", "layer_2", "vgs_branch"}
    assert f["end"]["abx_within_layer"] == "layer_1"  # the evaluation's one layer
    assert (
        f["layer_distance"]["layer_1"] > 0
        and switch["forgetting"]["layer_distance"]["layer_1"] == 0.0
    )
    # The curve: the switch (step 2), then every eval_every (2) steps of the second phase.
    history = pathlib.Path(settings.out, f["history"])
    steps = [json.loads(x)["step"] for x in history.read_text().splitlines()]
    assert steps == [2, 4]
    metrics = pathlib.Path(plan.run_dir(settings.out, end["run"]), "metrics.jsonl")
    before = metrics.read_text()
    assert sweep_run.run_sweep(settings) == rows and metrics.read_text() == before
    # The report and a docs section in a copy of the results page.
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir()
    shutil.copyfile(os.path.join(ROOT, "docs", "results.md"), page)
    assert forgetting.main([f"--sweep={settings.out}", f"--docs={page}"]) == 0
    for plot in forgetting.PLOTS:
        assert pathlib.Path(settings.out, "plots", f"{plot}.png").exists()
    assert (
        "| (VGS+, W2V2) | VGS+ α=0.3 | 2 | 1 |"
        in pathlib.Path(settings.out, "forgetting.md").read_text()
    )
    text = page.read_text()
    assert text.startswith("# Results: the demo study") and forgetting.END in text
    assert "![forgetting_curves](images/sweep_forgetting_curves.png)" in text


def test_curves_show_each_starts_longest_budget(tmp_path):
    # A sweep extended from 150 to 250 steps has curve runs at both: the 250 one is drawn.
    rows = []
    for budget in (150, 250):
        row = _row("vgsplus_w2v2", 0.1, 0, budget, 20.0, 18.0)
        history = f"runs/{row['run']}/eval_history.jsonl"
        (tmp_path / history).parent.mkdir(parents=True)
        lines = [
            {"step": 200 + s, "metrics": {"s2i_r10": 50.0 - s / 50}}
            for s in range(0, budget + 1, 50)
        ]
        (tmp_path / history).write_text("".join(json.dumps(e) + "\n" for e in lines))
        row["forgetting"]["history"] = history
        rows.append(row)
    drawn = forgetting_rows.curves(str(tmp_path), rows)
    assert [c["run"] for c in drawn] == [rows[1]["run"]]
    assert drawn[0]["steps"] == [0, 50, 100, 150, 200, 250]
