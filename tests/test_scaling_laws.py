"""Saturating power-law fits of a sweep, the compute frontier, and the report files."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from fastvgs_jax.sweep import frontier as frontier_lib
from fastvgs_jax.sweep import laws, laws_report, results

# Per-size compute budgets (FLOPs) of the tiny sweep: overlapping ranges, six distinct levels.
TINY_SIZES = {
    "xs": (1.5e5, (1e12, 4e12)),
    "s": (6e5, (1.5e12, 6e12)),
    "m": (2.1e6, (2.5e12, 1e13)),
}


def tiny_rows(schedules=("vgsplus", "w2v2_vgs"), noise=0.005, seed=0) -> list[dict]:
    """2 schedules × 3 sizes × 2 budgets, in the sweep runner's schema. Targets follow
    L(N, D) = E + A/N^0.35 + B/D^0.3 (D = audio hours), with multiplicative noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, schedule in enumerate(schedules):
        for size, (params, budgets) in TINY_SIZES.items():
            for compute in budgets:
                flops_per_step = 6 * params * 3200  # ~ 6·N·frames per step
                steps = round(compute / flops_per_step)
                hours = steps * 3200 / 50 / 3600  # 50 frames per second

                def law(e, a, b, n=params, d=hours):
                    return (e + a / n**0.35 + b / d**0.3) * (1 + noise * rng.standard_normal())

                r10 = 100 - law(8 + 4 * k, 2000, 10)
                rows.append(
                    {
                        "run": f"{size}-frac1-steps{steps}-{schedule}-seed0",  # the planner's names
                        "size": size,
                        "schedule": schedule,
                        "seed": 0,
                        "data_fraction": 1.0,
                        "steps": steps,
                        "parameters": {
                            "encoder": 0.8 * params,
                            "vgs_branch": 0.1 * params,
                            "image": 0.1 * params,
                            "total": params,
                        },
                        "flops_per_step": flops_per_step,
                        "compute": compute,
                        "audio_hours_seen": hours,
                        "frames_seen": steps * 3200,
                        "wall_seconds": compute / 1e10,
                        "mfu": 0.1,
                        "final": {"ssl_loss": law(1.5 + 0.3 * k, 40, 0.8), "coarse_loss": 1.0},
                        "retrieval": {
                            "s2i_r1": 20.0,
                            "s2i_r10": r10,
                            "i2s_r1": 25.0,
                            "i2s_r10": r10,
                        },
                        "abx": {
                            "within": law(6, 300, 3),
                            "across": law(9, 400, 4),
                            "within_layer": "layer_2",
                            "across_layer": "layer_2",
                        },
                    }
                )
    return rows


def write_tiny_sweep(folder, **kwargs) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, results.SWEEP_FILE), "w") as f:
        for row in tiny_rows(**kwargs):
            f.write(json.dumps(row) + "\n")
    return str(folder)


def test_fit_recovers_known_law_and_interval_contains_truth():
    a, b, c = 3e4, 0.3, 2.0  # L = 3e4 · C^−0.3 + 2 over four decades of FLOPs
    x = np.geomspace(1e12, 1e16, 10)
    truth = a * x**-b + c
    y = truth * (1 + 0.005 * np.random.default_rng(1).standard_normal(x.size))
    fit = laws.fit_saturating_power_law(x, y, bootstrap=50, seed=0)
    assert fit.ok and fit.reason is None and fit.space == "log"
    assert fit.b == pytest.approx(b, abs=0.03)
    assert fit.c == pytest.approx(c, rel=0.05)
    assert fit.a == pytest.approx(a, rel=0.5)  # a trades off against b: loose
    np.testing.assert_allclose(fit.predict(x), truth, rtol=0.01)
    for name, value in zip("abc", (a, b, c), strict=True):
        low, high = fit.interval(name)
        assert low <= value <= high, (name, low, value, high)
    low, high = fit.predict_interval(x)
    assert (low <= truth * 1.003).all() and (truth * 0.997 <= high).all()
    assert fit.n_bootstrap_ok >= 45
    doc = fit.to_json()
    assert doc["intervals"]["b"][0] <= b <= doc["intervals"]["b"][1]
    assert doc["predictions"][2]["x"] == pytest.approx(1e17)  # 10× the largest x
    json.dumps(doc, allow_nan=False)


