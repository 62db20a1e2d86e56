"""series-classification: the ``.ts`` case reader (line numbers, missing values), the --data layouts and split
rules, train-only channel statistics, variable lengths, and the CLI contract train -> predict -> evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.tasks.runner import resolve_config
from rnnkit.tasks.series_classification import SeriesClassification, read_ts_file

HEADER = "@problemName Toy\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true up down\n@data\n"


def toy_case(label: str, rng: np.random.Generator, offset: float = 0.0) -> tuple[np.ndarray, str]:
    """2 channels x 6-12 steps: 'up' rises in channel 1 and sits high in channel 2, 'down' the opposite."""
    T = int(rng.integers(6, 13))
    sign = 1.0 if label == "up" else -1.0
    ch1 = sign * np.linspace(-1, 1, T) + 0.2 * rng.standard_normal(T)
    ch2 = sign * 0.8 + 0.3 * rng.standard_normal(T)
    return np.stack([ch1, ch2]) * 3 + offset, label


def ts_text(cases, header: str = HEADER, labelled: bool = True) -> str:
    lines = [":".join(",".join(f"{v:.4f}" for v in ch) for ch in series) + (f":{lab}" if labelled else "")
             for series, lab in cases]  # fmt: skip
    return header + "\n".join(lines) + "\n"


def write_ts(path, n: int, seed: int = 0, offset: float = 0.0, labelled: bool = True, header: str = HEADER):
    rng = np.random.default_rng(seed)
    path.write_text(ts_text([toy_case(("up", "down")[i % 2], rng, offset) for i in range(n)], header, labelled))
    return path


def make_task(path, *overrides):
    _, config = resolve_config("series-classification", overrides=list(overrides))
    return SeriesClassification(config, path)


# -- reader ---------------------------------------------------------------------------------------------
def test_reader_cases_lines_and_lengths(tmp_path):
    path = tmp_path / "toy.ts"
    text = ts_text([toy_case(lab, np.random.default_rng(i)) for i, lab in enumerate(["up", "down", "up"])])
    path.write_text("# a comment\n" + text.replace("@data\n", "@data\n\n# cases\n"))
    ts, cases = read_ts_file(path)
    assert ts.labels == ("up", "down") and [c["label"] for c in cases] == ["up", "down", "up"]
    assert [c["where"] for c in cases] == [f"{path}:{n}" for n in (10, 11, 12)]
    assert all(c["series"].dtype == np.float32 and c["series"].shape[1] == 2 for c in cases)
    assert cases[0]["series"][0, 1] == pytest.approx(float(text.split("@data\n")[1].split(":")[1].split(",")[0]))
    unlabelled = write_ts(tmp_path / "new.ts", 2, labelled=False, header=HEADER.replace(" up down", "").replace(
        "@classLabel true", "@classLabel false"))  # fmt: skip
    assert [c["label"] for c in read_ts_file(unlabelled, need_labels=False)[1]] == [None, None]
    with pytest.raises(RnnkitError, match="no class labels"):
        read_ts_file(unlabelled)


@pytest.mark.parametrize("missing", ["?", "NaN"])
def test_missing_value_is_a_one_line_error(tmp_path, missing):
    path = tmp_path / "gaps.ts"
    path.write_text(HEADER + "1,2,3:4,5,6:up\n1,2,3:4,5," + missing + ":down\n")
    with pytest.raises(RnnkitError) as e:
        read_ts_file(path)
    assert "gaps.ts:8: missing value ('?' or NaN) in channel 2 at step 3" in str(e.value)
    assert "\n" not in str(e.value)


# -- data layouts, splits, statistics ---------------------------------------------------------------------
def test_pair_layouts_validation_rule_and_train_only_statistics(tmp_path):
    folder = tmp_path / "Toy"
    folder.mkdir()
    write_ts(folder / "Toy_TRAIN.ts", 30, seed=1)
    write_ts(folder / "Toy_TEST.ts", 10, seed=2, offset=100.0)  # far off: must not move the statistics
    for data in (folder, folder / "Toy", folder / "Toy_TRAIN.ts"):
        task = make_task(data)
        info = task.prepare(tmp_path)
        assert info["sizes"] == {"train": 27, "validation": 3, "test": 10}, data
    # validation = train cases 11, 21, 23 (h(str(i)) % 10 == 1)
    assert task.splits["validation"]["where"] == [f"{folder / 'Toy_TRAIN.ts'}:{7 + i}" for i in (11, 21, 23)]
    train_cases = [c["series"] for c in read_ts_file(folder / "Toy_TRAIN.ts")[1]]
    train_cases = [s for i, s in enumerate(train_cases) if i not in (11, 21, 23)]
    steps = np.concatenate(train_cases)
    assert task.mean == pytest.approx(steps.mean(0).tolist(), abs=1e-4)
    assert task.std == pytest.approx(steps.std(0).tolist(), rel=1e-4)
    x, lengths = task.splits["train"]["x"], task.splits["train"]["lengths"]
    real = torch.cat([x[i, :n] for i, n in enumerate(lengths.tolist())])
    assert real.mean(0).abs().max() < 1e-4 and (real.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert float(task.splits["test"]["x"][0, 0, 1]) > 10  # test data is standardised with train statistics
    state = task.state()
    assert state["normalize"] == "channel" and state["channels"] == 2 and state["labels"] == ["down", "up"]
    # normalize: none keeps the values
    raw = make_task(folder, "data.normalize=none")
    raw.prepare(tmp_path)
    assert raw.mean == [0.0, 0.0] and float(raw.splits["test"]["x"][0, 0, 1]) > 50


def test_single_file_split_rule_and_errors(tmp_path):
    task = make_task(write_ts(tmp_path / "one.ts", 25))
    assert task.prepare(tmp_path)["sizes"] == {"train": 19, "validation": 3, "test": 3}
    assert [w.rsplit(":", 1)[1] for w in task.splits["test"]["where"]] == ["7", "17", "27"]  # cases 0, 10, 20
    with pytest.raises(RnnkitError, match="expected one \\*_TRAIN.ts and one \\*_TEST.ts"):
        make_task(tmp_path).prepare(tmp_path)  # a folder without a pair
    with pytest.raises(RnnkitError, match="split is empty"):
        make_task(write_ts(tmp_path / "tiny.ts", 1)).prepare(tmp_path)
    with pytest.raises(RnnkitError, match="no data"):
        make_task(None).prepare(tmp_path)


def test_variable_lengths_are_masked(tmp_path):
    task = make_task(write_ts(tmp_path / "one.ts", 25))
    task.prepare(tmp_path)
    data = task.splits["train"]
    lengths = data["lengths"]
    assert len(set(lengths.tolist())) > 1 and data["x"].shape[1] == int(lengths.max())
    short = int(lengths.argmin())
    assert data["x"][short, int(lengths[short]) :].abs().sum() == 0  # padding
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.probabilities(model, (data["x"], lengths), len(lengths))
    alone = task.probabilities(
        model, (data["x"][short : short + 1, : int(lengths[short])], lengths[short : short + 1]), 1
    )
    assert torch.allclose(batch[short], alone[0], atol=1e-5)  # padding does not change the prediction
    assert model.config.encoder.input_size == 2 and model.config.encoder.bidirectional


# -- the command line -----------------------------------------------------------------------------------
def test_recipe_validates():
    assert main(["config", "show", "ucr"]) == 0


def test_train_predict_evaluate_contract(tmp_path, capsys):
    folder = tmp_path / "Toy"
    folder.mkdir()
    write_ts(folder / "Toy_TRAIN.ts", 60, seed=1, offset=5.0)
    write_ts(folder / "Toy_TEST.ts", 20, seed=2, offset=5.0)
    runs = tmp_path / "runs"
    args = ["train", "ucr", "--data", str(folder), "--runs-dir", str(runs), "--name", "toy", "--quiet"]
    sets = ["train.epochs=4", "train.lr=0.02", "train.batch_size=8", "model.hidden_size=16", "model.ensemble=1"]
    assert main([*args, "--set", *sets]) == 0
    capsys.readouterr()
    run = runs / "toy"
    for name in ("meta.json", "model.safetensors", "config.yaml", "predictions.jsonl", "metrics.jsonl"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task"] == "series-classification" and meta["model"]["kind"] == "classifier"
    state = meta["task_state"]
    assert state["channels"] == 2 and len(state["mean"]) == 2 and state["mean"][1] == pytest.approx(5.0, abs=1.0)
    assert meta["dataset"]["sizes"] == {"train": 53, "validation": 7, "test": 20}
    assert "plots/confusion_matrix.png" in meta["plots"] and (run / "plots" / "confusion_matrix.png").stat().st_size
    assert meta["metrics"]["test"]["accuracy"] >= 0.9  # the tiny problem was learned
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 20 and preds[0]["case"] == 0 and preds[0]["input"].endswith("Toy_TEST.ts:7")
    assert {"label", "predicted", "probability"} <= set(preds[0])

    # predict: a labelled .ts (labels ignored) and an unlabelled one, standardised with the run's statistics
    rng = np.random.default_rng(9)
    new = tmp_path / "new.ts"
    header = HEADER.replace("@classLabel true up down", "@classLabel false")
    new.write_text(ts_text([toy_case(lab, rng, 5.0) for lab in ("up", "down", "up")], header, labelled=False))
    assert main(["predict", str(run), str(new), str(folder / "Toy_TEST.ts")]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 23 and [r["input"] for r in out[:3]] == [f"{new}:{n}" for n in (7, 8, 9)]
    assert [r["label"] for r in out[:3]] == ["up", "down", "up"]
    assert all(0 < r["probability"] <= 1 and set(r["probabilities"]) == {"up", "down"} for r in out)

    assert main(["evaluate", str(run), "--data", str(folder)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])
    assert set(metrics) >= {"accuracy", "f1", "loss"}

    # a missing value in a prediction input: one line naming file:line
    bad = tmp_path / "bad.ts"
    bad.write_text(header + "1,2:3,?\n")
    assert main(["predict", str(run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.ts:7: missing value" in err and err.count("\n") == 1


# -- downsampling long series (issue #6: OSULeaf, ACSF1) ----------------------------------------------------
def test_downsample_averages_runs_of_k_steps():
    from rnnkit.tasks.series_classification import downsample

    x = np.arange(20, dtype=np.float32).reshape(10, 2)  # 10 steps, 2 channels
    np.testing.assert_array_equal(downsample(x, 1), x)
    np.testing.assert_allclose(downsample(x, 4), [[3, 4], [11, 12], [17, 18]])  # the last run has 2 steps
    np.testing.assert_allclose(downsample(x, 10), [x.mean(0)])
    assert downsample(x, 4).dtype == np.float32 and downsample(x[:3], 5).shape == (1, 2)


def test_downsample_applies_to_training_statistics_and_prediction(tmp_path, capsys):
    folder = tmp_path / "Toy"
    folder.mkdir()
    write_ts(folder / "Toy_TRAIN.ts", 40, seed=1)
    write_ts(folder / "Toy_TEST.ts", 10, seed=2)
    full, short = make_task(folder), make_task(folder, "data.downsample=3")
    info_full, info_short = full.prepare(tmp_path), short.prepare(tmp_path)
    for s in ("train", "validation", "test"):
        expected = (full.splits[s]["lengths"] + 2) // 3  # ceil(T / 3)
        assert torch.equal(short.splits[s]["lengths"], expected)
    assert info_short["steps"] != info_full["steps"]
    # prediction reads the same k from the run's config
    runs = tmp_path / "runs"
    args = ["train", "ucr", "--data", str(folder), "--runs-dir", str(runs), "--name", "ds", "--quiet", "--set",
            "train.epochs=1", "model.hidden_size=8", "data.downsample=3"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    run = runs / "ds"
    assert main(["predict", str(run), str(folder / "Toy_TEST.ts")]) == 0
    probs = [json.loads(line)["probability"] for line in capsys.readouterr().out.splitlines()]
    from rnnkit.tasks.runner import load_run

    loaded = load_run(run)
    loaded.task.prepare(tmp_path, reuse=True)
    test = loaded.task.splits["test"]
    expected = loaded.task.probabilities(loaded.model, (test["x"], test["lengths"]), len(test["y"])).max(-1).values
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-4)


# -- seed ensembles (model.ensemble) --------------------------------------------------------------------------
def test_ensemble_trains_predicts_evaluates_and_serves(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from rnnkit.models import Classifier, ClassifierEnsemble
    from rnnkit.serve.app import create_app
    from rnnkit.tasks.runner import load_run

    folder = tmp_path / "Toy"
    folder.mkdir()
    write_ts(folder / "Toy_TRAIN.ts", 30, seed=1)
    write_ts(folder / "Toy_TEST.ts", 10, seed=2)
    task = make_task(folder, "model.ensemble=3", "model.hidden_size=8")
    task.prepare(tmp_path)
    model = task.build_model()
    assert isinstance(model, ClassifierEnsemble) and model.config.size == 3
    assert model.config.member.encoder.hidden_size == 8 and model.config.member.num_classes == 2
    single = make_task(folder, "model.hidden_size=8")  # the default: one classifier
    single.prepare(tmp_path)
    assert isinstance(single.build_model(), Classifier)

    runs = tmp_path / "runs"
    args = ["train", "ucr", "--data", str(folder), "--runs-dir", str(runs), "--name", "ens", "--quiet", "--set",
            "train.epochs=2", "train.batch_size=8", "model.hidden_size=8", "model.ensemble=3"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    run = runs / "ens"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"]["kind"] == "classifier-ensemble" and meta["model"]["config"]["size"] == 3
    assert (run / "predictions.jsonl").is_file() and (run / "plots" / "confusion_matrix.png").is_file()

    # predict: the mean of the members' probabilities
    test_file = folder / "Toy_TEST.ts"
    assert main(["predict", str(run), str(test_file)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 10 and all(set(r["probabilities"]) == {"up", "down"} for r in out)
    loaded = load_run(run)
    loaded.task.prepare(tmp_path, reuse=True)
    test = loaded.task.splits["test"]
    p = test["x"].new_zeros(len(test["y"]), 2)
    with torch.no_grad():
        for m in loaded.model.members:
            p += loaded.task.probabilities(m, (test["x"], test["lengths"]), len(test["y"])) / 3
    labels = loaded.task.labels
    got = torch.tensor([[r["probabilities"][lab] for lab in labels] for r in out])
    torch.testing.assert_close(got, p, atol=1e-5, rtol=1e-4)

    assert main(["evaluate", str(run), "--data", str(folder)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == pytest.approx(meta["metrics"]["test"], rel=1e-5)
    mixture = torch.nn.functional.nll_loss(p.log(), test["y"]).item()  # evaluation: the mixture's cross-entropy
    assert metrics["loss"] == pytest.approx(mixture, rel=1e-4)

    # serve /predict runs the ensemble like any series run
    with TestClient(create_app(run)) as c:
        info = c.get("/info").json()
        assert info["model"]["kind"] == "classifier-ensemble"
        r = c.post("/predict", json={"inputs": [{"name": "t.ts", "content": test_file.read_text()}]})
        assert r.status_code == 200, r.text
        served = r.json()["results"]
        assert [s["label"] for s in served] == [o["label"] for o in out]

    # export writes the whole ensemble as one graph: ONNX Runtime gives the members' mean probabilities
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "exported" / "m.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    capsys.readouterr()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = {"features": test["x"].float().numpy(), "lengths": test["lengths"].numpy()}
    logits = torch.from_numpy(session.run(None, feed)[0])
    torch.testing.assert_close(logits.softmax(-1), p.float(), atol=1e-5, rtol=1e-4)
    assert not (run / "export").exists()


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_bad_ensemble_size_is_a_one_line_error(tmp_path, capsys, value):
    folder = tmp_path / "Toy"
    folder.mkdir()
    write_ts(folder / "Toy_TRAIN.ts", 20, seed=1)
    write_ts(folder / "Toy_TEST.ts", 5, seed=2)
    args = ["train", "ucr", "--data", str(folder), "--runs-dir", str(tmp_path / "runs"), "--quiet",
            "--set", f"model.ensemble={value}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "model.ensemble" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
