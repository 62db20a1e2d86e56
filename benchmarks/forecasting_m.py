"""M3 / Tourism (/ M1): the statistical benchmarks of the M competitions, and rnnkit's forecasts beside them.

For each dataset and subset (default: M3 yearly, quarterly, monthly and other, Tourism monthly and quarterly;
the series come from :func:`rnnkit.data.competitions.load_competition`, the official train/test split) it fits,
in the same run and per series on the training part only:

* **Naive1** (the last value), **seasonal naive** (the last period repeated; Naive1 for period 1), and
  **Naive2**: Naive1 on data deseasonalised by classical multiplicative decomposition when M4's 90%
  autocorrelation test at lag ``m`` says seasonal (:func:`rnnkit.metrics.forecast.deseasonalise`);
* **SES**, **Holt** and **damped Holt** (statsmodels ``ExponentialSmoothing``, parameters and initial states
  estimated) on the same deseasonalised data, re-seasonalised, and **Comb**, their mean -- as in M4;
* **Theta**: statsmodels ``ThetaModel`` with ``period`` = the series' period and its defaults (its own
  seasonality test and decomposition);
* **ETS**: statsmodels ``ETSModel`` over error {A, M} x trend {N, A, Ad} x season {N, A, M} (no additive error
  with multiplicative season; multiplicative parts only for positive data; season only for period > 1 and
  at least two full periods), the lowest AIC (``--ic aicc`` for AICc) kept; a configuration that fails or
  forecasts non-finite values is skipped, and a series where all fail falls back to Naive2 (counted).

It scores each forecast on the official test part: sMAPE (M4 definition) and MAPE in percent, MASE (scaled by
the in-sample seasonal naive MAE, period ``m``), each averaged over the series, and OWA against Naive2 (M4), plus
the share of series whose sMAPE is below ETS's. Given ``--rnnkit predictions.jsonl`` (one line per series:
``{"id", "forecast": [h values], "quantiles": {"0.1": [...], "0.5": [...], "0.9": [...]}}``, as rnnkit's
forecasting runs write it) it scores rnnkit the same way, and the 80% interval (quantiles 0.1 and 0.9) by its
coverage and MSIS (``alpha = 0.2``). Several ``--rnnkit`` files (seeds) give mean +- sd over the files. A file
that forecasts only some series of a subset is an error; one that forecasts none of them is not used there.

Prints one markdown table (and the published figures beside the same-run ones) and the machine; ``--json OUT``
writes every number. Run the full thing with ``OMP_NUM_THREADS=1 python benchmarks/forecasting_m.py --jobs 1``
(``--limit N`` takes the first N series of each subset for a quick run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import logging
import math
import multiprocessing
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from rnnkit.data.competitions import SUBSETS, CompetitionSeries, load_competition  # noqa: E402
from rnnkit.errors import RnnkitError  # noqa: E402
from rnnkit.metrics import forecast as fm  # noqa: E402
from rnnkit.models.statistical import ets, theta  # noqa: E402

DEFAULT = [("m3", s) for s in SUBSETS["m3"]] + [("tourism", "monthly"), ("tourism", "quarterly")]
METHODS = ["Naive1", "Seasonal naive", "Naive2", "SES", "Holt", "Damped", "Comb", "Theta", "ETS"]
#: published sMAPE (%) of the same methods on the same data: (dataset, subset, method) -> (value, source)
PUBLISHED = {
    ("m3", "all", "Theta"): (13.01, "M3 competition, Makridakis & Hibon (2000)"),
    ("m3", "yearly", "Theta"): (16.90, "M3 competition, Makridakis & Hibon (2000)"),
    ("m3", "quarterly", "Theta"): (8.96, "M3 competition, Makridakis & Hibon (2000)"),
    ("m3", "monthly", "Theta"): (13.85, "M3 competition, Makridakis & Hibon (2000)"),
    ("m3", "other", "Theta"): (4.41, "M3 competition, Makridakis & Hibon (2000)"),
}
INTERVAL = ("0.1", "0.9")  # the 80% interval rnnkit's quantiles give
# ------------------------------------------------------------------------------------------ methods


def naive1(x: np.ndarray, h: int) -> np.ndarray:
    return np.full(h, x[-1])


def seasonal_naive(x: np.ndarray, m: int, h: int) -> np.ndarray:
    """The last ``m`` values repeated (Naive1 when ``m == 1`` or the history is shorter than ``m``)."""
    if m <= 1 or x.size < m:
        return naive1(x, h)
    return x[x.size - m + np.arange(h) % m]


def _smoothing(y: np.ndarray, h: int, trend: str | None, damped: bool) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    fit = ExponentialSmoothing(y, trend=trend, damped_trend=damped, initialization_method="estimated").fit()
    out = np.asarray(fit.forecast(h), dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError("non-finite forecast")
    return out


def forecast_series(series: CompetitionSeries, ic: str = "aic") -> dict:
    """Every method's forecast of one series from its training part: ``{"id", "forecasts": {method: (h,)},
    "seconds": {method: s}, "ets": "M,Ad,M" | None, "fallbacks": [methods that fell back to Naive2]}``."""
    x, m, h = series.train, series.period, series.horizon
    forecasts: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    fallbacks: list[str] = []
    ets_name = None

    t0 = time.perf_counter()
    forecasts["Naive1"] = naive1(x, h)
    forecasts["Seasonal naive"] = seasonal_naive(x, m, h)
    des, _ = fm.deseasonalise(x, m)
    future = fm.future_indices(x, m, h)
    forecasts["Naive2"] = naive1(des, h) * future
    seconds["Naive1"] = seconds["Seasonal naive"] = seconds["Naive2"] = time.perf_counter() - t0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and ill-conditioning warnings from statsmodels
        np.seterr(all="ignore")
        for name, trend, damped in (("SES", None, False), ("Holt", "add", False), ("Damped", "add", True)):
            t0 = time.perf_counter()
            try:
                forecasts[name] = _smoothing(des, h, trend, damped) * future
            except (ValueError, np.linalg.LinAlgError):
                forecasts[name] = forecasts["Naive2"]
                fallbacks.append(name)
            seconds[name] = time.perf_counter() - t0
        forecasts["Comb"] = (forecasts["SES"] + forecasts["Holt"] + forecasts["Damped"]) / 3
        seconds["Comb"] = seconds["SES"] + seconds["Holt"] + seconds["Damped"]
        t0 = time.perf_counter()
        try:
            forecasts["Theta"] = theta(x, m, h)
        except (ValueError, np.linalg.LinAlgError):
            forecasts["Theta"] = forecasts["Naive2"]
            fallbacks.append("Theta")
        seconds["Theta"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            forecasts["ETS"], ets_name = ets(x, m, h, ic)
        except ValueError:
            forecasts["ETS"] = forecasts["Naive2"]
            fallbacks.append("ETS")
        seconds["ETS"] = time.perf_counter() - t0
    return {"id": series.id, "forecasts": forecasts, "seconds": seconds, "ets": ets_name, "fallbacks": fallbacks}


def _fit_one(args: tuple[CompetitionSeries, str]) -> dict:
    return forecast_series(*args)


def fit_all(series: list[CompetitionSeries], jobs: int, ic: str) -> list[dict]:
    """:func:`forecast_series` of every series, in order, over ``jobs`` worker processes."""
    work = [(s, ic) for s in series]
    if jobs <= 1:
        return [_fit_one(w) for w in work]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(jobs) as pool:
        return pool.map(_fit_one, work, chunksize=max(1, len(work) // (jobs * 8)))


# ------------------------------------------------------------------------------------------ rnnkit


def _values(v, field: str, *, name: str, at: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.empty(0)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise RnnkitError(f"series {name!r}: {field} is not a list of finite numbers", where=at)
    return a


def read_predictions(path: Path) -> dict[str, dict]:
    """An rnnkit ``predictions.jsonl`` -> ``{id: {"forecast": (h,), "quantiles": {"0.1": (h,), ...}}}``;
    a malformed line is a one-line error naming file and line."""
    out: dict[str, dict] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RnnkitError(f"cannot read predictions: {e}", where=str(path)) from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        at = f"{path}:{n}"
        try:
            row = json.loads(line)
        except ValueError:
            raise RnnkitError("not a JSON line", where=at) from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise RnnkitError('expected a JSON object with a string "id"', where=at)
        if row["id"] in out:
            raise RnnkitError(f"series {row['id']!r} appears twice", where=at)
        values = functools.partial(_values, name=row["id"], at=at)
        quantiles = row.get("quantiles") or {}
        if not isinstance(quantiles, dict):
            raise RnnkitError(f"series {row['id']!r}: quantiles is not an object", where=at)
        q = {}
        for level, v in quantiles.items():
            try:
                key = f"{float(level):g}"
            except ValueError:
                raise RnnkitError(f"series {row['id']!r}: quantile level {level!r} is not a number", where=at) from None
            q[key] = values(v, f"quantile {level}")
        out[row["id"]] = {"forecast": values(row.get("forecast"), "forecast"), "quantiles": q, "where": at}
    if not out:
        raise RnnkitError("no predictions", where=str(path))
    return out


def _matching(predictions: dict[str, dict], series: list[CompetitionSeries], path: Path, label: str):
    """The predictions of ``series`` in order, or None when the file forecasts none of them."""
    have = [s for s in series if s.id in predictions]
    if not have:
        return None
    if len(have) != len(series):
        missing = [s.id for s in series if s.id not in predictions]
        raise RnnkitError(
            f"forecasts for {len(have)} of the {len(series)} {label} series; missing {', '.join(missing[:3])}"
            + (" ..." if len(missing) > 3 else ""),
            where=str(path),
        )
    rows = []
    for s in series:
        p = predictions[s.id]
        if p["forecast"].size != s.horizon:
            raise RnnkitError(
                f"series {s.id!r}: {p['forecast'].size} forecast points, its horizon is {s.horizon}", where=p["where"]
            )
        for level, v in p["quantiles"].items():
            if v.size != s.horizon:
                raise RnnkitError(f"series {s.id!r}: quantile {level} has {v.size} points, not {s.horizon}",
                                  where=p["where"])  # fmt: skip
        rows.append(p)
    return rows


# ------------------------------------------------------------------------------------------ scoring


def score(series: list[CompetitionSeries], forecasts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-series sMAPE, MAPE, MASE ``(N,)`` each."""
    return {
        "smape": np.array([fm.smape(s.test, f) for s, f in zip(series, forecasts, strict=True)]),
        "mape": np.array([fm.mape(s.test, f) for s, f in zip(series, forecasts, strict=True)]),
        "mase": np.array([fm.mase(s.test, f, s.train, s.period) for s, f in zip(series, forecasts, strict=True)]),
    }


