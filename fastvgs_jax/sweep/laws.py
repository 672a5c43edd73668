"""Saturating power laws of a sweep's runs, with bootstrap intervals.

Per schedule, every target against every predictor (``fastvgs_jax.sweep.results``: ``TARGETS``,
``PREDICTORS``) is fitted with

    L(x) = a · x^(−b) + c,        a > 0, b ≥ 0, 0 ≤ c < min(L),

where ``c`` is the irreducible part (what more ``x`` cannot remove) and ``b`` the rate.

Each fit is marginal: every run of the schedule with both values, whatever the other axes
(sizes, budgets, data fractions, seeds). It is not the joint L(N, D) form; the compute
frontier (``fastvgs_jax.sweep.frontier``) is the per-compute envelope over sizes.

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

``python -m fastvgs_jax.sweep.laws --sweep=DIR`` writes ``DIR/laws.json``, ``DIR/laws.md`` and
the plots (``fastvgs_jax.sweep.laws_report``, which this module's ``__main__`` runs).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize

from fastvgs_jax.sweep.results import PREDICTORS, TARGETS, points, schedules

LEVEL = 0.95  # two-sided bootstrap interval
B_MAX = 10.0  # upper bound of the exponent (on x / x_ref)
FLAT_B = 1e-3  # a fitted b below this: L does not fall with x (a and c not identifiable)
LOSS_SCALE = 0.1  # soft-L1 scale of the residuals (relative: 10 %)
MIN_INTERVAL_SAMPLES = 10  # fewer successful resamples: no interval
_B_GRID = np.geomspace(1e-2, 4.0, 40)


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


if __name__ == "__main__":
    from fastvgs_jax.sweep import laws_report

    sys.exit(laws_report.main())
