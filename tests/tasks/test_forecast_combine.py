"""``model.combine: theta``: the panel forecasting task mixes its global network with each series' Theta forecast
(statsmodels), the network's share chosen on the validation part only. Checked against independent
recomputations: statsmodels' ``ThetaModel`` called directly, the network's own forecasts from the loaded run
with the combination switched off, and sMAPE from :mod:`rnnkit.metrics.forecast`."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import atomic_write_json, read_jsonl, sha256_file
from rnnkit.metrics import forecast as fm
from rnnkit.models.statistical import naive2, theta_forecasts
from rnnkit.tasks import runner

H, M, N_POINTS = 4, 4, 40  # horizon, period, points per series (the last H: test, the H before: validation)
SMALL = ["data.horizon=4", "data.window=8", "data.season=4", "model.cell=gru", "model.hidden_size=4", "train.epochs=1",
         "train.batch_size=64", "train.lr=0.01", "train.monitor=smape", "train.monitor_mode=min"]  # fmt: skip
GRID = [k / 10 for k in range(11)]
#: the run whose weight is chosen: its series repeat every 5 steps, so Theta (period 4) and the network (20
#: epochs) both err, differently, and the best weight on validation lies strictly between 0 and 1 (0.9)
CHOSEN = ["model.combine=theta", "train.epochs=20", "model.hidden_size=8"]


def panel(seed=0, count=6, period=M, amplitude=0.25):
    """``count`` seasonal series of different levels and trends, rounded so a CSV holds them exactly."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_POINTS)
    out = {}
    for i in range(count):
        y = (20 + 15 * i) * (1 + amplitude * np.sin(2 * np.pi * (t + i) / period)) * (1 + 0.01 * (i - 2)) ** t
        out[f"s{i}"] = np.round(y * rng.uniform(0.95, 1.05, N_POINTS), 3)
    return out


def write_long(path, series, cut=0):
    """``series`` in the long format, each without its last ``cut`` points."""
    lines = ["unique_id,ds,y"]
    for sid, y in series.items():
        lines += [f"{sid},{t},{v!r}" for t, v in enumerate(y[: len(y) - cut].tolist())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def statsmodels_theta(y, period=M, horizon=H):
    from statsmodels.tsa.forecasting.theta import ThetaModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ThetaModel(np.asarray(y, np.float64), period=period).fit().forecast(horizon))


def train(tmp_path, data, *overrides, name="run"):
    argv = ["train", "forecasting", "--data", str(data), "--set", *SMALL, *overrides]
    assert main([*argv, "--runs-dir", str(tmp_path / "runs"), "--name", name, "--quiet"]) == 0
    return tmp_path / "runs" / name


def network_forecasts(run, histories_file):
    """The loaded run's network alone (weight 1) on every series of a long-format file: ``{id: (H, Q) array}``
    with the quantiles in the run's order."""
    loaded = runner.load_run(run)
    loaded.task.combine_weight = 1.0
    rows = loaded.task.predict(loaded.model, [str(histories_file)])
    return {r["id"]: np.array([r["quantiles"][k] for k in ("0.1", "0.5", "0.9")]).T for r in rows}


@pytest.fixture(scope="module")
def chosen(tmp_path_factory):
    """A run with ``model.combine=theta`` and the weight chosen on validation, its data and meta.json."""
    tmp = tmp_path_factory.mktemp("chosen")
    series = panel(period=5, amplitude=0.2)
    data = write_long(tmp / "data.csv", series)
    run = train(tmp, data, *CHOSEN)
    return run, series, data, json.loads((run / "meta.json").read_text())


# -- theta_forecasts ---------------------------------------------------------------------------------------
def test_theta_forecasts_are_statsmodels_theta():
    y = panel()["s2"]
    f, fell_back = theta_forecasts([y, y[:-7]], M, 6)
    assert f.shape == (2, 6) and not fell_back.any()
    np.testing.assert_allclose(f[0], statsmodels_theta(y, M, 6), rtol=1e-12)
    np.testing.assert_allclose(f[1], statsmodels_theta(y[:-7], M, 6), rtol=1e-12)


