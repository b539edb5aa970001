"""Statistics of a study, all from scipy.stats: per-arm mean, standard deviation and Student-t
confidence interval; per pair of arms the Welch t-test and the confidence interval of the
difference of means; and the Pareto front of accuracy against parameters.

Undefined figures (an interval from one seed, a p-value from two constant samples) are
None, never NaN, so that they stay `null` in JSON and "n/a" in tables.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def finite(x: Any) -> float | None:
    """float(x), or None for None, NaN and infinities."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """n, mean, std (ddof=1), standard error and the Student-t interval of the mean
    (scipy.stats.t.interval with scale scipy.stats.sem). With one value std, sem and the
    interval are None; with no spread at all the interval is the mean itself."""
    v = np.asarray([float(x) for x in values], dtype=float)
    n = int(v.size)
    out: dict[str, Any] = {"n": n, "mean": finite(v.mean()) if n else None, "std": None,
                           "sem": None, "ci95": None}
    if n < 2:
        return out
    sem = float(stats.sem(v))
    out["std"] = finite(np.std(v, ddof=1))
    out["sem"] = finite(sem)
    if sem == 0.0:  # scipy's interval is NaN at scale 0; a constant sample has a point interval
        out["ci95"] = [out["mean"], out["mean"]]
    else:
        lo, hi = stats.t.interval(confidence, n - 1, loc=v.mean(), scale=sem)
        out["ci95"] = [finite(lo), finite(hi)]
    return out


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean of `a` minus mean of `b`, with the Welch t-test (scipy.stats.ttest_ind,
    equal_var=False): its p-value (two-sided), t, degrees of freedom and the confidence
    interval of the difference (TtestResult.confidence_interval). Undefined parts are None
    (fewer than two values in an arm; both arms without spread)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out: dict[str, Any] = {"n_a": int(x.size), "n_b": int(y.size),
                           "difference": finite(x.mean() - y.mean()) if x.size and y.size else None,
                           "ci95": None, "p": None, "t": None, "df": None}
    if x.size < 2 or y.size < 2:
        return out
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(x, y, equal_var=False)
        ci = res.confidence_interval(confidence)
    lo, hi = finite(ci.low), finite(ci.high)
    out["ci95"] = [lo, hi] if lo is not None and hi is not None else None
    out["p"], out["t"], out["df"] = finite(res.pvalue), finite(res.statistic), finite(res.df)
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (no more parameters, x, and at least
    as accurate, y, and better in one of the two), in order of increasing x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any(xo <= x and yo >= y and (xo < x or yo > y)
                        for j, (xo, yo) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))
