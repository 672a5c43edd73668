"""Saturating power laws of a sweep: fits with bootstrap intervals, the compute frontier, plots.

Reads a sweep folder's ``sweep.jsonl`` (one JSON object per finished run, written by the sweep
runner) and fits, per schedule, every target against every predictor with

    L(x) = a · x^(−b) + c,        a > 0, b ≥ 0, 0 ≤ c < min(L),

where ``c`` is the irreducible part (what more ``x`` cannot remove) and ``b`` the rate.

- Targets (``TARGETS``), lower is better: ``ssl_loss`` (``final.ssl_loss``, the loss as
  logged); ``retrieval_error`` = 100 − mean(S→I R@10, I→S R@10), in %; ``abx_within`` and
  ``abx_across`` (``abx.within`` / ``abx.across``, best-layer ABX error, %), fitted apart.
- Predictors (``PREDICTORS``): ``compute`` (total training FLOPs), ``parameters``
  (``parameters.total``, a count), ``audio_hours`` (``audio_hours_seen``, hours).
- Each fit is marginal: every run of the schedule with both values, whatever the other axes
  (sizes, budgets, data fractions, seeds). It is not the joint L(N, D) form; the compute
  frontier (``compute_frontier``) is the per-compute envelope over sizes.

Fitting (``fit_saturating_power_law``): ``x`` is divided by its geometric mean ``x_ref`` and
the scale is optimised as ``log A`` (``a = A · x_ref^b``), so FLOPs (~1e15) and hours (~1e-2)
condition alike. Residuals are relative, ``log L̂ − log L`` (all L > 0; otherwise absolute,
divided by max L, with ``c`` pinned at 0), under a soft-L1 loss (scale 0.1: a run more than
~10 % off weighs linearly, not quadratically). Start: for each ``b`` on a grid the model is
linear in (A, c), solved in closed form with ``c`` clipped into its bounds; the best start is
refined by ``scipy.optimize.least_squares`` (trust-region reflective, bounds as above,
b ≤ 10, analytic Jacobian); a c within 1e-9·max L of its bound is reported as 0.
Degenerate data (fewer than 3 distinct x, flat or negative L, a fit with b ≈ 0: L does not
fall with x) give ``Fit(ok=False, reason=...)``; nothing raises.

Intervals: a nonparametric bootstrap over runs — the rows are resampled with replacement
(``numpy.random.default_rng(seed)``; every fit uses the same seed), each resample is refitted
in the point fit's residual space (resamples with fewer than 3 distinct x or a flat L are
skipped: ``n_bootstrap_ok`` counts the rest), and the 2.5 and 97.5
percentiles of a, b, c and of the predictions L̂(x) give 95 % intervals. With a handful of runs
they are rough: they show how much the fit leans on single runs, not a coverage guarantee.

``python -m fastvgs_jax.sweep.laws --sweep=DIR`` writes ``DIR/laws.json`` (the fits and their
intervals, the frontier; no timestamps), ``DIR/laws.md`` (tables) and
``DIR/plots/law_<target>_vs_<predictor>.png`` and ``DIR/plots/frontier_<target>.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize

SWEEP_FILE = "sweep.jsonl"
PLOTS_DIR = "plots"
LEVEL = 0.95  # two-sided bootstrap interval
B_MAX = 10.0  # upper bound of the exponent (on x / x_ref)
FLAT_B = 1e-3  # a fitted b below this: L does not fall with x (a and c not identifiable)
LOSS_SCALE = 0.1  # soft-L1 scale of the residuals (relative: 10 %)
MIN_INTERVAL_SAMPLES = 10  # fewer successful resamples: no interval
_B_GRID = np.geomspace(1e-2, 4.0, 40)


def _get(row: Mapping, *keys: str) -> float | None:
    value: Any = row
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _retrieval_error(row: Mapping) -> float | None:
    s2i, i2s = _get(row, "retrieval", "s2i_r10"), _get(row, "retrieval", "i2s_r10")
    return None if s2i is None or i2s is None else 100.0 - 0.5 * (s2i + i2s)


@dataclasses.dataclass(frozen=True)
class Quantity:
    """A target or predictor: what it is, its unit, and how to read it from a row."""

    label: str
    unit: str
    read: Callable[[Mapping], float | None]


TARGETS: dict[str, Quantity] = {
    "ssl_loss": Quantity("SSL loss (final)", "loss", lambda r: _get(r, "final", "ssl_loss")),
    "retrieval_error": Quantity(
        "retrieval error: 100 − mean R@10 (S→I, I→S)", "%", _retrieval_error
    ),
    "abx_within": Quantity("ABX error, within speaker", "%", lambda r: _get(r, "abx", "within")),
    "abx_across": Quantity("ABX error, across speaker", "%", lambda r: _get(r, "abx", "across")),
}
PREDICTORS: dict[str, Quantity] = {
    "compute": Quantity("training compute", "FLOPs", lambda r: _get(r, "compute")),
    "parameters": Quantity("parameters (total)", "count", lambda r: _get(r, "parameters", "total")),
    "audio_hours": Quantity("audio seen", "hours", lambda r: _get(r, "audio_hours_seen")),
}


def load_rows(folder: str) -> list[dict]:
    """The runs of ``folder/sweep.jsonl``: one dict per run, in file order.

    A later line with the same ``run`` replaces the earlier one (a resumed sweep may write a
    run again); blank lines are skipped, and so is an unparsable last line that lacks its
    newline (a run being written). Any other unparsable line raises ``ValueError``.
    """
    path = os.path.join(folder, SWEEP_FILE)
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")
    rows: dict[Any, dict] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            if number == len(lines):  # no newline after it: still being written
                continue
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        key = row.get("run", f"line {number}")
        rows.pop(key, None)  # the replacement takes the later position
        rows[key] = row
    return list(rows.values())


@dataclasses.dataclass(frozen=True, eq=False)
class Fit:
    """L(x) = a · x^(−b) + c fitted to n points; ``ok=False`` (with ``reason``) when the data
    do not support one, and then a, b, c are NaN.

    ``samples``: (n_bootstrap_ok, 3) array of the bootstrap resamples' (a, b, c).
    ``space``: "log" (relative residuals) or "linear" (some L = 0). ``residual``: the RMS
    residual of the point fit in that space. ``x_ref``: the geometric mean of x.
    """

    ok: bool
    reason: str | None
    a: float = math.nan
    b: float = math.nan
    c: float = math.nan
    n: int = 0
    n_distinct: int = 0
    x_min: float = math.nan
    x_max: float = math.nan
    x_ref: float = math.nan
    space: str = "log"
    residual: float = math.nan
    samples: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3)))
    n_bootstrap: int = 0
    level: float = LEVEL

    @property
    def n_bootstrap_ok(self) -> int:
        return int(self.samples.shape[0])

    def predict(self, x) -> np.ndarray:
        """L̂(x), same shape as ``x`` (NaN when not ok)."""
        x = np.asarray(x, dtype=float)
        if not self.ok:
            return np.full(x.shape, np.nan)
        return _law(x, np.array([[self.a, self.b, self.c]]))[0]

    def interval(self, name: str) -> tuple[float, float] | None:
        """The bootstrap interval of ``a``, ``b`` or ``c`` (None: too few resamples)."""
        if not self.ok or self.n_bootstrap_ok < MIN_INTERVAL_SAMPLES:
            return None
        column = self.samples[:, "abc".index(name)]
        low, high = np.percentile(column, [50 * (1 - self.level), 50 * (1 + self.level)])
        return float(low), float(high)

    def predict_interval(self, x) -> tuple[np.ndarray, np.ndarray] | None:
        """The bootstrap interval of L̂(x): (low, high), each shaped like ``x``."""
        if not self.ok or self.n_bootstrap_ok < MIN_INTERVAL_SAMPLES:
            return None
        x = np.asarray(x, dtype=float)
        curves = _law(x, self.samples)  # (samples, *x.shape)
        low, high = np.percentile(curves, [50 * (1 - self.level), 50 * (1 + self.level)], axis=0)
        return low, high

    def to_json(self) -> dict:
        """Plain numbers (NaN as None): the estimate, intervals, and predictions at the ends of
        the data's x range and at 10× its top (an extrapolation)."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "reason": self.reason,
            "n": self.n,
            "n_distinct": self.n_distinct,
            "x_range": [_num(self.x_min), _num(self.x_max)],
            "n_bootstrap": self.n_bootstrap,
            "n_bootstrap_ok": self.n_bootstrap_ok,
            "level": self.level,
        }
        if not self.ok:
            return out
        out.update(
            a=self.a,
            b=self.b,
            c=self.c,
            x_ref=self.x_ref,
            space=self.space,
            residual_rms=self.residual,
            intervals={k: _pair(self.interval(k)) for k in "abc"},
        )
        at = np.array([self.x_min, self.x_max, 10 * self.x_max])
        band = self.predict_interval(at)
        out["predictions"] = [
            {
                "x": float(x),
                "value": float(v),
                "interval": None if band is None else [float(band[0][i]), float(band[1][i])],
            }
            for i, (x, v) in enumerate(zip(at, self.predict(at), strict=True))
        ]
        return out


