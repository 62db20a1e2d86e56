"""Per-series statistical forecasts: the M competitions' Naive2, statsmodels' Theta method and ETS.

:func:`naive2` is M4's Naive2 benchmark: the last seasonally adjusted value of the history, re-seasonalised
(M4's seasonality test and classical multiplicative decomposition, :mod:`rnnkit.metrics.forecast`).

:func:`theta` fits ``statsmodels.tsa.forecasting.theta.ThetaModel(y, period=period)`` with its defaults;
:func:`ets` fits statsmodels' ``ETSModel`` over the configurations of :data:`ETS_CONFIGS` and keeps the one of
lowest AIC. Both are the very calls of the statistical benchmark (``benchmarks/forecasting_m.py`` imports them),
so the numbers agree. :func:`statistical_forecasts` applies one of them (:data:`METHODS`) to many histories;
where statsmodels fails on a series (it raises, or returns a value that is not finite), the series gets its
Naive2 forecast instead, and the caller is told which. statsmodels is an optional dependency (``pip install
'rnnkit[forecast]'``), imported on the first call.

The forecasting task combines these forecasts with its global network (``model.combine: theta`` or ``ets``,
docs/forecasting.md).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import RnnkitError
from ..metrics import forecast as fm

__all__ = ["ETS_CONFIGS", "METHODS", "ets", "naive2", "statistical_forecasts", "theta", "theta_forecasts"]

#: what statsmodels raises on a series it cannot fit (too short, degenerate); anything else is a bug and propagates
FIT_ERRORS = (ValueError, ArithmeticError, IndexError, np.linalg.LinAlgError)


def naive2(x: np.ndarray, h: int, m: int) -> np.ndarray:
    """The Naive2 forecast ``(h,)`` from the history ``x`` ``(n,)`` with seasonal period ``m``: its last
    seasonally adjusted value (M4's test and classical decomposition, :mod:`rnnkit.metrics.forecast`),
    re-seasonalised."""
    adjusted, _ = fm.deseasonalise(x, m)
    return adjusted[-1] * fm.future_indices(x, m, h)


#: the ``statsmodels.tsa`` submodule each method fits with
MODULES = {"theta": "forecasting.theta", "ets": "exponential_smoothing.ets"}


def _statsmodels(method: str):
    """The ``statsmodels.tsa`` submodule ``method`` needs, or a one-line error naming the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(f"statsmodels.tsa.{MODULES[method]}")
    except ImportError:
        raise RnnkitError(f"model.combine={method} needs statsmodels: pip install 'rnnkit[forecast]'") from None


def theta(y: np.ndarray, period: int, horizon: int) -> np.ndarray:
    """statsmodels' Theta forecast ``(horizon,)`` of ``y``: ``ThetaModel(y, period=period)`` with its defaults."""
    model = _statsmodels("theta").ThetaModel(y, period=period)
    return np.asarray(model.fit().forecast(horizon), dtype=np.float64)


#: the ETS configurations :func:`ets` chooses from: (error, trend, damped, season) over error {A, M} x trend
#: {N, A, Ad} x season {N, A, M}, less additive error with multiplicative season (unstable, as in R's ``ets``)
ETS_CONFIGS = [
    (error, trend, damped, season)
    for error in ("add", "mul")
    for trend, damped in ((None, False), ("add", False), ("add", True))
    for season in (None, "add", "mul")
    if not (error == "add" and season == "mul")
]


def ets(y: np.ndarray, period: int, horizon: int, ic: str = "aic") -> tuple[np.ndarray, str]:
    """The forecast ``(horizon,)`` of the statsmodels ``ETSModel`` of lowest ``ic`` (``aic``, ``aicc`` or
    ``bic``) over :data:`ETS_CONFIGS`, and its name (``M,Ad,M``: error, trend, season). Multiplicative parts only
    for positive data; a season only for ``period > 1`` and at least two full periods. A configuration that
    fails or forecasts non-finite values is skipped; raises ``ValueError`` when none can be fitted."""
    ETSModel = _statsmodels("ets").ETSModel
    positive = bool(np.all(y > 0))
    seasonal_ok = period > 1 and y.size >= 2 * period
    best: tuple[float, np.ndarray, str] | None = None
    for error, trend, damped, season in ETS_CONFIGS:
        if (season and not seasonal_ok) or (not positive and "mul" in (error, season)):
            continue
        try:
            fit = ETSModel(
                y, error=error, trend=trend, damped_trend=damped, seasonal=season,
                seasonal_periods=period if season else None,
            ).fit(disp=False)  # fmt: skip
            score = float(getattr(fit, ic))
            out = np.asarray(fit.forecast(horizon), dtype=np.float64)
        except FIT_ERRORS:
            continue
        if not (math.isfinite(score) and out.shape == (horizon,) and np.all(np.isfinite(out))):
            continue
        if best is None or score < best[0]:
            name = ",".join(
                ["A" if error == "add" else "M", "N" if trend is None else "Ad" if damped else "A",
                 "N" if season is None else "A" if season == "add" else "M"]
            )  # fmt: skip
            best = (score, out, name)
    if best is None:
        raise ValueError("no ETS configuration could be fitted")
    return best[1], best[2]


#: the per-series methods :func:`statistical_forecasts` offers: name -> f(y, period, horizon) -> (horizon,)
METHODS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "theta": theta,
    "ets": lambda y, period, horizon: ets(y, period, horizon)[0],
}