def test_a_series_statsmodels_cannot_fit_gets_naive2(monkeypatch):
    """Where ThetaModel raises (a 3-point series here) or forecasts a non-finite value, that series (and only
    that one) gets its Naive2 forecast, and the caller is told which."""
    from statsmodels.tsa.forecasting import theta as sm_theta

    real = sm_theta.ThetaModel

    class Fussy(real):
        def __init__(self, endog, *args, **kwargs):
            if len(endog) < 4:
                raise ValueError("too short")
            self.marked = endog[0] == 7.0  # a marked series: a non-finite forecast
            super().__init__(endog, *args, **kwargs)

        def fit(self, *args, **kwargs):
            result = super().fit(*args, **kwargs)
            if self.marked:
                result.forecast = lambda steps: np.full(steps, np.nan)
            return result

    monkeypatch.setattr(sm_theta, "ThetaModel", Fussy)
    ok = panel()["s1"]
    marked = np.r_[7.0, ok[1:]]
    short = np.array([3.0, 5.0, 4.0])
    f, fell_back = theta_forecasts([ok, short, marked], M, H)
    assert fell_back.tolist() == [False, True, True]
    np.testing.assert_allclose(f[0], statsmodels_theta(ok), rtol=1e-12)
    np.testing.assert_allclose(f[1], naive2(short, H, M))
    np.testing.assert_allclose(f[2], naive2(marked, H, M))
    assert np.isfinite(f).all()


def test_without_statsmodels_the_combination_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.forecasting.theta", None)  # import fails
    with pytest.raises(RnnkitError, match=r"model.combine=theta needs statsmodels: pip install 'rnnkit\[forecast\]'"):
        theta_forecasts([np.arange(1.0, 20.0)], M, H)
    data = write_long(tmp_path / "data.csv", panel())
    argv = ["train", "forecasting", "--data", str(data), "--set", *SMALL, "model.combine=theta"]
    assert main([*argv, "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs statsmodels" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "forecasting").exists()  # nothing trained, no folder left


# -- choosing the weight on validation ---------------------------------------------------------------------
def test_the_weight_is_the_best_on_validation(chosen, tmp_path):
    """Brute force from the run's own forecasts: the network alone and statsmodels' Theta, each from every
    series' training part less its validation part, scored by sMAPE on the validation part for w = 0, 0.1,
    ..., 1; the run keeps the lowest (a tie: the larger w)."""
    run, series, _, meta = chosen
    cal = meta["calibration"]
    assert set(cal) == {"combine_weight", "validation_smape_network", "validation_smape_theta",
                        "validation_smape_combined"}  # fmt: skip
    hist = write_long(tmp_path / "validation_histories.csv", series, cut=2 * H)
    net = network_forecasts(run, hist)
    actual = {sid: y[-2 * H : -H] for sid, y in series.items()}
    theta = {sid: statsmodels_theta(y[: -2 * H]) for sid, y in series.items()}

    def smape(w):
        return np.mean([fm.smape(actual[s], w * net[s][:, 1] + (1 - w) * theta[s]) for s in series])

    scores = {w: smape(w) for w in GRID}
    best = min(scores, key=lambda w: (round(scores[w], 9), -w))
    assert cal["combine_weight"] == pytest.approx(best) and 0 < best < 1  # this panel's best is a true mix
    assert cal["validation_smape_network"] == pytest.approx(scores[1.0], rel=1e-5)
    assert cal["validation_smape_theta"] == pytest.approx(scores[0.0], rel=1e-5)
    assert cal["validation_smape_combined"] == pytest.approx(min(scores.values()), rel=1e-5)
    # the network's own validation sMAPE is the one training chose its epoch by
    assert cal["validation_smape_network"] == pytest.approx(meta["metrics"]["best_validation"]["val_smape"], rel=1e-5)
    assert meta["task_state"]["combine_weight"] == cal["combine_weight"]


def test_the_weight_never_reads_the_test_part(chosen, tmp_path):
    """Absurd test parts (every series' last H points x 1000) change the test metrics, not what was chosen."""
    run, series, _, meta = chosen
    absurd = {sid: np.r_[y[:-H], np.round(y[-H:] * 1000, 3)] for sid, y in series.items()}
    other = train(tmp_path, write_long(tmp_path / "absurd.csv", absurd), *CHOSEN)
    other_meta = json.loads((other / "meta.json").read_text())
    assert other_meta["calibration"] == meta["calibration"]
    assert other_meta["metrics"]["test"]["smape"] > meta["metrics"]["test"]["smape"] + 50


# -- the combined forecast everywhere ----------------------------------------------------------------------
def test_a_given_weight_is_used_as_is_in_predictions_metrics_and_evaluate(tmp_path, capsys):
    series = panel(seed=3)
    data = write_long(tmp_path / "data.csv", series)
    run = train(tmp_path, data, "model.combine=theta", "model.combine_weight=0.3")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["calibration"]["combine_weight"] == 0.3 and meta["task_state"]["combine_weight"] == 0.3
    cal = meta["calibration"]
    assert cal["validation_smape_combined"] not in (cal["validation_smape_network"], cal["validation_smape_theta"])
    # predictions.jsonl = 0.3 x network + 0.7 x Theta, both from the training part; the quantiles move alike
    net = network_forecasts(run, write_long(tmp_path / "train_parts.csv", series, cut=H))
    rows = read_jsonl(run / "predictions.jsonl")
    for r in rows:
        y = series[r["id"]]
        expected = 0.3 * net[r["id"]][:, 1] + 0.7 * statsmodels_theta(y[:-H])
        np.testing.assert_allclose(r["forecast"], expected, rtol=1e-5)
        for j, q in enumerate(("0.1", "0.5", "0.9")):
            np.testing.assert_allclose(np.subtract(r["quantiles"][q], r["forecast"]),
                                       net[r["id"]][:, j] - net[r["id"]][:, 1], atol=1e-4)  # fmt: skip
    # the test metrics are those of the combined forecasts
    test = meta["metrics"]["test"]
    assert test["smape"] == pytest.approx(np.mean([fm.smape(series[r["id"]][-H:], r["forecast"]) for r in rows]),
                                          rel=1e-4)  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test, rel=1e-5, nan_ok=True)


