"""Statistics for results over seeds: a summary per setting and a test between the two best settings.

Every function takes plain sequences of floats (one value per seed) and returns plain Python numbers, so the
results go into JSON as they are.

* :func:`summarize`: mean, sample standard deviation (``ddof=1``; 0 for one value), min, max, count.
* :func:`welch_t`: Welch's unequal-variance t statistic and its Welch-Satterthwaite degrees of freedom, in numpy.
* :func:`bootstrap_ci`: a percentile bootstrap confidence interval of a difference of means (seeded, numpy).
* :func:`compare_two`: Welch's t-test when SciPy is installed (the p-value from ``scipy.stats.t``), else the
  bootstrap interval; the result says which test it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: resamples of :func:`bootstrap_ci`
BOOTSTRAP_RESAMPLES = 10_000


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """``{"mean", "sd", "min", "max", "n"}`` of ``values`` (N,); ``sd`` is the sample standard deviation
    (``ddof=1``), 0.0 for a single value."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"summarize needs a non-empty list of numbers, got shape {x.shape}")
    sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return {"mean": float(x.mean()), "sd": sd, "min": float(x.min()), "max": float(x.max()), "n": int(x.size)}


def welch_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic of ``mean(a) - mean(b)`` and its Welch-Satterthwaite degrees of freedom.

    ``a`` (N,) and ``b`` (M,) need two values each. When both have zero variance the statistic is ``inf``
    (with the sign of the difference; ``nan`` for equal means) and the degrees of freedom ``nan``.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's t needs at least two values on each side, got {x.size} and {y.size}")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if va + vb == 0:
        return (math.copysign(math.inf, diff) if diff else math.nan), math.nan
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return float(t), float(df)


def bootstrap_ci(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval of ``mean(a) - mean(b)``: each side resampled with replacement on its own
    ``resamples`` times, with a generator seeded by ``seed`` (the same inputs give the same interval)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0 or not 0 < level < 1:
        raise ValueError(f"bootstrap_ci needs values on both sides and 0 < level < 1, got {x.size}, {y.size}, {level}")
    rng = np.random.default_rng(seed)
    ma = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    mb = y[rng.integers(0, y.size, (resamples, y.size))].mean(axis=1)
    lo, hi = np.quantile(ma - mb, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _scipy_t():
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats.t


def compare_two(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Is the difference of means between ``a`` and ``b`` (one value per seed each) more than seed noise?

    With SciPy installed: Welch's two-sided t-test, ``{"method": "welch-t", "t", "df", "p", ...}``. Without it:
    a bootstrap interval, ``{"method": "bootstrap", "ci": [lo, hi], ...}``, where an interval that excludes 0
    means a difference at that level. Both carry ``difference`` (mean(a) - mean(b)), ``level`` and
    ``significant``. Fewer than two values on a side: ``{"method": "none", "reason": ...}``.
    """
    diff = float(np.mean(a) - np.mean(b))
    base: dict[str, Any] = {"difference": diff, "level": level}
    if len(a) < 2 or len(b) < 2:
        return {**base, "method": "none", "reason": "a test needs at least two seeds per setting"}
    t_dist = _scipy_t()
    if t_dist is not None:
        t, df = welch_t(a, b)
        # no spread on either side (df is nan): the difference is exact, or there is none
        p = (1.0 if math.isnan(t) else 0.0) if math.isnan(df) else float(2 * t_dist.sf(abs(t), df))
        return {**base, "method": "welch-t", "t": t, "df": df, "p": p, "significant": p < 1 - level}
    lo, hi = bootstrap_ci(a, b, level)
    return {**base, "method": "bootstrap", "ci": [lo, hi], "resamples": BOOTSTRAP_RESAMPLES,
            "significant": lo > 0 or hi < 0}  # fmt: skip


def describe_test(result: dict[str, Any], first: str, second: str, metric: str) -> str:
    """One line for people: which test, between which settings, the difference and the verdict."""
    head = f"{first} vs {second}: {metric} difference {result['difference']:+.4g}"
    if result["method"] == "none":
        return f"{head}; no test ({result['reason']})"
    level = f"{result['level']:.0%}"
    verdict = "significant" if result["significant"] else "not significant"
    if result["method"] == "welch-t":
        return (
            f"{head}; Welch's t-test (scipy): t = {result['t']:.3g}, df = {result['df']:.3g}, "
            f"p = {result['p']:.3g} ({verdict} at {level})"
        )
    lo, hi = result["ci"]
    return (
        f"{head}; bootstrap {level} interval (numpy, {result['resamples']:,} resamples; SciPy not installed): "
        f"[{lo:+.4g}, {hi:+.4g}] ({verdict})"
    )
