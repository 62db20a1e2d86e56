"""Forecasting: the rnnkit recipes against statsmodels and seasonal naive, same split, same test span, same run.

For each dataset (``air-passengers``, ``co2``, ``sunspots``, from the dataset registry) it

* trains the recipe of the same name through the library (``rnnkit.tasks.runner.train``) and takes its
  ``origin_*`` test metrics: the one forecast of the whole test part from its start (AirPassengers: the 36
  months 1958-01..1960-12 from the end of 1957), rolled forward block by block;
* fits statsmodels' ``ExponentialSmoothing`` (additive trend with additive season, and with multiplicative
  season), ``ARIMA`` (order picked by AIC over a small grid, ``ARIMA_GRID``) and the seasonal naive forecast
  on every point before the test part (the recipe's train + validation parts, with the recipe's own gap
  filling), and forecasts the whole test part from the same origin;

and scores every forecast with the task's own metric code (:func:`rnnkit.tasks.forecasting.error_sums`):
MAPE and sMAPE in percent, and MASE scaled by the in-sample seasonal naive MAE of the recipe's training part;
points that were gaps in the data are not scored. It prints one table (with the seconds each method took to
fit and forecast) and the machine; ``--write`` puts the table into ``docs/results.md`` (section
"Forecasting (issue #6)"), ``--markdown`` prints that section.

Run: ``OMP_NUM_THREADS=1 python benchmarks/forecasting.py`` (needs the ``peers`` extra:
``pip install -e ".[peers]"``); ``--quick`` is a smoke run (2 epochs, ARIMA grid of one order).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, replace_results_section  # noqa: E402
from rnnkit.tasks.forecasting import Forecasting, _errors, error_sums, seasonal_naive  # noqa: E402
from rnnkit.tasks.runner import resolve_config, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["air-passengers", "co2", "sunspots"]
#: ARIMA candidates per dataset: (p values, d, q values, seasonal order or None); the lowest AIC is kept
ARIMA_GRID = {
    "air-passengers": ([0, 1, 2], 1, [0, 1, 2], (0, 1, 1, 12)),
    "co2": ([0, 1], 1, [1], (0, 1, 1, 52)),  # each fit with a 52-week season takes minutes
    "sunspots": ([1, 2, 3, 4], 0, [0, 1, 2], None),
}
SECTION = "## Forecasting (issue #6)"


def scores(task: Forecasting, forecast: np.ndarray) -> dict[str, float]:
    """MAPE, sMAPE, MASE of a forecast of the whole test part, by the task's own metric code."""
    lo, hi = task.bounds["test"]
    y = torch.as_tensor(task.raw[lo:hi])
    base = torch.as_tensor(seasonal_naive(task.raw, lo, hi - lo, task.config.data.season))
    sums = error_sums(torch.as_tensor(forecast), y, torch.as_tensor(task.observed[lo:hi]), base)
    m = _errors(sums, "", task.mase_scale)
    return {"mape": m["mape"], "smape": m["smape"], "mase": m["mase"]}


def fit_arima(y: np.ndarray, grid, steps: int, quick: bool) -> tuple[np.ndarray, str]:
    from statsmodels.tsa.arima.model import ARIMA

    ps, d, qs, seasonal = grid
    candidates = [(ps[0], d, qs[0])] if quick else [(p, d, q) for p, q in itertools.product(ps, qs)]
    best = None
    for order in candidates:
        try:
            kw = {"seasonal_order": seasonal} if seasonal else {}
            if d == 0:
                kw["trend"] = "c"
            fit = ARIMA(y, order=order, **kw).fit()
        except (ValueError, np.linalg.LinAlgError):
            continue
        if best is None or fit.aic < best[0].aic:
            best = (fit, order)
    if best is None:
        raise RuntimeError("no ARIMA order could be fitted")
    fit, order = best
    name = f"statsmodels ARIMA{order}" + (f"x{seasonal}" if seasonal else "") + " (order by AIC)"
    return np.asarray(fit.forecast(steps)), name