def _fit_one(task: tuple[str, np.ndarray, int, int]) -> np.ndarray | None:
    """One history's forecast by a method, or None where statsmodels cannot fit it (warnings silenced)."""
    method, y, period, horizon = task
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return METHODS[method](y, period, horizon)
        except FIT_ERRORS:
            return None


#: the fewest histories worth fitting in worker processes (starting them costs about a second)
PARALLEL_FROM = 64


def statistical_forecasts(
    method: str,
    histories: Sequence[np.ndarray],
    period: int,
    horizon: int,
    jobs: int = 1,
    parallel_from: int = PARALLEL_FROM,
) -> tuple[np.ndarray, np.ndarray]:
    """The forecast of each history by ``method`` (a key of :data:`METHODS`), Naive2 where it fails.

    ``histories``: N 1-D arrays ``(n_i,)`` of finite values, ``period`` the seasonal period (1: none),
    ``horizon`` the steps forecast. Returns ``(forecasts (N, horizon), fell_back (N,) bool)``: ``fell_back[i]``
    says series ``i`` got the Naive2 forecast because statsmodels raised or gave a non-finite value.
    statsmodels' warnings (convergence, ill-conditioning) are silenced inside the call only. With ``jobs > 1``
    and at least ``parallel_from`` histories the fits run in that many worker processes (each fit is
    independent and single-threaded, so the result is the same). Raises :class:`~rnnkit.errors.RnnkitError`
    when statsmodels is not installed.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    if period < 1 or horizon < 1:
        raise ValueError(f"period and horizon must be >= 1, got {period} and {horizon}")
    ys = [np.asarray(y, dtype=np.float64).reshape(-1) for y in histories]
    for i, y in enumerate(ys):
        if not y.size:
            raise ValueError(f"history {i} is empty: nothing to forecast from")
    tasks = [(method, y, period, horizon) for y in ys]
    if jobs > 1 and len(ys) >= parallel_from:
        _statsmodels(method)  # a missing statsmodels is said here, not in a worker
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # a fresh server process forks the workers: none inherits this process's OpenMP or torch state
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            fitted = list(pool.map(_fit_one, tasks, chunksize=max(1, len(tasks) // (4 * jobs))))
    else:
        fitted = [_fit_one(t) for t in tasks]
    out = np.empty((len(ys), horizon), dtype=np.float64)
    fell_back = np.zeros(len(ys), dtype=bool)
    for i, (y, forecast) in enumerate(zip(ys, fitted, strict=True)):
        if forecast is None or forecast.shape != (horizon,) or not np.isfinite(forecast).all():
            forecast = naive2(y, horizon, period)
            fell_back[i] = True
        out[i] = forecast
    return out, fell_back


def theta_forecasts(histories: Sequence[np.ndarray], period: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`statistical_forecasts` with statsmodels' Theta method."""
    return statistical_forecasts("theta", histories, period, horizon)
