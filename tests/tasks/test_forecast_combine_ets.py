"""``model.combine: ets``: the panel forecasting task mixed with each series' ETS forecast (statsmodels'
``ETSModel`` of lowest AIC). :func:`rnnkit.models.statistical.ets` is checked against a brute force over
statsmodels directly; the task's combination against the run's own network and that brute force. The weight's
choice on validation is the same code as Theta's (tests/tasks/test_forecast_combine.py)."""

from __future__ import annotations

import json
import math
import sys
import warnings

import numpy as np
import pytest
from test_forecast_combine import SMALL, H, M, network_forecasts, panel, train, write_long

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.metrics import forecast as fm
from rnnkit.models.statistical import ets, naive2, statistical_forecasts

pytest.importorskip("statsmodels")


def brute_force_ets(y, period, horizon):
    """Every ETS configuration statsmodels can fit, written out here: error A/M x trend N/A/Ad x season N/A/M,
    without A error with M season, M parts only for positive data, a season only with two full periods; the
    lowest AIC's forecast and name."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    best = (math.inf, None, None)
    for error in ("add", "mul"):
        for trend, damped, t in ((None, False, "N"), ("add", False, "A"), ("add", True, "Ad")):
            for season, s in ((None, "N"), ("add", "A"), ("mul", "M")):
                if error == "add" and season == "mul":
                    continue
                if season and not (period > 1 and len(y) >= 2 * period):
                    continue
                if "mul" in (error, season) and not (y > 0).all():
                    continue
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    try:
                        fit = ETSModel(y, error=error, trend=trend, damped_trend=damped, seasonal=season,
                                       seasonal_periods=period if season else None).fit(disp=False)  # fmt: skip
                    except ValueError:
                        continue
                    forecast = np.asarray(fit.forecast(horizon))
                if np.isfinite(fit.aic) and np.isfinite(forecast).all() and fit.aic < best[0]:
                    best = (fit.aic, forecast, f"{'A' if error == 'add' else 'M'},{t},{s}")
    return best[1], best[2]


@pytest.mark.parametrize(
    "values, period",
    [
        (panel()["s2"], M),  # seasonal, positive: every configuration is a candidate
        (panel()["s4"][:7], M),  # shorter than two periods: no season
        (np.sin(np.arange(30.0)) + 0.05 * np.arange(30.0), 6),  # values <= 0: additive only
    ],
)
def test_ets_is_statsmodels_lowest_aic(values, period):
    y = np.asarray(values, dtype=np.float64)
    expected, name = brute_force_ets(y, period, H)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        forecast, got = ets(y, period, H)
    assert got == name
    np.testing.assert_allclose(forecast, expected, rtol=1e-10)
    if len(y) < 2 * period:
        assert got.endswith(",N")
    if not (y > 0).all():
        assert "M" not in got


def test_a_series_no_ets_fits_gets_naive2(monkeypatch):
    from statsmodels.tsa.exponential_smoothing import ets as sm_ets

    def refuse(*args, **kwargs):
        raise ValueError("cannot fit")

    monkeypatch.setattr(sm_ets, "ETSModel", refuse)
    y = panel()["s1"]
    f, fell_back = statistical_forecasts("ets", [y], M, H)
    assert fell_back.tolist() == [True]
    np.testing.assert_allclose(f[0], naive2(y, H, M))
    with pytest.raises(ValueError, match="no ETS configuration could be fitted"):
        ets(y, M, H)


def test_an_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown method 'arima': expected one of theta, ets"):
        statistical_forecasts("arima", [np.arange(1.0, 20.0)], M, H)


def test_without_statsmodels_ets_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.exponential_smoothing.ets", None)  # import fails
    with pytest.raises(RnnkitError, match=r"model.combine=ets needs statsmodels: pip install 'rnnkit\[forecast\]'"):
        statistical_forecasts("ets", [np.arange(1.0, 20.0)], M, H)
    data = write_long(tmp_path / "data.csv", panel())
    argv = ["train", "forecasting", "--data", str(data), "--set", *SMALL, "model.combine=ets"]
    assert main([*argv, "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.combine=ets needs statsmodels" in err and "\n" not in err and "Traceback" not in err


def test_an_ets_combination_everywhere(tmp_path, capsys):
    """A given weight: validation and test metrics, predictions.jsonl, predict by name and the export
    description are all ``w * network + (1 - w) * ETS`` with ETS fitted on the history before the origin."""
    series = panel(seed=4)
    data = write_long(tmp_path / "data.csv", series)
    run = train(tmp_path, data, "model.combine=ets", "model.combine_weight=0.4")
    meta = json.loads((run / "meta.json").read_text())
    cal = meta["calibration"]
    assert set(cal) == {"combine_weight", "validation_smape_network", "validation_smape_ets",
                        "validation_smape_combined"}  # fmt: skip
    assert meta["task_state"]["combine_weight"] == cal["combine_weight"] == 0.4

    def ets_of(y):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return brute_force_ets(np.asarray(y, np.float64), M, H)[0]

    # validation: from each training part less its last H points
    net_val = network_forecasts(run, write_long(tmp_path / "val.csv", series, cut=2 * H))
    val = np.mean([fm.smape(y[-2 * H : -H], 0.4 * net_val[s][:, 1] + 0.6 * ets_of(y[: -2 * H]))
                   for s, y in series.items()])  # fmt: skip
    assert cal["validation_smape_combined"] == pytest.approx(val, rel=1e-5)
    # test: predictions.jsonl from the whole training part, and its metrics
    net = network_forecasts(run, write_long(tmp_path / "train_parts.csv", series, cut=H))
    rows = read_jsonl(run / "predictions.jsonl")
    for r in rows:
        expected = 0.4 * net[r["id"]][:, 1] + 0.6 * ets_of(series[r["id"]][:-H])
        np.testing.assert_allclose(r["forecast"], expected, rtol=1e-5)
    test_smape = np.mean([fm.smape(series[r["id"]][-H:], r["forecast"]) for r in rows])
    assert meta["metrics"]["test"]["smape"] == pytest.approx(test_smape, rel=1e-4)
    # predict by name: from the end of the whole series
    from rnnkit.tasks import runner

    (by_name,) = runner.predict(run, ["s2"])
    whole = network_forecasts(run, write_long(tmp_path / "whole.csv", series))
    np.testing.assert_allclose(by_name["forecast"], 0.4 * whole["s2"][:, 1] + 0.6 * ets_of(series["s2"]), rtol=1e-5)
    # the export description names the method, the weight and the period
    pytest.importorskip("onnxruntime")
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    desc = json.loads((tmp_path / "export" / "model.json").read_text())
    assert desc["combine"]["method"] == "ets" and desc["combine"]["weight"] == pytest.approx(0.4)
    assert desc["combine"]["period"] == M and "(1 - w) * ETS(history, period)" in desc["combine"]["formula"]
    assert "ETSModel" in desc["combine"]["formula"] and "combine" in desc["usage"]


@pytest.mark.parametrize("method", ["theta", "ets"])
def test_fits_in_worker_processes_equal_the_fits_in_this_one(method):
    """``jobs=2`` (forced on a few histories) gives the very same forecasts and fallbacks as one process."""
    series = list(panel(seed=7).values()) + [np.array([3.0, 5.0, 4.0])]  # the last: too short for either
    one = statistical_forecasts(method, series, M, H, jobs=1)
    two = statistical_forecasts(method, series, M, H, jobs=2, parallel_from=1)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