def run_peers(task: Forecasting, name: str, quick: bool) -> list[tuple[str, dict[str, float], float]]:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    lo, hi = task.bounds["test"]
    y, steps, m = task.raw[:lo], hi - lo, task.config.data.season
    rows = []

    def timed(label, fn):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = fn()
            except (ValueError, np.linalg.LinAlgError, RuntimeError) as e:
                rows.append((f"{label}: not applicable ({str(e).splitlines()[0][:60]})", {}, time.perf_counter() - t0))
                return
        forecast, label = out if isinstance(out, tuple) else (out, label)
        rows.append((label, scores(task, forecast), time.perf_counter() - t0))

    for season in ("add", "mul"):
        label = f"statsmodels ETS (additive trend, {'additive' if season == 'add' else 'multiplicative'} season)"
        if season == "mul" and not (y > 0).all():
            rows.append((f"{label}: not applicable, the series has values <= 0", {}, 0.0))
            continue
        timed(label, lambda s=season: ExponentialSmoothing(y, trend="add", seasonal=s, seasonal_periods=m).fit()
              .forecast(steps))  # fmt: skip
    timed("statsmodels ARIMA", lambda: fit_arima(y, ARIMA_GRID[name], steps, quick))
    timed(f"seasonal naive (period {m})", lambda: seasonal_naive(task.raw, lo, steps, m))
    return rows


def run_dataset(name: str, quick: bool) -> dict:
    overrides = ["train.epochs=2"] if quick else []
    with tempfile.TemporaryDirectory() as runs:
        r = train(name, overrides=overrides, runs_dir=runs, quiet=True)
    cfg = resolve_config(name, overrides=overrides)[1]
    task = Forecasting(cfg)
    with tempfile.TemporaryDirectory() as scratch:
        info = task.prepare(Path(scratch))
    m = r.metrics
    rnnkit = ("rnnkit recipe `" + name + "`", {k: m[f"origin_{k}"] for k in ("mape", "smape", "mase")}, r.seconds)
    return {"name": name, "info": info, "config": cfg, "rows": [rnnkit, *run_peers(task, name, quick)]}


def table(results: list[dict]) -> list[str]:
    lines = ["| dataset (test span) | method | MAPE % | sMAPE % | MASE | seconds |", "|---|---|---|---|---|---|"]
    for res in results:
        first, last = res["info"]["time_range"]["test"]
        span = f"{res['name']} ({first}..{last}, {res['info']['sizes']['test']} points)"
        for label, s, secs in res["rows"]:
            if not s:
                lines.append(f"| {span} | {label} | — | — | — | {secs:.1f} |")
                continue
            lines.append(f"| {span} | {label} | {s['mape']:.2f} | {s['smape']:.2f} | {s['mase']:.3f} | {secs:.1f} |")
    return lines


def section(results: list[dict], command: str) -> str:
    recipes = "; ".join(
        f"`{r['name']}`: {r['config'].model.cell.upper()} {r['config'].model.hidden_size}, {r['config'].model.mode}, "
        f"window {r['config'].data.window}, horizon {r['config'].model.horizon}, transform {r['config'].data.transform}"
        f", difference {r['config'].data.difference}, ensemble {r['config'].model.ensemble}, sizes {r['info']['sizes']}"
        for r in results
    )
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` ({dt.date.today()}). Machine: {machine()}; shared with other jobs while",
            "measuring, so the seconds are upper bounds. Every method forecasts the whole test part from its start",
            "(rnnkit: the `origin_*` test metrics, blocks of `horizon` fed back); the peers fit every point before",
            "the test part, rnnkit trains on the train part and picks its epoch on the validation part just before",
            "the test part. MASE is scaled by the in-sample seasonal naive MAE of the recipe's train part; MAPE",
            f"skips zero actuals (sunspots). Recipes: {recipes}.",
            "",
            *table(results),
            "",
        ]
    )


def write_section(text: str, path: Path | None = None) -> None:
    replace_results_section(text, "Forecasting (issue #6)", path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=DATASETS)
    p.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, one ARIMA order")
    p.add_argument("--write", action="store_true", help="write the section into docs/results.md")
    p.add_argument("--markdown", action="store_true", help="print the docs/results.md section")
    args = p.parse_args(argv)
    logging.getLogger("rnnkit").setLevel(logging.WARNING)
    print(f"# benchmarks/forecasting.py — {dt.date.today()}")
    print(f"machine: {machine()}")
    results = []
    for name in args.datasets:
        res = run_dataset(name, args.quick)
        results.append(res)
        for label, s, secs in res["rows"]:
            metrics = " ".join(f"{k} {v:.3f}" for k, v in s.items()) if s else "—"
            print(f"{name}: {label}: {metrics} ({secs:.1f} s)", flush=True)
    print()
    print("\n".join(table(results)))
    command = "OMP_NUM_THREADS=1 python benchmarks/forecasting.py" + (
        f" --datasets {' '.join(args.datasets)}" if args.datasets != DATASETS else ""
    )
    if args.markdown:
        print()
        print(section(results, command))
    if args.write:
        write_section(section(results, command))
        print("wrote docs/results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