def summary(per: dict[str, np.ndarray], naive2: dict[str, np.ndarray], ets_smape: np.ndarray) -> dict[str, float]:
    out = {k: fm.mean_ignoring_nan(v) for k, v in per.items()}
    n2 = {k: fm.mean_ignoring_nan(v) for k, v in naive2.items()}
    out["owa"] = fm.owa(out["smape"], out["mase"], n2["smape"], n2["mase"])
    out["beats_ets"] = float(np.mean(per["smape"] < ets_smape))
    return out


def evaluate(
    label: tuple[str, str], series: list[CompetitionSeries], fits: list[dict], predictions: list[tuple[Path, dict]]
) -> dict:
    """The numbers of one dataset/subset: ``{"dataset", "subset", "series", "methods": {method: summary},
    "rnnkit": {"files": [paths], metric: [one value per file]} | None, "ets_models": {"A,N,N": count, ...},
    "fallbacks": {method: series that fell back to Naive2}}``."""
    per = {m: score(series, [f["forecasts"][m] for f in fits]) for m in METHODS}
    ets_smape = per["ETS"]["smape"]
    methods = {m: summary(per[m], per["Naive2"], ets_smape) for m in METHODS}
    weights = np.array([s.horizon for s in series], dtype=np.float64)
    for m in METHODS:
        methods[m]["seconds"] = float(sum(f["seconds"][m] for f in fits))
        # the M3 paper's "all": the mean over every forecast point, so a series weighs its horizon
        methods[m]["smape_points"] = float(np.average(per[m]["smape"], weights=weights))
    rnnkit: dict | None = None
    name = f"{label[0]} {label[1]}"
    for path, preds in predictions:
        rows = _matching(preds, series, path, name)
        if rows is None:
            continue
        s = summary(score(series, [r["forecast"] for r in rows]), per["Naive2"], ets_smape)
        if all(all(q in r["quantiles"] for q in INTERVAL) for r in rows):
            lo, hi = INTERVAL
            s["coverage80"] = float(
                np.mean(
                    [
                        fm.coverage(x.test, r["quantiles"][lo], r["quantiles"][hi])
                        for x, r in zip(series, rows, strict=True)
                    ]
                )
            )
            s["msis80"] = fm.mean_ignoring_nan(
                fm.msis(x.test, r["quantiles"][lo], r["quantiles"][hi], x.train, x.period, alpha=0.2)
                for x, r in zip(series, rows, strict=True)
            )
        rnnkit = rnnkit or {"files": []}
        rnnkit["files"].append(str(path))
        for k, v in s.items():
            rnnkit.setdefault(k, []).append(v)
    ets_models: dict[str, int] = {}
    for f in fits:
        ets_models[f["ets"] or "fallback"] = ets_models.get(f["ets"] or "fallback", 0) + 1
    fallbacks = {m: sum(m in f["fallbacks"] for f in fits) for m in METHODS if any(m in f["fallbacks"] for f in fits)}
    return {
        "dataset": label[0],
        "subset": label[1],
        "series": len(series),
        "horizon": sorted({s.horizon for s in series}),
        "period": sorted({s.period for s in series}),
        "methods": methods,
        "rnnkit": rnnkit,
        "ets_models": dict(sorted(ets_models.items(), key=lambda kv: -kv[1])),
        "fallbacks": fallbacks,
        "_per": per,
    }


