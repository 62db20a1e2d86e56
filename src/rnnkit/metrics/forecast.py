"""Forecast accuracy measures of the M competitions, and the seasonality handling of their Naive2 benchmark.

Plain numpy, no torch. Notation for one series: ``x`` the training part (``n`` points, the history the
forecast was made from), ``y`` the test part (``h`` points), ``f`` the point forecast (``h`` points), ``m``
the seasonal period (12 monthly, 4 quarterly, 1 for yearly and non-seasonal data), ``[L, U]`` a prediction
interval. Every per-series function takes 1-D arrays ``(h,)`` (and ``x`` of shape ``(n,)``) and returns a float;
the set-level functions (:func:`owa`, :func:`mean_ignoring_nan`) take one number per series.

* sMAPE (M3/M4), in percent: ``200/h * sum_t |y_t - f_t| / (|y_t| + |f_t|)``; a term with
  ``y_t = f_t = 0`` counts 0 (a perfect forecast of a zero).
* MAPE, in percent: ``100/h' * sum_t |y_t - f_t| / |y_t|`` over the ``h'`` points with ``y_t != 0``.
* MASE: ``mean_t |y_t - f_t| / s`` with ``s = 1/(n-m) * sum_{i=m+1..n} |x_i - x_{i-m}|``, the in-sample MAE of
  the seasonal naive forecast (``m = 1``: the naive forecast). NaN when ``s = 0`` (a constant history).
* OWA (M4): ``(sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2``, each the mean over the same set of series.
* Pinball (quantile) loss at level ``q``: ``mean_t max(q (y_t - f_t), (q - 1) (y_t - f_t))``.
* Coverage: the share of ``y_t`` inside ``[L_t, U_t]``.
* MSIS (M4) of a ``(1 - alpha)`` interval: ``1/h * sum_t [(U_t - L_t) + 2/alpha (L_t - y_t) 1{y_t < L_t}
  + 2/alpha (y_t - U_t) 1{y_t > U_t}] / s`` with the MASE scale ``s``; ``alpha = 0.05`` for M4's 95% interval,
  ``0.2`` for an 80% one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "coverage",
    "deseasonalise",
    "future_indices",
    "mape",
    "mase",
    "mase_scale",
    "mean_ignoring_nan",
    "msis",
    "owa",
    "pinball_loss",
    "quantile_loss",
    "seasonal_indices",
    "seasonality_test",
    "smape",
]


def _pair(y, f, what: str = "forecast") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    f = np.asarray(f, dtype=np.float64).reshape(-1)
    if y.shape != f.shape:
        raise ValueError(f"the {what} has {f.size} points, the actuals {y.size}")
    if y.size == 0:
        raise ValueError("no points to score")
    return y, f


def smape(y, f) -> float:
    """sMAPE of M3/M4 in percent: ``200/h * sum_t |y_t - f_t| / (|y_t| + |f_t|)``, in ``[0, 200]``.

    ``y``, ``f``: ``(h,)``. A term whose actual and forecast are both 0 counts 0.
    """
    y, f = _pair(y, f)
    num = np.abs(y - f)
    den = np.abs(y) + np.abs(f)
    terms = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(200.0 * terms.mean())


def mape(y, f) -> float:
    """MAPE in percent: ``100 * mean_t |y_t - f_t| / |y_t|`` over the points with ``y_t != 0`` (NaN if none).

    ``y``, ``f``: ``(h,)``.
    """
    y, f = _pair(y, f)
    keep = y != 0
    if not keep.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs(y[keep] - f[keep]) / np.abs(y[keep])))


def mase_scale(x, m: int = 1) -> float:
    """The MASE denominator: ``1/(n-m) * sum_{i=m+1..n} |x_i - x_{i-m}|``, the in-sample MAE of the seasonal
    naive forecast on the history ``x`` ``(n,)``.

    A history no longer than ``m`` points falls back to ``m = 1`` (as the M4 code does for short series);
    one of a single point has no scale (NaN).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if m < 1:
        raise ValueError(f"the seasonal period must be >= 1, got {m}")
    if x.size <= m:
        m = 1
    if x.size <= m:
        return float("nan")
    return float(np.mean(np.abs(x[m:] - x[:-m])))


def mase(y, f, x, m: int = 1) -> float:
    """MASE: ``mean_t |y_t - f_t| / mase_scale(x, m)``. ``y``, ``f``: ``(h,)``; ``x``: the history ``(n,)``.

    NaN when the scale is 0 or undefined (a constant or one-point history).
    """
    y, f = _pair(y, f)
    scale = mase_scale(x, m)
    if not scale > 0:
        return float("nan")
    return float(np.mean(np.abs(y - f)) / scale)


