"""``rnnkit export`` of a many-series forecaster: ONNX Runtime equals the model (single member and ensemble, GRU
and LSTM, both heads, every input the task can feed, batch 1 and 7, another window length), a trained run's
export reproduces its ``predictions.jsonl`` from the task's own batch (with ``model.combine: theta``: from the
graph, statsmodels' Theta and the weight and period the description states), ``predict --quantize int8``
runs the int8 graph, and the refusals are one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.fileio import read_jsonl
from rnnkit.models.forecaster import PanelForecaster, PanelForecasterEnsemble
from rnnkit.tasks.forecasting import PanelArrays, PanelSplit
from rnnkit.tasks.runner import predict

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

H, W, M, N_POINTS = 4, 8, 4, 36  # horizon, window, period, points per series
SMALL = [f"data.horizon={H}", f"data.window={W}", f"data.season={M}", "model.hidden_size=4", "train.epochs=1",
         "train.batch_size=64", "train.lr=0.01"]  # fmt: skip


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def inputs(B: int, T: int, level: bool, known: int, static: int, seed: int) -> dict[str, torch.Tensor]:
    """Random valid inputs: positive windows, the last row left-padded, seasonal factors around 1."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T)
    mask[-1, : T // 2] = 0
    feed = {"window": torch.rand(B, T, generator=g) * 50 + 1, "mask": mask,
            "season": torch.rand(B, T + H, generator=g) + 0.5}  # fmt: skip
    if level:
        feed["level"] = torch.rand(B, generator=g) * 50 + 1
    if known:
        feed["known"] = torch.randn(B, T + H, known, generator=g)
    if static:
        feed["static"] = torch.randn(B, static, generator=g)
    return feed


CASES = {  # (cell, head, members, known, static, level, scaling): both cells, both heads, one and many members
    "gru-ensemble-direct": ("gru", "direct", 3, 0, 0, False, "log"),
    "lstm-single-recursive-covariates-level": ("lstm", "recursive", 1, 2, 1, True, "ratio"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_runtime_equals_the_model(tmp_path, case):
    from rnnkit.export.onnx import export_onnx

    cell, head, members, K, S, level, scaling = CASES[case]
    torch.manual_seed(0)
    cfg = dict(encoder=dict(input_size=2 + K + S, cell=cell, hidden_size=4), horizon=H, head=head, known=K,
               static=S, scaling=scaling, level_steps=M)  # fmt: skip
    model = PanelForecasterEnsemble(member=cfg, size=members) if members > 1 else PanelForecaster(cfg)
    model.eval()
    sig_in, sig_out = export_onnx(model, tmp_path / "f.onnx", with_level=level)
    names = ["window", "mask", "season"] + ["level"] * level + ["known"] * bool(K) + ["static"] * bool(S)
    assert [i["name"] for i in sig_in] == names
    assert [(o["name"], o["shape"]) for o in sig_out] == [("quantiles", ["batch", H, 3]), ("median", ["batch", H])]
    s = session(tmp_path / "f.onnx")
    assert [i.name for i in s.get_inputs()] == names
    for seed, (B, T) in enumerate([(1, W), (7, W), (7, W + 5)]):  # batch 1 and 7; the window is dynamic too
        feed = inputs(B, T, level, K, S, seed)
        with torch.no_grad():
            want = model(feed["window"], **{k: v for k, v in feed.items() if k != "window"})
        q, median = s.run(None, {k: v.numpy() for k, v in feed.items()})
        np.testing.assert_allclose(q, want["quantiles"].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(median, want["median"].numpy(), rtol=1e-5, atol=1e-6)
        assert (np.diff(q, axis=-1) >= 0).all()


# -- a trained run, exported ------------------------------------------------------------------------------------
def panel(count=4, seed=0):
    """``count`` seasonal series of different levels, rounded so a CSV holds them exactly."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_POINTS)
    return {f"s{i}": np.round((20 + 30 * i) * (1 + 0.25 * np.sin(2 * np.pi * (t + i) / M)) * (1.01 + 0.01 * i) ** t
                              * rng.uniform(0.95, 1.05, N_POINTS), 3) for i in range(count)}  # fmt: skip


def train_run(tmp_path, series, *overrides):
    data = tmp_path / "data.csv"
    rows = ["unique_id,ds,y"] + [f"{k},{t},{v!r}" for k, y in series.items() for t, v in enumerate(y.tolist())]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["train", "forecasting", "--data", str(data), "--set", *SMALL, *overrides]
    assert main([*argv, "--runs-dir", str(tmp_path / "runs"), "--name", "run", "--quiet"]) == 0
    return tmp_path / "runs" / "run"


def task_batch(series, seasonality):
    """The task's own batch for the test pairs: every series forecast from the end of its training part."""
    values = list(series.values())
    n = np.array([len(v) - H for v in values])
    split = PanelSplit(list(series), values, n, [np.zeros((len(v), 0)) for v in values], np.zeros((len(n), 0)))
    return PanelArrays(split, W, H, M, seasonality).batch(np.arange(len(n)), n, target=False)


def quantiles_of(rows):
    return np.array([[r["quantiles"][k] for k in ("0.1", "0.5", "0.9")] for r in rows]).transpose(0, 2, 1)


def test_export_of_a_run_reproduces_its_predictions(tmp_path, capsys, monkeypatch):
    series = panel()
    run = train_run(tmp_path, series, "model.cell=lstm", "model.ensemble=2", "data.seasonality=holt-winters")
    out = tmp_path / "export"
    capsys.readouterr()
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / "model.onnx"), str(out / "model.json")]
    desc = json.loads((out / "model.json").read_text())
    assert desc["model_kind"] == "panel-forecaster-ensemble" and desc["window"] == W and desc["horizon"] == H
    assert [i["name"] for i in desc["inputs"]] == ["window", "mask", "season", "level"]  # holt-winters: the level
    assert "combine" not in desc and "lengths" not in desc["usage"]
    batch = task_batch(series, "holt-winters")
    q, median = session(out / "model.onnx").run(None, {i["name"]: batch[i["name"]].numpy() for i in desc["inputs"]})
    rows = read_jsonl(run / "predictions.jsonl")
    assert [r["id"] for r in rows] == list(series)
    np.testing.assert_allclose(q, quantiles_of(rows), rtol=1e-5)
    np.testing.assert_allclose(median, [r["forecast"] for r in rows], rtol=1e-5)

    # predict --quantize int8: the task's own predict on the int8 graph (built once, outside the run folder)
    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
    int8 = predict(run, ["s1", "s3"], quantize="int8")
    assert len(list((tmp_path / "home" / "int8").glob("*-level/model.int8.onnx"))) == 1
    want = predict(run, ["s1", "s3"])
    for a, b in zip(int8, want, strict=True):
        assert a["id"] == b["id"] and len(a["forecast"]) == H
        np.testing.assert_allclose(a["forecast"], b["forecast"], rtol=0.05)  # int8 weights: close, not equal
    assert [r["forecast"] for r in int8] != [r["forecast"] for r in want]  # the int8 graph really ran


def test_a_combined_run_states_the_weight_and_period_that_reproduce_it(tmp_path, capsys):
    from statsmodels.tsa.forecasting.theta import ThetaModel

    series = panel(count=3, seed=1)
    run = train_run(tmp_path, series, "model.cell=gru", "model.combine=theta", "model.combine_weight=0.4")
    out = tmp_path / "export"
    assert main(["export", str(run), "--out", str(out)]) == 0
    desc = json.loads((out / "model.json").read_text())
    combine = desc["combine"]
    assert combine["method"] == "theta" and combine["weight"] == pytest.approx(0.4) and combine["period"] == M
    assert "w * median + (1 - w) * Theta(history, period)" in combine["formula"]
    batch = task_batch(series, "none")
    q, median = session(out / "model.onnx").run(None, {i["name"]: batch[i["name"]].numpy() for i in desc["inputs"]})
    with warnings.catch_warnings():  # a consumer's own Theta: statsmodels on each history before the origin
        warnings.simplefilter("ignore")
        theta = np.stack(
            [ThetaModel(y[: len(y) - H], period=combine["period"]).fit().forecast(H) for y in series.values()]
        )
    w = combine["weight"]
    got = q + ((1 - w) * (theta - median))[..., None]
    np.testing.assert_allclose(got, quantiles_of(read_jsonl(run / "predictions.jsonl")), rtol=1e-5)

    # the one-line refusals: TorchScript does not cover this kind
    capsys.readouterr()
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "ts")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a panel-forecaster exports with --format onnx" in err
    assert not (tmp_path / "ts").exists()


def test_the_single_series_forecaster_is_refused_in_one_line(capsys):
    from rnnkit.errors import RnnkitError
    from rnnkit.export import check_exportable

    check_exportable("panel-forecaster")
    check_exportable("panel-forecaster-ensemble")
    with pytest.raises(RnnkitError, match="model kind 'forecaster' does not export yet; the kinds that do: .*panel"):
        check_exportable("forecaster")
