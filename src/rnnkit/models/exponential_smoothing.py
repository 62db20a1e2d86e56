"""Per-series exponential smoothing with multiplicative seasonality: the statistical half of the ES hybrid.

:func:`holt_winters` fits level + multiplicative seasonality smoothing (Holt-Winters without a trend, the
exponential smoothing of Smyl's ES-RNN) to one series, in NumPy, on the series' own past only::

    l_t = a * y_t / s_{t-m} + (1 - a) * l_{t-1}
    s_t = g * y_t / l_t   + (1 - g) * s_{t-m}

with ``(a, g)`` chosen on a grid (:data:`ALPHAS` x :data:`GAMMAS`, all at once, vectorised over the grid) by the
mean absolute log error of the one-step forecasts ``l_{t-1} * s_{t-m}``. The states it returns are filtered,
hence causal: ``level[t]`` and ``season[t]`` depend on ``y[:t+1]`` only, so a window that ends at ``t`` can be
normalised by them without reading its future. The forecasting task
(:mod:`rnnkit.tasks.forecasting`, ``data.seasonality: holt-winters``) divides each input window by these
factors and by the level at its last step, lets a global network (:class:`~rnnkit.models.PanelForecaster`)
forecast the remainder, and multiplies back.
"""

from __future__ import annotations

import numpy as np

from ..metrics.forecast import seasonal_indices

#: the smoothing grid of :func:`holt_winters`: level weights and seasonal weights
ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
GAMMAS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


def initial_season(y: np.ndarray, m: int) -> np.ndarray:
    """Initial seasonal factors ``(m,)``: classical multiplicative decomposition of the first ``min(n, 4m)``
    points (ones when ``m < 2``, fewer than ``2m`` points or indices that are not all finite and positive)."""
    if m < 2 or len(y) < 2 * m:
        return np.ones(max(m, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        s = seasonal_indices(y[: min(len(y), 4 * m)], m)
    return s if bool(np.all(np.isfinite(s)) and np.all(s > 0)) else np.ones(m)


def holt_winters(
    y: np.ndarray, m: int, alphas: tuple[float, ...] = ALPHAS, gammas: tuple[float, ...] = GAMMAS
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Fit level + multiplicative seasonality (period ``m``; ``m < 2`` or fewer than ``2m`` points: level only)
    to ``y`` (n,), every value > 0.

    Returns ``(level (n,), season (n,), alpha, gamma)``: the filtered level and seasonal factor after each
    observation and the chosen weights. The initial level is the first deseasonalised value, the initial
    factors :func:`initial_season`.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = len(y)
    if n == 0 or not (y > 0).all():
        raise ValueError("holt_winters needs a non-empty series of values > 0")
    seasonal = m >= 2 and n >= 2 * m
    mm = m if seasonal else 1
    init = initial_season(y, m) if seasonal else np.ones(1)
    a = np.repeat(np.asarray(alphas, dtype=np.float64), len(gammas) if seasonal else 1)
    g = np.tile(np.asarray(gammas if seasonal else (0.0,), dtype=np.float64), len(alphas))
    G = len(a)
    ring = np.tile(init, (G, 1))  # (G, mm): s_{t-m} at position t % mm
    level = np.full(G, y[0] / init[0])
    levels = np.empty((G, n))
    seasons = np.empty((G, n))
    err = np.zeros(G)
    for t in range(n):
        s_prev = ring[:, t % mm]
        if t:
            err += np.abs(np.log(y[t] / (level * s_prev)))
        level = a * y[t] / s_prev + (1 - a) * level
        s_new = g * y[t] / level + (1 - g) * s_prev if seasonal else s_prev
        ring[:, t % mm] = s_new
        levels[:, t] = level
        seasons[:, t] = s_new
    best = int(np.argmin(err))
    return levels[best], seasons[best], float(a[best]), float(g[best])