def mean_ignoring_nan(values: Iterable[float]) -> float:
    """The mean of the finite values (a series without a MASE scale drops out); NaN if there are none."""
    a = np.asarray(list(values), dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def owa(smape_method: float, mase_method: float, smape_naive2: float, mase_naive2: float) -> float:
    """M4's overall weighted average: ``(sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2) / 2``.

    Every argument is a mean over the same set of series (:func:`smape`, :func:`mase` per series, then
    averaged); below 1 means better than Naive2.
    """
    if not (smape_naive2 > 0 and mase_naive2 > 0):
        return float("nan")
    return 0.5 * (smape_method / smape_naive2 + mase_method / mase_naive2)


def pinball_loss(y, f, q: float) -> float:
    """Pinball (quantile) loss of the quantile forecast ``f`` ``(h,)`` at level ``q`` in (0, 1):
    ``mean_t max(q (y_t - f_t), (q - 1) (y_t - f_t))``, in the units of ``y``."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a quantile level must lie in (0, 1), got {q}")
    y, f = _pair(y, f, f"{q} quantile")
    d = y - f
    return float(np.mean(np.maximum(q * d, (q - 1.0) * d)))


def quantile_loss(y, quantiles: Mapping[float, Sequence[float]], scale: float = 1.0) -> float:
    """The mean pinball loss over the levels of ``quantiles`` ``{q: (h,) forecast}``, divided by ``scale``
    (for example :func:`mase_scale`, so series of different magnitudes can be averaged)."""
    if not quantiles:
        raise ValueError("no quantile forecasts")
    return float(np.mean([pinball_loss(y, f, float(q)) for q, f in quantiles.items()]) / scale)


def coverage(y, lower, upper) -> float:
    """The share (0..1) of actuals ``y`` ``(h,)`` inside their interval ``[lower_t, upper_t]``, ends included."""
    y, lo = _pair(y, lower, "lower bound")
    _, hi = _pair(y, upper, "upper bound")
    return float(np.mean((y >= lo) & (y <= hi)))


def msis(y, lower, upper, x, m: int = 1, alpha: float = 0.05) -> float:
    """M4's mean scaled interval score of the ``(1 - alpha)`` interval ``[lower, upper]`` (each ``(h,)``):
    ``mean_t [(U_t - L_t) + 2/alpha (L_t - y_t) 1{y_t < L_t} + 2/alpha (y_t - U_t) 1{y_t > U_t}]`` divided by
    :func:`mase_scale` ``(x, m)``. Lower is better; NaN when the scale is 0."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    y, lo = _pair(y, lower, "lower bound")
    _, hi = _pair(y, upper, "upper bound")
    scale = mase_scale(x, m)
    if not scale > 0:
        return float("nan")
    penalty = (2.0 / alpha) * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))
    return float(np.mean(hi - lo + penalty) / scale)


# ------------------------------------------------------------------------------------------ seasonality


def _acf(x: np.ndarray, nlags: int) -> np.ndarray:
    """Sample autocorrelations ``r_1..r_nlags`` as R's ``acf`` computes them:
    ``r_k = sum_{t=k+1..n} (x_t - mean)(x_{t-k} - mean) / sum_t (x_t - mean)^2``."""
    d = x - x.mean()
    den = float(d @ d)
    if den == 0.0:
        return np.full(nlags, np.nan)
    return np.array([float(d[k:] @ d[:-k]) / den for k in range(1, nlags + 1)])


def seasonality_test(x, m: int) -> bool:
    """M4's Naive2 seasonality test: is the history ``x`` ``(n,)`` seasonal with period ``m``?

    True when ``m > 1``, ``n >= 3m`` and ``|r_m| > 1.645 * sqrt((1 + 2 * sum_{k=1..m-1} r_k^2) / n)``: the
    lag-``m`` autocorrelation lies outside the 90% two-sided band of Bartlett's formula (the M4 benchmarks'
    R code). A constant history is not seasonal.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if m <= 1 or x.size < 3 * m:
        return False
    r = _acf(x, m)
    if np.isnan(r).any():
        return False
    limit = 1.645 * np.sqrt((1.0 + 2.0 * float(np.sum(r[: m - 1] ** 2))) / x.size)
    return bool(abs(r[m - 1]) > limit)


def seasonal_indices(x, m: int) -> np.ndarray:
    """The ``m`` seasonal indices of classical multiplicative decomposition (R's ``decompose(type =
    "multiplicative")``); entry ``i`` belongs to the points ``x_t`` with ``t % m == i`` (0-based).

    The trend is the centred moving average (``m`` odd: ``m`` equal weights; ``m`` even: ``2 x m``, weights
    ``1/(2m), 1/m, ..., 1/m, 1/(2m)``); the indices are the means of ``x_t / trend_t`` per position of the
    cycle, scaled to average 1. ``x``: ``(n,)``, positive, ``n >= 2m``. Returns ``(m,)``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if m < 2:
        return np.ones(max(m, 1))
    if x.size < 2 * m:
        raise ValueError(f"classical decomposition needs two full periods ({2 * m} points), got {x.size}")
    weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half = len(weights) // 2
    trend = np.full(x.size, np.nan)
    trend[half : x.size - half] = np.convolve(x, weights, mode="valid")
    ratio = x / trend
    figure = np.array([np.nanmean(ratio[i::m]) for i in range(m)])
    return figure / figure.mean()


def deseasonalise(x, m: int) -> tuple[np.ndarray, np.ndarray]:
    """M4's Naive2 preprocessing: ``(x / s, s)`` where ``s`` ``(n,)`` are the :func:`seasonal_indices` along
    ``x`` when :func:`seasonality_test` says seasonal (and the indices are all positive), else ones.
    Re-seasonalise a forecast of the next ``h`` points with :func:`future_indices`."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    s = _naive2_indices(x, m)[np.arange(x.size) % m]
    return x / s, s


def future_indices(x, m: int, h: int) -> np.ndarray:
    """The seasonal indices ``(h,)`` of the ``h`` points after the history ``x`` (ones when not seasonal)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    return _naive2_indices(x, m)[(x.size + np.arange(h)) % m]


def _naive2_indices(x: np.ndarray, m: int) -> np.ndarray:
    """``(max(m, 1),)`` seasonal indices when the history is seasonal, else ones. Indices that are not all
    finite and positive (a history with zeros at one position of the cycle) mean no deseasonalisation."""
    if not seasonality_test(x, m):
        return np.ones(max(m, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = seasonal_indices(x, m)
    return s if bool(np.all(np.isfinite(s)) and np.all(s > 0)) else np.ones(m)
