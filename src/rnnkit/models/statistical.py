"""Per-series statistical forecasts: the M competitions' Naive2 and statsmodels' Theta method.

:func:`naive2` is M4's Naive2 benchmark: the last seasonally adjusted value of the history, re-seasonalised
(M4's seasonality test and classical multiplicative decomposition, :mod:`rnnkit.metrics.forecast`).

:func:`theta_forecasts` fits ``statsmodels.tsa.forecasting.theta.ThetaModel(y, period=period)`` with its
defaults to each history and forecasts ``horizon`` steps: the very call of the statistical benchmark
(``benchmarks/forecasting_m.py``), so the numbers agree. Where statsmodels fails on a series (it raises, or
returns a value that is not finite), the series gets its Naive2 forecast instead, and the caller is told
which. statsmodels is an optional dependency (``pip install 'rnnkit[forecast]'``), imported on the first call.

The forecasting task combines these forecasts with its global network (``model.combine: theta``,
docs/forecasting.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import RnnkitError
from ..metrics import forecast as fm

__all__ = ["naive2", "theta_forecasts"]

#: what statsmodels raises on a series it cannot fit (too short, degenerate); anything else is a bug and propagates
FIT_ERRORS = (ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError)


def naive2(x: np.ndarray, h: int, m: int) -> np.ndarray:
    """The Naive2 forecast ``(h,)`` from the history ``x`` ``(n,)`` with seasonal period ``m``: its last
    seasonally adjusted value (M4's test and classical decomposition, :mod:`rnnkit.metrics.forecast`),
    re-seasonalised."""
    adjusted, _ = fm.deseasonalise(x, m)
    return adjusted[-1] * fm.future_indices(x, m, h)


def theta_forecasts(histories: Sequence[np.ndarray], period: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' Theta forecast of each history, Naive2 where it fails.

    ``histories``: N 1-D arrays ``(n_i,)`` of finite values, ``period`` the seasonal period (1: none),
    ``horizon`` the steps forecast. Returns ``(forecasts (N, horizon), fell_back (N,) bool)``: ``fell_back[i]``
    says series ``i`` got the Naive2 forecast because ``ThetaModel`` raised or gave a non-finite value.
    statsmodels' warnings (convergence, ill-conditioning) are silenced inside the call only. Raises
    :class:`~rnnkit.errors.RnnkitError` when statsmodels is not installed.
    """
    try:
        from statsmodels.tsa.forecasting.theta import ThetaModel
    except ImportError:
        raise RnnkitError("model.combine=theta needs statsmodels: pip install 'rnnkit[forecast]'") from None
    if period < 1 or horizon < 1:
        raise ValueError(f"period and horizon must be >= 1, got {period} and {horizon}")
    out = np.empty((len(histories), horizon), dtype=np.float64)
    fell_back = np.zeros(len(histories), dtype=bool)
    for i, y in enumerate(histories):
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        forecast = None
        if y.size:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                try:
                    forecast = np.asarray(ThetaModel(y, period=period).fit().forecast(horizon), dtype=np.float64)
                except FIT_ERRORS:
                    forecast = None
        if forecast is None or forecast.shape != (horizon,) or not np.isfinite(forecast).all():
            if not y.size:
                raise ValueError(f"history {i} is empty: nothing to forecast from")
            forecast = naive2(y, horizon, period)
            fell_back[i] = True
        out[i] = forecast
    return out, fell_back