def test_predict_combines_by_name_and_from_a_file(chosen, tmp_path):
    """``predict`` fits Theta on the history it is given: a file of the training parts gives predictions.jsonl
    again; a series of the run by name is forecast from the end of its kept history."""
    run, series, _, meta = chosen
    w = meta["calibration"]["combine_weight"]
    rows = {r["id"]: r for r in read_jsonl(run / "predictions.jsonl")}
    train_parts = write_long(tmp_path / "train_parts.csv", series, cut=H)
    for r in runner.predict(run, [str(train_parts)]):
        np.testing.assert_allclose(r["forecast"], rows[r["id"]]["forecast"], rtol=1e-6)
        for q, values in rows[r["id"]]["quantiles"].items():
            np.testing.assert_allclose(r["quantiles"][q], values, rtol=1e-6)
    whole = write_long(tmp_path / "whole.csv", series)
    net = network_forecasts(run, whole)
    (by_name,) = runner.predict(run, ["s4"])
    expected = w * net["s4"][:, 1] + (1 - w) * statsmodels_theta(series["s4"])
    np.testing.assert_allclose(by_name["forecast"], expected, rtol=1e-5)
    assert by_name["lower"] == by_name["quantiles"]["0.1"] and len(by_name["upper"]) == H


# -- run folders -------------------------------------------------------------------------------------------
def rewrite_config(run, edit):
    """Edit the run's config.yaml as a run folder from another version would hold it, and re-sign meta.json."""
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    edit(config)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    meta = json.loads((run / "meta.json").read_text())
    meta["files"]["config.yaml"]["sha256"] = sha256_file(run / "config.yaml")
    return meta


def test_a_run_from_before_the_combination_loads_and_predicts_as_before(tmp_path):
    series = panel(seed=5)
    run = train(tmp_path, write_long(tmp_path / "data.csv", series))
    meta = json.loads((run / "meta.json").read_text())
    assert meta["calibration"] == {} and "combine_weight" not in meta["task_state"]
    before = runner.predict(run, ["s1", "s3"])

    def drop(config):
        del config["model"]["combine"], config["model"]["combine_weight"]

    atomic_write_json(run / "meta.json", rewrite_config(run, drop))
    assert runner.predict(run, ["s1", "s3"]) == before


def test_a_combined_run_without_its_weight_is_refused(chosen, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(chosen[0], run)
    meta = json.loads((run / "meta.json").read_text())
    meta["task_state"]["combine_weight"] = 1.5
    atomic_write_json(run / "meta.json", meta)
    with pytest.raises(RnnkitError, match=r"task_state.combine_weight: expected a number in \[0, 1\], got 1.5"):
        runner.load_run(run)
    del meta["task_state"]["combine_weight"]
    atomic_write_json(run / "meta.json", meta)
    with pytest.raises(RnnkitError, match="task_state.combine_weight"):
        runner.load_run(run)


def test_a_single_series_cannot_combine(tmp_path, capsys):
    data = tmp_path / "one.csv"
    data.write_text("t,y\n" + "".join(f"{t},{10 + t % 4}\n" for t in range(60)))
    argv = ["train", "forecasting", "--data", str(data), "--set", "model.combine=theta", "data.window=8",
            "model.horizon=4", "--runs-dir", str(tmp_path / "runs"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "model.combine=theta is for many series (data.layout=panel)" in err and "\n" not in err
    with pytest.raises(RnnkitError, match="combine_weight"):
        runner.resolve_config("forecasting", overrides=["model.combine_weight=1.5"])