def test_fit_is_seeded_and_reproducible():
    x = np.geomspace(1, 100, 6)
    y = 5 * x**-0.5 + 1 + np.array([0.01, -0.02, 0.0, 0.015, -0.01, 0.005])
    one = laws.fit_saturating_power_law(x, y, bootstrap=20, seed=3)
    two = laws.fit_saturating_power_law(x, y, bootstrap=20, seed=3)
    np.testing.assert_array_equal(one.samples, two.samples)
    assert one.interval("b") == two.interval("b")


@pytest.mark.parametrize(
    ("x", "y", "reason"),
    [
        ([1, 1, 2, 2], [3, 2, 1, 1], "fewer than 3 distinct x"),
        ([1, 2, 3, 4], [3, 3, 3, 3], "flat"),
        ([1, 2, 3, 4], [1, 2, 3, 4], "does not fall"),
        ([1, 2, 3, 4], [2, 1, 0, -1], "negative"),
        ([1, 2, math.nan, 4], [3, 2, 1, math.nan], "fewer than 3 distinct x"),
        ([0, -1, 2, 4], [3, 2, 1, 0.5], "fewer than 3 distinct x"),  # x ≤ 0 dropped
        ([], [], "fewer than 3 distinct x"),
    ],
)
def test_degenerate_data_gives_not_ok_with_a_reason(x, y, reason):
    fit = laws.fit_saturating_power_law(x, y, bootstrap=10)
    assert not fit.ok and reason in fit.reason
    assert math.isnan(fit.a) and np.isnan(fit.predict([1.0, 2.0])).all()
    assert fit.interval("b") is None and fit.predict_interval([1.0]) is None
    json.dumps(fit.to_json(), allow_nan=False)


def test_zero_values_fit_in_linear_space_with_c_pinned():
    fit = laws.fit_saturating_power_law([1, 2, 4, 8], [8.0, 4.0, 2.0, 0.0], bootstrap=0)
    assert fit.ok and fit.space == "linear" and fit.c == 0.0 and fit.b > 0
    assert fit.interval("b") is None  # no resamples, no interval


def _row(schedule, size, params, compute, value, seed=0):
    return {
        "run": f"{schedule}/{size}/{compute}/{seed}",
        "schedule": schedule,
        "size": size,
        "seed": seed,
        "steps": compute,
        "data_fraction": 1.0,
        "parameters": {"total": params},
        "compute": compute,
        "final": {"ssl_loss": value, "coarse_loss": None},
    }


def test_frontier_on_a_handmade_table():
    rows = [
        _row("a", "S", 1, 1, 5.0),
        _row("a", "S", 1, 4, 4.0),
        _row("a", "M", 2, 2, 4.4, seed=0),  # two seeds: their mean, 4.5
        _row("a", "M", 2, 2, 4.6, seed=1),
        _row("a", "M", 2, 8, 3.0),
        _row("a", "L", 4, 4, 4.2),
        _row("a", "L", 4, 16, 2.0),
        _row("a", "L", 4, 32, None),  # no value: ignored
        _row("b", "S", 1, 1, 5.0),
        _row("b", "S", 1, 2, 4.0),
        _row("b", "M", 2, 2, 4.5),
        _row("b", "M", 2, 4, 3.5),
        _row("b", "L", 4, 4, 3.0),  # one budget: not a curve
    ]
    frontier = frontier_lib.compute_frontier(rows, "ssl_loss", grid=5)  # levels 1, 2, 4, 8, 16
    a = frontier["a"]
    envelope = [(e["compute"], e["value"], e["size"]) for e in a["envelope"]]
    assert envelope == [(1, 5.0, "S"), (2, 4.5, "M"), (4, 4.0, "S"), (8, 3.0, "M"), (16, 2.0, "L")]
    assert a["points"][1]["runs"] == ["a/M/2/0", "a/M/2/1"]
    # Per-size power laws through both budgets: at 2, S 4.47 < M 4.5; at 4, M 3.67 < S 4.0 <
    # L 4.2; at 8, L 2.90 < M 3.0; at 1 and 16 a single size covers the level: skipped.
    optimal = a["optimal"]
    np.testing.assert_allclose(optimal["compute"], [2, 4, 8])
    assert optimal["size"] == ["S", "M", "L"] and optimal["parameters"] == [1, 2, 4]
    np.testing.assert_allclose(
        optimal["value"],
        [5 * 2 ** -math.log(1.25, 4), 4.5 * 2 ** -math.log(1.5, 4), 2.9],
        atol=0.005,
    )
    assert a["curves"]["L"]["kind"] == "power" and a["curves"]["L"]["compute_range"] == [4, 16]
    b = frontier["b"]
    assert [e["size"] for e in b["envelope"]] == ["S", "S", "L"]
    assert b["optimal"] is None and "2 size(s) with ≥ 2 compute budgets" in b["reason"]


