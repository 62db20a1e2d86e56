"""The ``forecasting`` task: CSV reader errors, missing values, the split in time order without leakage,
metrics, and train -> predict -> evaluate on the command line (a noise-free seasonal series)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.tasks.forecasting import (
    Forecasting,
    difference,
    error_sums,
    fill_missing,
    forecast_metrics,
    read_series,
    rolled_forecast,
    seasonal_naive,
    split_sizes,
    undifference,
    window_origins,
)
from rnnkit.tasks.runner import resolve_config


def seasonal(n):
    return [10 + 3 * math.sin(2 * math.pi * i / 12) + 0.02 * i for i in range(n)]


def month(i):
    return f"{1950 + i // 12}-{i % 12 + 1:02d}"


def write_csv(tmp_path, rows, header="month,value", name="series.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def series_csv(tmp_path, n=160, name="series.csv"):
    return write_csv(tmp_path, [f"{month(i)},{v:.6f}" for i, v in enumerate(seasonal(n))], name=name)


def make_task(path, *overrides):
    _, config = resolve_config("forecasting", overrides=list(overrides))
    return Forecasting(config, path)


# -- reader -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        (["1950-01,1", "1950-02,2,3"], 3, "expected 2 fields like the header, got 3"),
        (["1950-01,1", "1950-02,abc"], 3, "cannot read 'abc' as a number"),
        (["1950-01,1", "1950-02,inf"], 3, "'inf' is not a finite number"),
        (["1950-01,1", "1950-03,2", "1950-02,3"], 4, "comes before '1950-03' on line 3: rows must be in increasing"),
        (["1950-01,1", "1950-02,2", "1950-02,3"], 4, "duplicate time '1950-02' (also on line 3)"),
        (["1950-01,1", "someday,2"], 3, "neither a number nor an ISO date"),
        (["1950-01,1", "7,2"], 3, "mixes numbers and dates"),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path, rows, line, message):
    path = write_csv(tmp_path, rows)
    with pytest.raises(RnnkitError) as err:
        read_series(path, None, None, [])
    assert str(err.value).startswith(f"{path}:{line}: ") and message in str(err.value)


def test_empty_files_headers_and_columns(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RnnkitError, match="empty file"):
        read_series(empty, None, None, [])
    with pytest.raises(RnnkitError, match="no data rows"):
        read_series(write_csv(tmp_path, []), None, None, [])
    with pytest.raises(RnnkitError, match=r":1: no value column 'sales'"):
        read_series(write_csv(tmp_path, ["1950-01,1"]), None, "sales", [])
    with pytest.raises(RnnkitError, match="need a time and a value column"):
        read_series(write_csv(tmp_path, ["1"], header="value"), None, None, [])


def test_times_values_and_covariates_are_read(tmp_path):
    path = write_csv(tmp_path, ["1,2.5,,0", "2,NaN,7,1", "3.5,4,8,1"], header="t,y,price,holiday")
    s = read_series(path, "t", "y", ["holiday", "price"])
    assert s.times == [1.0, 2.0, 3.5] and s.labels == ["1", "2", "3.5"] and s.lines == [2, 3, 4]
    np.testing.assert_array_equal(s.values, [2.5, np.nan, 4.0])
    np.testing.assert_array_equal(s.covariates, [[0, np.nan], [1, 7], [1, 8]])
    dated = read_series(write_csv(tmp_path, ["1958-01-31 12:00,1", "1958-02-28,2"], name="d.csv"), None, None, [])
    assert [t.month for t in dated.times] == [1, 2]


def test_missing_values_are_errors_by_default(tmp_path):
    values = seasonal(80)
    rows = [f"{month(i)},{'NaN' if i == 41 else v}" for i, v in enumerate(values)]
    path = write_csv(tmp_path, rows)
    with pytest.raises(RnnkitError) as err:
        make_task(path, "model.horizon=4", "data.window=8").prepare(tmp_path)
    assert str(err.value) == f"{path}:43: missing value (set data.missing=interpolate to fill gaps)"


def test_interpolation_never_looks_into_a_later_split(tmp_path):
    rows = [f"{i},{v}" for i, v in enumerate([1, None, 3, 4, None, None, 100, None, 9])]
    s = read_series(write_csv(tmp_path, [r.replace("None", "") for r in rows], header="t,y"), None, None, [])
    filled, observed = fill_missing(s, "interpolate", [6, 9])  # train = first 6 points, then test
    # inside train: linear between 1 and 3; the gap at the end of train carries 4 forward (100 is test data)
    np.testing.assert_allclose(filled[:, 0], [1, 2, 3, 4, 4, 4, 100, 54.5, 9])
    assert observed.tolist() == [True, False, True, True, False, False, True, False, True]
    # at the very start the first value of the same part fills backwards; a part with none is an error
    early = read_series(write_csv(tmp_path, ["0,", "1,2", "2,"], header="t,y"), None, None, [])
    np.testing.assert_allclose(fill_missing(early, "interpolate", [3])[0][:, 0], [2, 2, 2])
    with pytest.raises(RnnkitError, match=r":2: no observed value"):
        fill_missing(early, "interpolate", [1, 3])


# -- split and windows ------------------------------------------------------------------------------
def test_split_sizes_and_windows():
    assert split_sizes(144, 36, 12) == (96, 12, 36)
    assert split_sizes(100, 0.1, 0.2) == (70, 20, 10)
    assert window_origins(0, 10, 3, 2) == [3, 4, 5, 6, 7, 8]
    assert window_origins(10, 14, 3, 2) == [10, 11, 12]
    y = np.arange(20.0)
    np.testing.assert_array_equal(seasonal_naive(y, 10, 5, 1), [9, 9, 9, 9, 9])
    np.testing.assert_array_equal(seasonal_naive(y, 10, 5, 3), [7, 8, 9, 7, 8])


def test_split_in_time_order_without_leakage(tmp_path):
    task = make_task(series_csv(tmp_path, 100), "data.window=12", "model.horizon=5", "data.test_size=20",
                     "data.validation_size=0.1")  # fmt: skip
    info = task.prepare(tmp_path)
    assert info["sizes"] == {"train": 70, "validation": 10, "test": 20}
    assert info["time_range"]["test"] == [month(80), month(99)]
    W, H = 12, 5
    test_targets = {t + h for t in task.origins["test"] for h in range(H)}
    assert test_targets == set(range(80, 100))  # every test point is a target of some rolling window
    val_targets = {t + h for t in task.origins["validation"] for h in range(H)}
    assert val_targets == set(range(70, 80))
    for t in task.origins["train"]:  # a training window (inputs and targets) lies before validation
        assert set(range(t - W, t + H)).isdisjoint(test_targets | val_targets)
    for t in task.origins["validation"]:  # validation inputs never reach into the test part
        assert set(range(t - W, t)).isdisjoint(test_targets)
    # the batches the trainer sees hold exactly those windows
    x = torch.cat([b["x"][..., 0] for b in task._batches("train", 0)])
    y = torch.cat([b["y"] for b in task._batches("train", 0)])
    test_values = torch.tensor(task.rows[80:, 0], dtype=torch.float32)
    assert not torch.isin(test_values, torch.cat([x.flatten(), y.flatten()])).any()
    assert len(x) == len(task.origins["train"]) == 70 - W - H + 1
    # different epochs shuffle differently, the same epoch the same way
    first = [b["y"][:, 0].tolist() for b in task._batches("train", 0)]
    assert first == [b["y"][:, 0].tolist() for b in task._batches("train", 0)]
    assert first != [b["y"][:, 0].tolist() for b in task._batches("train", 1)]
    # evaluation ends with the whole-split forecast from its origin
    *_, origin = task._batches("test", 0)
    assert origin["origin_y"].shape == (1, 20) and origin["origin_x"].shape == (1, W, 1)
    torch.testing.assert_close(origin["origin_x"][0, :, 0], torch.tensor(task.rows[68:80, 0], dtype=torch.float32))


def test_too_short_parts_are_clear_errors(tmp_path):
    path = series_csv(tmp_path, 60)
    with pytest.raises(RnnkitError, match="the test part has 6 points, fewer than model.horizon=8"):
        make_task(path, "model.horizon=8").prepare(tmp_path)
    with pytest.raises(RnnkitError, match="the training part has 40 of 60 points, too few"):
        make_task(path, "data.test_size=10", "data.validation_size=10", "data.window=36", "model.horizon=6").prepare(
            tmp_path
        )
    with pytest.raises(RnnkitError, match="validation_size: a float is a fraction"):
        resolve_config("forecasting", overrides=["data.validation_size=1.5"])


def test_metrics_from_additive_sums():
    s = {"loss_sum": 3.0, "windows": 2.0}
    for prefix in ("", "origin_"):
        s |= {f"{prefix}abs": 4.0, f"{prefix}sq": 8.0, f"{prefix}n": 4.0, f"{prefix}ape": 0.2, f"{prefix}ape_n": 4.0,
              f"{prefix}sape": 0.4, f"{prefix}base_abs": 8.0}  # fmt: skip
    m = forecast_metrics(s, mase_scale=2.0)
    assert m["loss"] == 1.5 and m["mae"] == 1.0 and m["rmse"] == pytest.approx(math.sqrt(2))
    assert m["mape"] == pytest.approx(5.0) and m["smape"] == pytest.approx(10.0)
    assert m["mase"] == 0.5 and m["baseline_mase"] == 1.0 and m["origin_mase"] == 0.5


def test_rolled_forecast_feeds_blocks_back(tmp_path):
    task = make_task(series_csv(tmp_path, 80), "data.window=8", "model.horizon=3")
    task.prepare(tmp_path)
    torch.manual_seed(0)
    model = task.build_model().eval()
    x = torch.randn(2, 8, 1)
    with torch.no_grad():
        mean, scale = rolled_forecast(model, x, torch.zeros(2, 9, 0), 7)
        first = model(x)["mean"]
        second = model(torch.cat([x, first.unsqueeze(-1)], 1)[:, -8:])["mean"]
    assert mean.shape == scale.shape == (2, 7)
    torch.testing.assert_close(mean[:, :6], torch.cat([first, second], 1))


# -- the command line -------------------------------------------------------------------------------------
def test_train_predict_evaluate_learns_a_seasonal_series(tmp_path, capsys):
    data = series_csv(tmp_path, 160)
    runs = tmp_path / "runs"
    args = ["train.epochs=10", "train.lr=0.01", "train.batch_size=16", "data.window=24", "model.horizon=6",
            "data.test_size=24", "data.validation_size=12", "data.season=12", "model.hidden_size=32"]  # fmt: skip
    assert main(["train", "forecasting", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    run = runs / "forecasting"
    assert f"run folder: {run}" in capsys.readouterr().out
    for name in ("config.yaml", "model.safetensors", "meta.json", "metrics.jsonl", "train.log", "predictions.jsonl",
                 "plots/learning_curves.png", "plots/forecast.png"):  # fmt: skip
        assert (run / name).is_file(), name
    meta = json.loads((run / "meta.json").read_text())
    test = meta["metrics"]["test"]
    assert {"loss", "mae", "rmse", "mape", "smape", "mase", "baseline_mase"} <= set(test)
    assert {"origin_mae", "origin_rmse", "origin_mape", "origin_smape", "origin_mase"} <= set(test)
    assert test["mape"] < 3 and test["origin_mape"] < 5  # percent, on values around 10..16
    assert test["mase"] < test["baseline_mase"]  # better than repeating the last season
    assert meta["dataset"]["sizes"] == {"train": 124, "validation": 12, "test": 24}

    predictions = read_jsonl(run / "predictions.jsonl")
    *rolling, whole = predictions
    assert len(rolling) == meta["dataset"]["windows"]["test"] == 24 - 6 + 1
    assert whole["whole_test_part"] and len(whole["forecast"]) == len(whole["actual"]) == 24
    assert all(lo <= f <= hi for lo, f, hi in zip(whole["lower"], whole["forecast"], whole["upper"], strict=True))
    errors = [abs(f - a) for p in rolling for f, a in zip(p["forecast"], p["actual"], strict=True)]
    assert sum(errors) / len(errors) == pytest.approx(test["mae"], rel=1e-4)

    history = series_csv(tmp_path, 40, name="history.csv")
    assert main(["predict", str(run), str(history)]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["input"] == str(history) and len(result["forecast"]) == len(result["lower"]) == 6
    truth = seasonal(46)[40:]
    assert max(abs(f - t) for f, t in zip(result["forecast"], truth, strict=True)) < 1.0

    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test, rel=1e-5)


def test_covariates_train_and_predict_with_future_rows(tmp_path, capsys):
    n = 90
    rows = [f"{month(i)},{v:.4f},{i % 12}" for i, v in enumerate(seasonal(n))]
    data = write_csv(tmp_path, rows, header="month,value,month_of_year")
    runs = tmp_path / "runs"
    args = ["train.epochs=1", "data.window=12", "model.horizon=4", "data.covariates=[month_of_year]",
            "model.hidden_size=8", "model.mode=recursive", "data.test_size=12", "data.validation_size=8",
            "model.distribution=point"]  # fmt: skip
    assert main(["train", "forecasting", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    capsys.readouterr()
    run = runs / "forecasting"
    future = write_csv(tmp_path, rows[:20] + [f"{month(i)},,{i % 12}" for i in range(20, 24)],
                       header="month,value,month_of_year", name="future.csv")  # fmt: skip
    assert main(["predict", str(run), str(future)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["forecast"]) == 4 and result["lower"] is None and result["upper"] is None  # point forecasts
    no_future = write_csv(tmp_path, rows[:20], header="month,value,month_of_year", name="nofuture.csv")
    assert main(["predict", str(run), str(no_future)]) == 2
    assert "the last 4 rows must be the future" in capsys.readouterr().err


# -- registry datasets, log transform, differencing, ensembles (issue #6) ------------------------------------
@pytest.fixture
def fake_air(monkeypatch):
    """A registry forecasting dataset of 60 positive monthly values (48 train / 12 test), and a UCR-like one."""
    from rnnkit.data import registry

    values = [100 * (1.02**i) * (1 + 0.2 * math.sin(2 * math.pi * i / 12)) for i in range(60)]
    records = [{"time": month(i), "value": round(v, 4)} for i, v in enumerate(values)]
    records[5]["value"] = None  # a gap in the training part

    def load_splits(name):
        assert name == "air-passengers"
        return {"train": records[:48], "validation": [], "test": records[48:]}

    monkeypatch.setattr(registry, "load_splits", load_splits)
    return values


def test_a_registry_dataset_gives_its_test_split_and_validation_from_train(tmp_path, fake_air):
    base = ["data.dataset=air-passengers", "data.window=12", "model.horizon=6", "data.validation_size=6"]
    task = make_task(None, *base, "data.missing=interpolate")
    info = task.prepare(tmp_path)
    assert info["source"] == "dataset air-passengers" and info["sizes"] == {"train": 42, "validation": 6, "test": 12}
    assert info["time_range"]["test"] == [month(48), month(59)] and info["missing_filled"] == 1
    np.testing.assert_allclose(task.raw[48:], [round(v, 4) for v in fake_air[48:]])
    # data.test_size overrides the registry's split
    assert make_task(None, *base, "data.test_size=18", "data.missing=interpolate").prepare(tmp_path)["sizes"] == {
        "train": 36, "validation": 6, "test": 18}  # fmt: skip
    with pytest.raises(RnnkitError, match="dataset air-passengers record 6: missing value"):
        make_task(None, *base).prepare(tmp_path)
    with pytest.raises(RnnkitError, match="has no covariate columns"):
        make_task(None, *base, "data.covariates=[x]").prepare(tmp_path)
    with pytest.raises(RnnkitError, match="'GunPoint' is a series-classification dataset, not one for forecasting"):
        make_task(None, "data.dataset=GunPoint").prepare(tmp_path)
    with pytest.raises(RnnkitError, match="no data: give --data FILE.*or set data.dataset"):
        make_task(None).prepare(tmp_path)


def test_log_transform_models_logs_and_scores_in_original_units(tmp_path):
    path = series_csv(tmp_path, 80)
    args = ("data.window=12", "model.horizon=4", "data.test_size=12", "data.validation_size=8", "data.season=12")
    plain, logged = make_task(path, *args), make_task(path, *args, "data.transform=log")
    plain.prepare(tmp_path), logged.prepare(tmp_path)
    np.testing.assert_allclose(logged.rows[:, 0], np.log(plain.rows[:, 0]))
    np.testing.assert_array_equal(logged.raw, plain.raw)
    assert logged.mase_scale == plain.mase_scale  # MASE's scale is in original units either way
    b = logged._windows(logged.origins["test"])
    torch.testing.assert_close(b["y"], torch.log(b["actual"]).float())
    # a perfect forecast in model units scores zero error in original units
    stats = error_sums(logged._to_original(b["y"], b["hist"]), b["actual"], b["observed"], b["baseline"])
    assert stats["abs"] < 1e-4 * stats["n"] and stats["base_abs"] > 0
    bad = write_csv(tmp_path, [f"{month(i)},{v - (12 if i == 30 else 0)}" for i, v in enumerate(seasonal(80))])
    with pytest.raises(RnnkitError, match=r"series.csv:32: data.transform=log needs values > 0, got -"):
        make_task(bad, *args, "data.transform=log").prepare(tmp_path)


def test_difference_and_undifference_are_inverses():
    y = np.cumsum(np.random.default_rng(0).normal(size=40)) + 50
    for lag in (0, 1, 12):
        z = difference(y, lag)
        assert (z[:lag] == 0).all()
        for origin in (lag + 5, 30):
            hist = torch.tensor(y[origin - lag : origin])[None]
            rebuilt = undifference(torch.tensor(z[origin:])[None], hist, lag)[0]
            np.testing.assert_allclose(rebuilt.numpy(), y[origin:])


def test_seasonal_differencing_windows_need_one_more_season_and_integrate_back(tmp_path):
    path = series_csv(tmp_path, 80)
    args = ("data.window=12", "model.horizon=4", "data.test_size=12", "data.validation_size=8", "data.season=12")
    task = make_task(path, *args, "data.difference=12", "data.transform=log")
    info = task.prepare(tmp_path)
    assert info["difference"] == 12 and task.origins["train"][0] == 24  # inputs from y[12] - y[0] on
    assert info["windows"]["train"] == 60 - 24 - 4 + 1
    b = task._windows(task.origins["test"])
    levels = np.log(task.raw)
    t = np.asarray(task.origins["test"])[:, None]
    expected = levels[t - 12 + np.arange(12)] - levels[t - 24 + np.arange(12)]
    np.testing.assert_allclose(b["x"][..., 0].numpy(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(task._to_original(b["y"], b["hist"]), b["actual"], rtol=1e-5, atol=1e-4)
    with pytest.raises(RnnkitError, match=r"too few for one window \(data.window=48 \+ data.difference=12"):
        make_task(path, *args, "data.difference=12", "data.window=48").prepare(tmp_path)


def test_seasonal_differencing_trains_predicts_and_evaluates(tmp_path, capsys):
    data = series_csv(tmp_path, 120)
    runs = tmp_path / "runs"
    args = ["train.epochs=3", "data.window=12", "model.horizon=6", "data.test_size=18", "data.validation_size=6",
            "data.season=12", "data.difference=12", "data.transform=log", "model.hidden_size=8",
            "model.ensemble=2"]  # fmt: skip
    assert main(["train", "forecasting", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    capsys.readouterr()
    run = runs / "forecasting"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"]["kind"] == "forecaster-ensemble" and meta["model"]["config"]["size"] == 2
    *rolling, whole = read_jsonl(run / "predictions.jsonl")
    assert whole["actual"] == pytest.approx(seasonal(120)[102:], abs=1e-5)  # original units
    assert all(lo <= f <= hi for lo, f, hi in zip(whole["lower"], whole["forecast"], whole["upper"], strict=True))
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(meta["metrics"]["test"], rel=1e-5)
    short = series_csv(tmp_path, 20, name="short.csv")
    assert main(["predict", str(run), str(short)]) == 2
    assert "need at least data.window=12 + data.difference=12 rows of history" in capsys.readouterr().err
    history = series_csv(tmp_path, 40, name="history.csv")
    assert main(["predict", str(run), str(history)]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # one season back plus a predicted change: the right order of magnitude, in original units
    assert len(result["forecast"]) == 6 and all(5 < f < 20 for f in result["forecast"])


def test_an_ensemble_averages_its_members():
    from rnnkit.models import ForecasterEnsemble

    torch.manual_seed(0)
    member = dict(encoder=dict(input_size=1, cell="gru", hidden_size=8), horizon=3, distribution="gaussian")
    ens = ForecasterEnsemble(member=member, size=3).eval()
    x, target = torch.randn(4, 10).cumsum(1), torch.randn(4, 3)
    outs = [m(x) for m in ens.members]
    out = ens(x)
    means = torch.stack([o["mean"] for o in outs])
    torch.testing.assert_close(out["mean"], means.mean(0))
    second_moment = torch.stack([o["scale"] ** 2 + o["mean"] ** 2 for o in outs]).mean(0)
    torch.testing.assert_close(out["scale"] ** 2, second_moment - out["mean"] ** 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ens.loss(x, target), torch.stack([m.loss(x, target) for m in ens.members]).mean())
    assert not torch.equal(ens.members[0].head.weight, ens.members[1].head.weight)  # own initialisations
    rebuilt = ForecasterEnsemble.from_config(ens.get_config())
    rebuilt.load_state_dict(ens.state_dict())
    torch.testing.assert_close(rebuilt.eval()(x)["mean"], out["mean"])


def test_forecasting_recipes():
    air = resolve_config("air-passengers")[1]
    assert (air.data.dataset, air.data.test_size, air.data.validation_size) == ("air-passengers", None, 12)
    assert (air.data.season, air.data.difference, air.model.horizon) == (12, 12, 12)
    co2 = resolve_config("co2")[1]
    assert (co2.data.dataset, co2.data.season, co2.data.missing) == ("co2", 52, "interpolate")
    sun = resolve_config("sunspots")[1]
    assert (sun.data.dataset, sun.data.season, sun.model.mode) == ("sunspots", 11, "recursive")
    for cfg in (air, co2, sun):
        assert cfg.data.validation_size >= cfg.model.horizon


def test_predict_on_a_differenced_run_continues_the_levels(tmp_path, capsys):
    """``predict`` on the history up to the test origin gives the run's own test forecast: with
    ``data.transform=none`` the levels it integrates back from were once overwritten by the differences."""
    data = series_csv(tmp_path, 120)
    runs = tmp_path / "runs"
    args = ["train.epochs=2", "data.window=12", "model.horizon=6", "data.test_size=18", "data.validation_size=6",
            "data.season=12", "data.difference=12", "data.transform=none", "model.hidden_size=8"]  # fmt: skip
    assert main(["train", "forecasting", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    *_, whole = read_jsonl(runs / "forecasting" / "predictions.jsonl")
    history = series_csv(tmp_path, 102, name="history.csv")  # everything before the test part
    capsys.readouterr()
    assert main(["predict", str(runs / "forecasting"), str(history)]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["forecast"] == pytest.approx(whole["forecast"][:6], rel=1e-4)
    assert all(abs(f - v) < 5 for f, v in zip(result["forecast"], seasonal(108)[102:], strict=True))  # the level
