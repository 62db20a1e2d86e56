"""``rnnkit quickstart`` end to end on a tiny fake rotten-tomatoes archive (the real parsing code runs)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.tasks import text_classification
from rnnkit.tasks.runner import load_run

RUN_FILES = {
    "config.yaml",
    "model.safetensors",
    "best.safetensors",
    "meta.json",
    "tokenizer.json",
    "metrics.jsonl",
    "train.log",
    "predictions.jsonl",
    "checkpoints",
    "plots",
}


def quickstart(runs, *extra):
    return main(["quickstart", "--epochs", "2", "--runs-dir", str(runs), "--quiet", *extra])


def entries(runs):
    return sorted(p.name for p in runs.iterdir())


def test_quickstart_writes_a_complete_run_folder(fake_rotten_tomatoes, tmp_path, capsys):
    fake_rotten_tomatoes()
    runs = tmp_path / "runs"
    assert quickstart(runs) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0].startswith("test accuracy: ") and lines[-1] == f"run folder: {runs / 'quickstart'}"
    assert err == ""  # --quiet
    run = runs / "quickstart"
    assert entries(runs) == ["quickstart"]
    assert {p.name for p in run.iterdir() if p.name != "tensorboard"} == RUN_FILES
    assert {p.name for p in (run / "plots").iterdir()} == {"learning_curves.png", "confusion_matrix.png"}

    meta = json.loads((run / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["task"] == "text-classification"
    assert meta["task_state"]["labels"] == ["rotten", "fresh"]
    assert meta["model"]["kind"] == "classifier-ensemble"  # three BiLSTMs over one frozen table
    assert meta["model"]["config"]["size"] == 3 and meta["model"]["config"]["share_embedding"]
    weights_sha = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert meta["files"]["model.safetensors"]["sha256"] == weights_sha
    test = meta["metrics"]["test"]
    assert set(test) == {"loss", "accuracy", "f1"} and f"{test['accuracy']:.4f}" in lines[0]
    assert test["accuracy"] > 0.8  # the fake data carries its label in a few words

    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"train_loss", "val_accuracy", "val_f1", "val_loss"} <= set(metrics[0])
    log = (run / "train.log").read_text()
    assert "epoch 2/2: train_loss" in log and f"accuracy={test['accuracy']:.4f}" in log

    # the run folder alone rebuilds the model (no pickle) and reproduces the saved test predictions
    predictions = read_jsonl(run / "predictions.jsonl")
    assert len(predictions) == meta["dataset"]["sizes"]["test"]
    loaded = load_run(run)
    saved, names = set(load_file(run / "model.safetensors")), set(loaded.model.state_dict())
    assert saved <= names and names - saved == {f"members.{k}.encoder.embedding.weight" for k in (1, 2)}
    again = loaded.task.predict(loaded.model, [p["text"] for p in predictions])
    assert [a["label"] for a in again] == [p["predicted"] for p in predictions]
    torch.testing.assert_close(
        torch.tensor([a["probability"] for a in again]), torch.tensor([p["probability"] for p in predictions]),
        atol=1e-5, rtol=0,
    )  # fmt: skip
    acc = sum(p["label"] == p["predicted"] for p in predictions) / len(predictions)
    assert acc == pytest.approx(test["accuracy"])


def test_same_seed_same_model(fake_rotten_tomatoes, tmp_path):
    fake_rotten_tomatoes()
    runs = tmp_path / "runs"
    assert quickstart(runs) == 0
    assert quickstart(runs) == 0
    a, b = (load_file(runs / name / "model.safetensors") for name in ("quickstart", "quickstart-2"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_runs_are_never_overwritten(fake_rotten_tomatoes, tmp_path, capsys):
    fake_rotten_tomatoes()
    runs = tmp_path / "runs"
    (runs / "quickstart").mkdir(parents=True)
    (runs / "quickstart" / "mine.txt").write_text("keep me")
    (runs / "quickstart-2").mkdir()
    assert quickstart(runs) == 0
    assert capsys.readouterr().out.strip().endswith(str(runs / "quickstart-3"))
    assert entries(runs / "quickstart") == ["mine.txt"] and entries(runs / "quickstart-2") == []
    # an explicit --name that exists is refused before any work, on one line, exit 2
    assert quickstart(runs, "--name", "quickstart") == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: run folder") and err.count("\n") == 1
    assert entries(runs / "quickstart") == ["mine.txt"]


@pytest.mark.parametrize(("exc", "code"), [(RnnkitError("bad input"), 2), (KeyboardInterrupt(), 130)])
def test_a_run_failing_before_any_checkpoint_leaves_no_folder(
    fake_rotten_tomatoes, tmp_path, monkeypatch, capsys, exc, code
):
    fake_rotten_tomatoes()

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(text_classification.TextClassification, "build_model", boom)
    runs = tmp_path / "runs"
    assert quickstart(runs, "--name", "broken") == code
    assert entries(runs) == []
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 2:
        assert err == "rnnkit: error: bad input\n"


def test_progress_and_logs_go_to_stderr(fake_rotten_tomatoes, tmp_path, capsys):
    fake_rotten_tomatoes()
    assert main(["quickstart", "--epochs", "1", "--runs-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[0].startswith("test accuracy")
    assert "epoch" in err and "run folder" in err
    assert "training summary" in err and "test (* = the kept epoch)" in err


def test_help_version_and_bad_arguments(capsys):
    assert main(["quickstart", "--help"]) == 0
    assert "examples:" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("rnnkit ")
    assert main(["quickstart", "--epochs", "zero"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err
    assert main(["quickstart", "--bogus"]) == 2
    assert main(["no-such-command"]) == 2
    assert main([]) == 2
