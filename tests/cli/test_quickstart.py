from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import read_jsonl
from rnnkit.tasks import sentiment
from rnnkit.tasks.sentiment import SentimentConfig, SentimentPredictor

RUN_FILES = {
    "config.yaml",
    "model.safetensors",
    "meta.json",
    "tokenizer.json",
    "metrics.jsonl",
    "train.log",
    "predictions.jsonl",
}


def quickstart(runs, *extra):
    return main(["quickstart", "--epochs", "1", "--runs-dir", str(runs), "--quiet", *extra])


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
    assert entries(runs) == ["quickstart"]  # the staging folder was renamed, nothing else left
    assert {p.name for p in run.iterdir()} == RUN_FILES

    meta = json.loads((run / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["task"] == "sentiment"
    assert meta["labels"] == ["rotten", "fresh"] and meta["label_map"] == {"rotten": 0, "fresh": 1}
    weights_sha = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert meta["files"]["model.safetensors"]["sha256"] == weights_sha
    assert meta["metrics"]["best_epoch"] == 1 and 0.0 <= meta["metrics"]["test_acc"] <= 1.0
    assert f"{meta['metrics']['test_acc']:.4f}" in lines[0]

    config = SentimentConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text()))
    assert config.train.epochs == 1 and config.train.seed == 0 and config.model.pooling == "max"
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == [1] and set(metrics[0]) == {"epoch", "train_loss", "val_acc", "time"}
    assert "test accuracy" in (run / "train.log").read_text()

    # the weights reload (no pickle) and reproduce the saved test predictions
    predictions = read_jsonl(run / "predictions.jsonl")
    assert len(predictions) == meta["dataset"]["sizes"]["test"]
    assert set(predictions[0]) == {"text", "label", "predicted", "probability"}
    assert set(load_file(run / "model.safetensors")) == set(SentimentPredictor(run).model.state_dict())
    again = SentimentPredictor(run).predict([p["text"] for p in predictions])
    assert [a["predicted"] for a in again] == [p["predicted"] for p in predictions]
    assert torch.allclose(
        torch.tensor([a["probability"] for a in again]),
        torch.tensor([p["probability"] for p in predictions]),
        atol=1e-5,
    )
    acc = sum(p["label"] == p["predicted"] for p in predictions) / len(predictions)
    assert acc == pytest.approx(meta["metrics"]["test_acc"])


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
    assert err.startswith("rnnkit: error: run folder") and "--overwrite" in err and err.count("\n") == 1
    assert entries(runs / "quickstart") == ["mine.txt"]

    assert quickstart(runs, "--name", "quickstart", "--overwrite") == 0
    assert {p.name for p in (runs / "quickstart").iterdir()} == RUN_FILES
    assert entries(runs) == ["quickstart", "quickstart-2", "quickstart-3"]


@pytest.mark.parametrize(("exc", "code"), [(RnnkitError("bad input"), 2), (KeyboardInterrupt(), 130)])
def test_a_failed_run_leaves_no_folder(fake_rotten_tomatoes, tmp_path, monkeypatch, capsys, exc, code):
    fake_rotten_tomatoes()

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(sentiment, "predict_proba", boom)  # fails after the first training epoch
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
    assert len(out.strip().splitlines()) == 2
    assert "epoch 1" in err


def test_help_version_and_bad_arguments(capsys):
    assert main(["quickstart", "--help"]) == 0
    assert "example:" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("rnnkit ")
    assert main(["quickstart", "--epochs", "zero"]) == 2
    assert "expected a positive integer" in capsys.readouterr().err
    assert main(["quickstart", "--bogus"]) == 2
    assert main(["no-such-command"]) == 2
    assert main([]) == 2


def test_unknown_config_keys_are_rejected():
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        SentimentConfig.model_validate({"train": {"epoch": 3}})