def overall(dataset: str, parts: list[dict], fits_by: dict, series_by: dict, predictions: list) -> dict:
    """All subsets of ``dataset`` together (M3 "all": every series, each scored as in its subset); rnnkit's
    files count there when they forecast every series of the dataset."""
    series = [s for p in parts for s in series_by[(dataset, p["subset"])]]
    fits = [f for p in parts for f in fits_by[(dataset, p["subset"])]]
    complete = [(path, preds) for path, preds in predictions if all(s.id in preds for s in series)]
    return evaluate((dataset, "all"), series, fits, complete)


# ------------------------------------------------------------------------------------------ report


def _fmt(v, digits: int = 2) -> str:
    if isinstance(v, list):
        vals = [x for x in v if isinstance(x, float) and math.isfinite(x)]
        if not vals:
            return "—"
        if len(vals) == 1:
            return f"{vals[0]:.{digits}f}"
        return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"
    return "—" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def table(results: list[dict]) -> list[str]:
    lines = [
        "| dataset | series (h) | method | sMAPE % | MAPE % | MASE | OWA | sMAPE < ETS | 80% coverage | MSIS 80% "
        "| fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        where = f"{r['dataset']} {r['subset']}"
        size = f"{r['series']} ({'/'.join(map(str, r['horizon']))})"
        for m in METHODS:
            s = r["methods"][m]
            beats = "—" if m == "ETS" else f"{100 * s['beats_ets']:.1f}%"
            lines.append(
                f"| {where} | {size} | {m} | {_fmt(s['smape'])} | {_fmt(s['mape'])} | {_fmt(s['mase'], 3)} "
                f"| {_fmt(s['owa'], 3)} | {beats} | — | — | {s['seconds']:.0f} |"
            )
        k = r["rnnkit"]
        if k:
            n = len(k["files"])
            cov = _fmt([100 * c for c in k["coverage80"]], 1) + "%" if "coverage80" in k else "—"
            lines.append(
                f"| {where} | {size} | **rnnkit** ({n} run{'s' if n > 1 else ''}) | {_fmt(k['smape'])} "
                f"| {_fmt(k['mape'])} | {_fmt(k['mase'], 3)} | {_fmt(k['owa'], 3)} "
                f"| {_fmt([100 * b for b in k['beats_ets']], 1)}% | {cov} | {_fmt(k.get('msis80', []), 2)} | — |"
            )
    return lines


def published_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        for m in METHODS:
            ref = PUBLISHED.get((r["dataset"], r["subset"], m))
            if ref:
                value, source = ref
                mine = r["methods"][m]["smape_points" if r["subset"] == "all" else "smape"]
                how = " (mean over all forecast points, as published)" if r["subset"] == "all" else ""
                lines.append(
                    f"- {r['dataset']} {r['subset']} {m}: sMAPE {mine:.2f} here{how}, {value:.2f} published ({source})"
                )
    return lines


def public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def write_json(args, results: list[dict], command: str, seconds: float, complete: bool) -> None:
    """Every number of the run (``complete`` false while subsets are still to come)."""
    payload = {
        "command": command,
        "date": str(dt.date.today()),
        "machine": machine(),
        "jobs": args.jobs,
        "limit": args.limit,
        "ic": args.ic,
        "seconds": seconds,
        "complete": complete,
        "published": {f"{d} {s} {m}": {"smape": v, "source": src} for (d, s, m), (v, src) in PUBLISHED.items()},
        "results": [public(r) for r in results],
    }
    args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(SUBSETS), help="one dataset (default: M3 + Tourism monthly/quarterly)")
    p.add_argument("--subset", nargs="*", help="subsets of --dataset (default: all of its subsets)")
    p.add_argument("--rnnkit", nargs="*", type=Path, default=[], help="rnnkit predictions.jsonl files (seeds)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes for the per-series fits")
    p.add_argument("--limit", type=int, help="only the first N series of each subset (a quick run)")
    p.add_argument("--ic", choices=("aic", "aicc", "bic"), default="aic", help="ETS model choice")
    p.add_argument("--json", type=Path, help="write every number to this JSON file")
    args = p.parse_args(argv)
    logging.getLogger("rnnkit").setLevel(logging.WARNING)
    if args.subset and not args.dataset:
        p.error("--subset needs --dataset")
    todo = [(args.dataset, s) for s in (args.subset or SUBSETS[args.dataset])] if args.dataset else DEFAULT
    try:
        predictions = [(path, read_predictions(path)) for path in args.rnnkit]
        series_by = {}
        for dataset, subset in todo:
            series = load_competition(dataset, subset)
            series_by[(dataset, subset.lower())] = series[: args.limit] if args.limit else series
        for (dataset, subset), series in series_by.items():  # check the files before the long fits
            for path, preds in predictions:
                _matching(preds, series, path, f"{dataset} {subset}")
    except RnnkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"# benchmarks/forecasting_m.py — {dt.date.today()}")
    print(f"machine: {machine()}; {args.jobs} worker process(es)")
    results, fits_by = [], {}
    started = time.perf_counter()
    command = " ".join(
        ["OMP_NUM_THREADS=1 python benchmarks/forecasting_m.py", *(argv if argv is not None else sys.argv[1:])]
    )
    for (dataset, subset), series in series_by.items():
        t0 = time.perf_counter()
        fits_by[(dataset, subset)] = fit_all(series, args.jobs, args.ic)
        try:
            results.append(evaluate((dataset, subset), series, fits_by[(dataset, subset)], predictions))
        except RnnkitError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        s = results[-1]["methods"]
        print(
            f"{dataset} {subset}: {len(series)} series in {time.perf_counter() - t0:.0f} s; sMAPE Theta "
            f"{s['Theta']['smape']:.2f}, ETS {s['ETS']['smape']:.2f}, Naive2 {s['Naive2']['smape']:.2f}",
            flush=True,
        )
        print("\n".join(table(results[-1:])[2:]), flush=True)
        if args.json:  # the subsets done so far, in case a long run is stopped
            write_json(args, results, command, time.perf_counter() - started, complete=False)
    for dataset in dict.fromkeys(d for d, _ in series_by):
        parts = [r for r in results if r["dataset"] == dataset]
        if {r["subset"] for r in parts} == set(SUBSETS[dataset]):
            results.append(overall(dataset, parts, fits_by, series_by, predictions))
    for dataset, subset in series_by:
        if (
            args.limit is None
            and predictions
            and not any(r["rnnkit"] for r in results if (r["dataset"], r["subset"]) == (dataset, subset))
        ):
            print(f"note: no --rnnkit file forecasts {dataset} {subset}")
    print()
    print("\n".join(table(results)))
    ref = published_lines(results)
    if ref and args.limit is None:
        print()
        print("\n".join(ref))
    seconds = time.perf_counter() - started
    print(f"\n{seconds:.0f} s in all; command: {command}")
    if args.json:
        write_json(args, results, command, seconds, complete=True)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