def test_load_rows_replaces_rewritten_runs_and_skips_a_partial_last_line(tmp_path):
    rows = tiny_rows(schedules=("vgsplus",))
    again = dict(rows[0], final={"ssl_loss": 9.0, "coarse_loss": None})
    text = "\n".join(json.dumps(r) for r in [*rows, again]) + "\n\n" + '{"run": "x", "si'
    (tmp_path / "sweep.jsonl").write_text(text)
    loaded = results.load_rows(str(tmp_path))
    assert len(loaded) == len(rows) and loaded[-1]["final"]["ssl_loss"] == 9.0
    (tmp_path / "sweep.jsonl").write_text('{"run": 1}\nnot json\n{"run": 2}\n')
    with pytest.raises(ValueError, match="sweep.jsonl:2"):
        results.load_rows(str(tmp_path))


def test_fit_all_targets_and_null_values():
    rows = tiny_rows()
    for row in rows[:6]:  # the first schedule reports no retrieval
        row["retrieval"] = {k: None for k in row["retrieval"]}
    fits = laws.fit_all(rows, bootstrap=0)
    assert set(fits) == {"vgsplus", "w2v2_vgs"}
    assert set(fits["vgsplus"]) == set(results.TARGETS)
    assert set(fits["vgsplus"]["ssl_loss"]) == set(results.PREDICTORS)
    assert not fits["vgsplus"]["retrieval_error"]["compute"].ok
    for schedule in fits:
        assert fits[schedule]["ssl_loss"]["compute"].ok
        assert fits[schedule]["ssl_loss"]["parameters"].n_distinct == 3
    retrieval = fits["w2v2_vgs"]["retrieval_error"]["compute"]
    assert retrieval.ok and retrieval.n == 6
    # 100 − mean of the two R@10s, from the rows themselves.
    x, y = results.points(rows[6:], "retrieval_error", "compute")
    assert y[0] == pytest.approx(100 - rows[6]["retrieval"]["s2i_r10"])


def test_report_writes_json_markdown_and_plots(tmp_path):
    folder = write_tiny_sweep(tmp_path / "sweep")
    assert laws_report.main([f"--sweep={folder}", "--bootstrap=20", "--seed=1"]) == 0
    report = json.loads((tmp_path / "sweep" / "laws.json").read_text())
    assert report["runs"] == 12 and report["schedules"] == ["vgsplus", "w2v2_vgs"]
    fit = report["fits"]["vgsplus"]["ssl_loss"]["compute"]
    assert fit["ok"] and fit["n_bootstrap"] == 20 and fit["intervals"]["b"] is not None
    assert fit["intervals"]["c"][0] <= fit["c"] <= fit["intervals"]["c"][1]
    assert report["frontier"]["ssl_loss"]["vgsplus"]["optimal"]["size"]
    expected = {f"plots/law_{t}_vs_{p}.png" for t in results.TARGETS for p in results.PREDICTORS}
    expected |= {f"plots/frontier_{t}.png" for t in results.TARGETS}
    assert set(report["plots"]) == expected
    for path in expected:
        assert (tmp_path / "sweep" / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "sweep" / "laws.md").read_text()
    assert "| schedule | x | n | a | b | c |" in table and "Compute-optimal size" in table


def test_cli_reports_a_missing_sweep(tmp_path, capsys):
    assert laws_report.main([f"--sweep={tmp_path}"]) == 2
    assert "sweep.jsonl" in capsys.readouterr().err


def test_docs_page_is_written_from_the_sweeps_own_files(tmp_path):
    folder = write_tiny_sweep(tmp_path / "sweep_x")
    (tmp_path / "sweep_x" / "sweep.md").write_text("# Sweep x\n\n| run |\n|---|\n| a |\n")
    page = tmp_path / "docs" / "sweep_x.md"
    args = [f"--sweep={folder}", "--bootstrap=10", f"--docs={page}"]
    assert laws_report.main(args) == 0
    text = page.read_text()
    assert "## What the fits say" in text and "| a |" in text and "### SSL loss" in text
    assert "w2v2_vgs: b = " in text and "lowest" in text
    assert (tmp_path / "docs" / "images" / "sweep_x_law_ssl_loss_vs_compute.png").exists()