def _num(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _pair(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [float(pair[0]), float(pair[1])]


def _law(x: np.ndarray, params: np.ndarray) -> np.ndarray:
    """a·x^−b + c for each row (a, b, c) of ``params`` (k, 3): shape (k, *x.shape); computed
    as exp(log a − b log x) so large a (FLOPs to a power) does not overflow."""
    a, b, c = (params[:, i].reshape((-1,) + (1,) * x.ndim) for i in range(3))
    with np.errstate(divide="ignore", over="ignore"):
        return np.exp(np.log(a) - b * np.log(x)) + c


def _failed(reason: str, x: np.ndarray, bootstrap: int) -> Fit:
    return Fit(
        ok=False,
        reason=reason,
        n=int(x.size),
        n_distinct=int(np.unique(x).size),
        x_min=float(x.min()) if x.size else math.nan,
        x_max=float(x.max()) if x.size else math.nan,
        n_bootstrap=bootstrap,
    )


def _problem(y: np.ndarray) -> str | None:
    """Why ``y`` cannot carry a saturating law, or None."""
    if (y < 0).any():
        return f"negative values (min {y.min():.4g}): the law needs L ≥ 0"
    if y.max() - y.min() <= 1e-9 * max(abs(y.max()), 1e-300):
        return f"y is flat (all {y[0]:.4g})"
    return None


class _Problem:
    """One least-squares problem: u = x / x_ref (n,), y (n,); θ = (log A, b[, c])."""

    def __init__(self, u: np.ndarray, y: np.ndarray, log_space: bool | None = None):
        self.log_u = np.log(u)
        self.y = y
        # Relative residuals when every L > 0 (a resample keeps its point fit's choice).
        self.log_space = bool((y > 0).all()) if log_space is None else log_space
        # c ∈ [0, min y) in log space; pinned at 0 when some L = 0 (linear residuals).
        self.c_max = float(y.min()) * (1 - 1e-6) if self.log_space else 0.0
        self.scale = float(y.max())

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        z = np.exp(theta[0] - theta[1] * self.log_u)
        c = theta[2] if self.log_space else 0.0
        if self.log_space:
            return np.log(z + c) - np.log(self.y)
        return (z - self.y) / self.scale

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        z = np.exp(theta[0] - theta[1] * self.log_u)
        if self.log_space:
            f = z + theta[2]
            return np.stack([z / f, -z * self.log_u / f, 1 / f], axis=1)
        return np.stack([z, -z * self.log_u], axis=1) / self.scale

    def cost(self, theta: np.ndarray) -> float:
        r = self.residuals(theta) / LOSS_SCALE
        return float(np.sum(2 * (np.sqrt(1 + r * r) - 1)))  # soft-L1, as least_squares

    def grid_start(self) -> np.ndarray:
        """The best (log A, b, c) over a grid of b, (A, c) in closed form for each."""
        z = np.exp(-_B_GRID[:, None] * self.log_u[None, :])  # (grid, n)
        zm, ym = z.mean(axis=1), self.y.mean()
        var = ((z - zm[:, None]) ** 2).sum(axis=1)
        slope = ((z - zm[:, None]) * (self.y - ym)).sum(axis=1) / np.maximum(var, 1e-300)
        c = np.clip(ym - slope * zm, 0.0, self.c_max)
        a = ((self.y - c[:, None]) * z).sum(axis=1) / (z * z).sum(axis=1)
        a = np.maximum(a, 1e-6 * self.scale)
        starts = np.stack([np.log(a), _B_GRID, c], axis=1)
        fitted = a[:, None] * z + (c[:, None] if self.log_space else 0.0)
        if self.log_space:
            r = (np.log(fitted) - np.log(self.y)) / LOSS_SCALE
        else:
            r = (fitted - self.y) / self.scale / LOSS_SCALE
        costs = np.sum(2 * (np.sqrt(1 + r * r) - 1), axis=1)  # self.cost, per grid point
        return starts[int(np.argmin(costs))]

    def solve(self, extra_start: np.ndarray | None = None) -> np.ndarray | None:
        """(A, b, c) of the best local optimum from the grid start (and ``extra_start``)."""
        start = self.grid_start()
        if extra_start is not None and self.cost(extra_start) < self.cost(start):
            start = extra_start
        k = 3 if self.log_space else 2
        low = np.array([-np.inf, 0.0, 0.0])[:k]
        high = np.array([np.inf, B_MAX, self.c_max])[:k]
        x0 = np.clip(start[:k], low, high)  # least_squares moves it strictly inside
        try:
            result = optimize.least_squares(
                self.residuals if k == 3 else lambda t: self.residuals(np.append(t, 0.0)),
                x0,
                jac=self.jacobian if k == 3 else lambda t: self.jacobian(np.append(t, 0.0)),
                bounds=(low, high),
                loss="soft_l1",
                f_scale=LOSS_SCALE,
                method="trf",
            )
        except (ValueError, np.linalg.LinAlgError):
            return None
        theta = result.x if k == 3 else np.append(result.x, 0.0)
        if not np.isfinite(theta).all():
            return None
        if theta[2] < 1e-9 * self.scale:  # at its bound (TRF stays strictly inside): 0
            theta[2] = 0.0
        return theta


def fit_saturating_power_law(x, y, *, bootstrap: int = 1000, seed: int = 0) -> Fit:
    """L = a·x^−b + c through the points (x, y): (n,) arrays; x > 0 in any unit (FLOPs,
    parameters, hours), y ≥ 0 in the target's unit. Non-finite pairs and x ≤ 0 are dropped.

    ``bootstrap`` resamples of the points (rows, with replacement, ``default_rng(seed)``)
    give the 95 % intervals (0: none). Never raises on degenerate data: ``ok=False`` and a
    ``reason`` instead (fewer than 3 distinct x, flat or negative y, no decrease with x).
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    x, y = x[keep], y[keep]
    distinct = int(np.unique(x).size)
    if distinct < 3:
        return _failed(f"fewer than 3 distinct x values ({distinct})", x, bootstrap)
    problem_text = _problem(y)
    if problem_text:
        return _failed(problem_text, x, bootstrap)
    x_ref = float(np.exp(np.mean(np.log(x))))
    problem = _Problem(x / x_ref, y)
    theta = problem.solve()
    if theta is None:
        return _failed("the optimiser failed", x, bootstrap)
    if theta[1] < FLAT_B:
        return _failed(f"y does not fall with x (b = {theta[1]:.2g} ≈ 0)", x, bootstrap)
    residual = float(np.sqrt(np.mean(problem.residuals(theta) ** 2)))

    def to_abc(t: np.ndarray) -> np.ndarray:
        return np.array([math.exp(t[0] + t[1] * math.log(x_ref)), t[1], t[2]])

    samples = []
    rng = np.random.default_rng(seed)
    for _ in range(bootstrap):
        index = rng.integers(0, x.size, x.size)
        xs, ys = x[index], y[index]
        if np.unique(xs).size < 3 or _problem(ys):
            continue
        t = _Problem(xs / x_ref, ys, problem.log_space).solve(extra_start=theta)
        if t is not None:
            samples.append(to_abc(t))
    a, b, c = to_abc(theta)
    return Fit(
        ok=True,
        reason=None,
        a=float(a),
        b=float(b),
        c=float(c),
        n=int(x.size),
        n_distinct=distinct,
        x_min=float(x.min()),
        x_max=float(x.max()),
        x_ref=x_ref,
        space="log" if problem.log_space else "linear",
        residual=residual,
        samples=np.array(samples).reshape(-1, 3),
        n_bootstrap=bootstrap,
    )


def schedules(rows: Iterable[Mapping]) -> list[str]:
    """The schedules of the rows, sorted by name."""
    return sorted({str(r["schedule"]) for r in rows})


def points(rows: Iterable[Mapping], target: str, predictor: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): (n,) arrays of the rows that have both the predictor and the target."""
    pairs = [(PREDICTORS[predictor].read(r), TARGETS[target].read(r)) for r in rows]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pairs, strict=True)
    return np.array(x), np.array(y)


def fit_all(
    rows: Sequence[Mapping], *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, dict[str, dict[str, Fit]]]:
    """``{schedule: {target: {predictor: Fit}}}`` for every schedule in ``rows``, every target
    in ``TARGETS`` and predictor in ``PREDICTORS`` (the runs with both values; a target no run
    reports gives ``ok=False``)."""
    out: dict[str, dict[str, dict[str, Fit]]] = {}
    for schedule in schedules(rows):
        mine = [r for r in rows if str(r["schedule"]) == schedule]
        out[schedule] = {
            target: {
                predictor: fit_saturating_power_law(
                    *points(mine, target, predictor), bootstrap=bootstrap, seed=seed
                )
                for predictor in PREDICTORS
            }
            for target in TARGETS
        }
    return out


def _budgets(rows: Iterable[Mapping], target: str) -> list[dict]:
    """The runs of one schedule averaged over seeds: one point per (size, steps,
    data_fraction) with the target, sorted by compute."""
    groups: dict[tuple, list[Mapping]] = {}
    for r in rows:
        if TARGETS[target].read(r) is None or _get(r, "compute") is None:
            continue
        key = (str(r["size"]), r.get("steps"), r.get("data_fraction"))
        groups.setdefault(key, []).append(r)
    out = []
    for (size, steps, fraction), runs in groups.items():
        out.append(
            {
                "size": size,
                "steps": steps,
                "data_fraction": fraction,
                "parameters": _get(runs[0], "parameters", "total"),
                "compute": float(np.mean([_get(r, "compute") for r in runs])),
                "value": float(np.mean([TARGETS[target].read(r) for r in runs])),
                "runs": sorted(str(r.get("run")) for r in runs),
            }
        )
    return sorted(out, key=lambda p: (p["compute"], p["value"], p["size"]))


def _size_curve(budgets: list[dict]) -> dict:
    """A size's L(C): the saturating law with ≥ 3 budgets when it fits, else a power law
    a·C^−b (c = 0) by least squares in log–log (through both points with 2 budgets; b may be
    negative there: it only interpolates)."""
    compute = np.array([p["compute"] for p in budgets])
    value = np.array([p["value"] for p in budgets])
    if np.unique(compute).size >= 3:
        fit = fit_saturating_power_law(compute, value, bootstrap=0)
        if fit.ok:
            return {"kind": "saturating", "a": fit.a, "b": fit.b, "c": fit.c}
    if (value <= 0).any():
        return {"kind": "linear", "compute": compute.tolist(), "value": value.tolist()}
    slope, intercept = np.polyfit(np.log(compute), np.log(value), 1)
    return {"kind": "power", "a": float(np.exp(intercept)), "b": float(-slope), "c": 0.0}


def _curve_value(curve: dict, compute: float) -> float:
    if curve["kind"] == "linear":
        return float(np.interp(math.log(compute), np.log(curve["compute"]), curve["value"]))
    return float(np.exp(math.log(curve["a"]) - curve["b"] * math.log(compute)) + curve["c"])


def compute_frontier(rows: Sequence[Mapping], target: str, *, grid: int = 25) -> dict[str, dict]:
    """Per schedule, the compute frontier of ``target`` (lower is better):

    - ``points``: the runs averaged over seeds, one per (size, steps, data_fraction):
      ``{size, steps, data_fraction, parameters, compute (FLOPs), value, runs}``.
    - ``envelope``: at each compute level of ``points``, the best value reached with at most
      that compute — the lower envelope over sizes: ``{compute, value, size, at_compute}``
      (``at_compute``: the compute of the run that reached it).
    - ``optimal``: where at least 3 sizes each have ≥ 2 budgets, each such size's L(C) is
      fitted (``curves``; ``_size_curve``) and, on ``grid`` log-spaced compute levels, the
      size with the lowest fitted value among the sizes whose measured compute range covers
      that level (interpolation only; a level needs ≥ 2 such sizes):
      ``{compute: [...], size: [...], parameters: [...], value: [...]}``; otherwise None,
      with ``reason`` saying why.
    """
    out: dict[str, dict] = {}
    for schedule in schedules(rows):
        budgets = _budgets([r for r in rows if str(r["schedule"]) == schedule], target)
        envelope: list[dict] = []
        best = None
        for p in budgets:
            if best is None or p["value"] < best["value"]:
                best = p
            entry = {
                "compute": p["compute"],
                "value": best["value"],
                "size": best["size"],
                "at_compute": best["compute"],
            }
            if envelope and envelope[-1]["compute"] == p["compute"]:
                envelope[-1] = entry
            else:
                envelope.append(entry)
        by_size: dict[str, list[dict]] = {}
        for p in budgets:
            by_size.setdefault(p["size"], []).append(p)
        eligible = {s: ps for s, ps in by_size.items() if len({p["compute"] for p in ps}) >= 2}
        result: dict[str, Any] = {"points": budgets, "envelope": envelope, "optimal": None}
        if len(eligible) < 3:
            result["reason"] = (
                f"{len(eligible)} size(s) with ≥ 2 compute budgets (need 3): "
                "no compute-optimal size"
            )
            out[schedule] = result
            continue
        curves = {}
        for size, ps in eligible.items():
            curve = _size_curve(ps)
            curve["compute_range"] = [ps[0]["compute"], ps[-1]["compute"]]
            curve["parameters"] = ps[0]["parameters"]
            curves[size] = curve
        low = min(c["compute_range"][0] for c in curves.values())
        high = max(c["compute_range"][1] for c in curves.values())
        optimal: dict[str, list] = {"compute": [], "size": [], "parameters": [], "value": []}
        for level in np.geomspace(low, high, grid):
            covering = [
                s
                for s, c in curves.items()
                if c["compute_range"][0] * (1 - 1e-9) <= level <= c["compute_range"][1] * (1 + 1e-9)
            ]
            if len(covering) < 2:
                continue
            values = {s: _curve_value(curves[s], level) for s in covering}
            size = min(values, key=lambda s: (values[s], s))
            optimal["compute"].append(float(level))
            optimal["size"].append(size)
            optimal["parameters"].append(curves[size]["parameters"])
            optimal["value"].append(values[size])
        result["curves"] = curves
        if optimal["compute"]:
            result["optimal"] = optimal
        else:
            result["reason"] = "the sizes' compute ranges do not overlap: no level to compare"
        out[schedule] = result
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(names: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cycle = plt.get_cmap("tab10")
    return {name: cycle(i % 10) for i, name in enumerate(names)}


def _short(value: float) -> str:
    return f"{value:.3g}"


def plot_laws(
    rows: Sequence[Mapping], fits: Mapping[str, Mapping[str, Mapping[str, Fit]]], folder: str
) -> list[str]:
    """One PNG per target × predictor with data (``folder/law_<target>_vs_<predictor>.png``):
    each schedule's runs as points, its fitted law as a line and the law's 95 % bootstrap band
    shaded (over the data's x range); log x. Returns the paths written."""
    plt = _pyplot()
    os.makedirs(folder, exist_ok=True)
    names = sorted(fits)
    colours = _colours(names)
    paths = []
    for target, t in TARGETS.items():
        for predictor, p in PREDICTORS.items():
            data = {
                s: points([r for r in rows if str(r["schedule"]) == s], target, predictor)
                for s in names
            }
            if not any(x.size for x, _ in data.values()):
                continue
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            for schedule in names:
                x, y = data[schedule]
                if not x.size:
                    continue
                fit = fits[schedule][target][predictor]
                colour = colours[schedule]
                if fit.ok:
                    grid = np.geomspace(fit.x_min, fit.x_max, 80)
                    b_int = fit.interval("b")
                    b_text = f"b={fit.b:.2f}" + (
                        f" [{b_int[0]:.2f}, {b_int[1]:.2f}]" if b_int else ""
                    )
                    label = f"{schedule}: {b_text}, c={_short(fit.c)}"
                    ax.plot(grid, fit.predict(grid), color=colour, label=label)
                    band = fit.predict_interval(grid)
                    if band is not None:
                        ax.fill_between(grid, band[0], band[1], color=colour, alpha=0.2, lw=0)
                else:
                    label = f"{schedule}: no fit ({fit.reason})"
                # The runs; labelled only when there is no line to carry the label.
                ax.scatter(x, y, color=colour, s=18, zorder=3, label=None if fit.ok else label)
            ax.set_xscale("log")
            ax.set_xlabel(f"{p.label} ({p.unit})")
            ax.set_ylabel(f"{t.label} ({t.unit})")
            ax.set_title(rf"{target} vs {predictor}: $L = a\,x^{{-b}} + c$", fontsize=10)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3, which="both")
            fig.tight_layout()
            path = os.path.join(folder, f"law_{target}_vs_{predictor}.png")
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths


def plot_frontier(frontier: Mapping[str, Mapping], target: str, path: str) -> str | None:
    """``path``: one panel per schedule, compute on a log x axis: each size's seed-averaged
    runs joined by a line, the lower envelope as a black step line, and the compute-optimal
    size's fitted value (where there is one) as a dashed line, each point labelled by size.
    None (nothing written) when no schedule has a point."""
    names = [s for s in sorted(frontier) if frontier[s]["points"]]
    if not names:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), sharey=True, squeeze=False)
    sizes = sorted(
        {p["size"] for s in names for p in frontier[s]["points"]},
        key=lambda size: (
            min(
                p["parameters"] or 0
                for s in names
                for p in frontier[s]["points"]
                if p["size"] == size
            ),
            size,
        ),
    )
    colours = _colours(sizes)
    for ax, schedule in zip(axes[0], names, strict=True):
        f = frontier[schedule]
        for size in sizes:
            ps = [p for p in f["points"] if p["size"] == size]
            if ps:
                ax.plot(
                    [p["compute"] for p in ps],
                    [p["value"] for p in ps],
                    marker="o",
                    color=colours[size],
                    label=f"{size} ({ps[0]['parameters']:.2g} parameters)"
                    if ps[0]["parameters"]
                    else size,
                )
        envelope = f["envelope"]
        ax.step(
            [e["compute"] for e in envelope],
            [e["value"] for e in envelope],
            where="post",
            color="black",
            lw=1.5,
            label="best so far",
        )
        optimal = f.get("optimal")
        if optimal:
            ax.plot(
                optimal["compute"], optimal["value"], color="grey", ls="--", label="optimal size"
            )
            changes = [
                i for i, s in enumerate(optimal["size"]) if i == 0 or s != optimal["size"][i - 1]
            ]
            for i in changes:
                ax.annotate(
                    optimal["size"][i],
                    (optimal["compute"][i], optimal["value"][i]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(0, -10),
                )
        ax.set_xscale("log")
        ax.set_xlabel("training compute (FLOPs)")
        ax.set_title(schedule, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(f"{TARGETS[target].label} ({TARGETS[target].unit})")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _with_interval(value: float, pair: list[float] | None, fmt: str, zero: float = 0.0) -> str:
    """``value [low, high]``; numbers below ``zero`` in size written as 0 (a c of 1e-19)."""

    def number(v: float) -> str:
        return "0" if abs(v) < zero else format(v, fmt)

    return (
        number(value) if pair is None else f"{number(value)} [{number(pair[0])}, {number(pair[1])}]"
    )


def report_markdown(report: Mapping) -> str:
    """``laws.md`` from ``laws.json``'s content: a table of the fits per target, then the
    frontier per target and schedule."""
    lines = [
        f"# Scaling laws of sweep {report['sweep']}",
        "",
        f"{report['runs']} runs; schedules {', '.join(report['schedules'])}. "
        "Fits of L = a·x^−b + c per schedule, on every run of the schedule with the value "
        f"(marginal over the other axes); intervals: {round(100 * LEVEL)} % bootstrap over runs "
        f"({report['bootstrap']} resamples, seed {report['seed']}; `ok` = resamples that "
        "could be fitted; n: runs (distinct x values), 3 distinct x determine the law exactly). "
        "L̂ at 10× max x is an extrapolation.",
        "",
    ]
    for target, t in TARGETS.items():
        lines += [
            f"## {t.label} ({t.unit})",
            "",
            "| schedule | x | n | a | b | c | L̂ at max x | L̂ at 10× max x | ok / resamples |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for schedule in report["schedules"]:
            for predictor, p in PREDICTORS.items():
                f = report["fits"][schedule][target][predictor]
                head = f"| {schedule} | {predictor} ({p.unit}) | {f['n']} ({f['n_distinct']} x) |"
                if not f["ok"]:
                    lines.append(f"{head} no fit: {f['reason']} | | | | | |")
                    continue
                intervals = f["intervals"]
                cells = [
                    _with_interval(f["a"], intervals["a"], ".3g"),
                    _with_interval(f["b"], intervals["b"], ".3f"),
                    _with_interval(
                        f["c"], intervals["c"], ".4g", 1e-6 * f["predictions"][1]["value"]
                    ),
                    *(
                        _with_interval(q["value"], q["interval"], ".4g")
                        for q in f["predictions"][1:]
                    ),
                    f"{f['n_bootstrap_ok']} / {f['n_bootstrap']}",
                ]
                lines.append(f"{head} " + " | ".join(cells) + " |")
        lines += ["", f"### Compute frontier: {target}", ""]
        for schedule, fr in report["frontier"][target].items():
            if not fr["points"]:
                lines.append(f"- {schedule}: no runs with this value.")
                continue
            steps = [
                e for i, e in enumerate(fr["envelope"]) if i == 0 or e["at_compute"] == e["compute"]
            ]
            path = ", ".join(
                f"{e['compute']:.3g} FLOPs → {e['value']:.4g} ({e['size']})" for e in steps
            )
            lines.append(f"- {schedule}, best so far: {path}.")
            optimal = fr["optimal"]
            if optimal is None:
                lines.append(f"  Compute-optimal size: none ({fr['reason']}).")
            else:
                spans = []
                for i, size in enumerate(optimal["size"]):
                    if i == 0 or size != optimal["size"][i - 1]:
                        spans.append([size, optimal["compute"][i], optimal["compute"][i]])
                    spans[-1][2] = optimal["compute"][i]
                text = "; ".join(f"{s} for {lo:.3g}–{hi:.3g} FLOPs" for s, lo, hi in spans)
                lines.append(f"  Compute-optimal size (fitted per-size curves): {text}.")
        lines.append("")
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities as None, numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(folder: str, *, bootstrap: int = 1000, seed: int = 0) -> str:
    """Fits every law of ``folder/sweep.jsonl`` and writes ``laws.json`` (returned),
    ``laws.md`` and the PNGs under ``folder/plots/``; deterministic for a given input."""
    rows = load_rows(folder)
    if not rows:
        raise ValueError(f"{os.path.join(folder, SWEEP_FILE)}: no runs")
    fits = fit_all(rows, bootstrap=bootstrap, seed=seed)
    frontier = {target: compute_frontier(rows, target) for target in TARGETS}
    plots_dir = os.path.join(folder, PLOTS_DIR)
    plots = plot_laws(rows, fits, plots_dir)
    for target in TARGETS:
        path = plot_frontier(
            frontier[target], target, os.path.join(plots_dir, f"frontier_{target}.png")
        )
        if path:
            plots.append(path)
    report = _clean(
        {
            "sweep": os.path.basename(os.path.normpath(os.path.abspath(folder))),
            "runs": len(rows),
            "schedules": schedules(rows),
            "bootstrap": bootstrap,
            "seed": seed,
            "level": LEVEL,
            "model": "L = a * x**-b + c",
            "targets": {k: {"label": q.label, "unit": q.unit} for k, q in TARGETS.items()},
            "predictors": {k: {"label": q.label, "unit": q.unit} for k, q in PREDICTORS.items()},
            "fits": {
                s: {t: {p: fit.to_json() for p, fit in by_p.items()} for t, by_p in by_t.items()}
                for s, by_t in fits.items()
            },
            "frontier": frontier,
            "plots": sorted(os.path.relpath(p, folder) for p in plots),
        }
    )
    path = os.path.join(folder, "laws.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    os.replace(path + ".tmp", path)
    md = os.path.join(folder, "laws.md")
    with open(md + ".tmp", "w") as f:
        f.write(report_markdown(report))
    os.replace(md + ".tmp", md)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fastvgs_jax.sweep.laws",
        description="Fit L = a·x^−b + c to a sweep's runs; write laws.json, laws.md, plots/.",
    )
    parser.add_argument("--sweep", required=True, metavar="DIR", help="folder with sweep.jsonl")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.sweep, bootstrap=args.bootstrap, seed=args.seed)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    print(f"wrote {os.path.join(args.sweep, 'laws.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
