"""``rnnkit train / predict / evaluate / config`` in-process, on a user CSV: the contract, resume, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import text_fixtures
from rnnkit.cli.main import main
from rnnkit.tasks import text_classification


def write_reviews(path: Path, n: int = 300, seed: int = 0) -> Path:
    return text_fixtures.write_reviews(path, n, seed)


SMALL = ["model.embed_dim=16", "model.hidden_size=16", "model.dropout=0.0", "train.lr=0.01", "train.batch_size=16"]


def train(tmp_path, *extra, name="r"):
    data = tmp_path / "reviews.csv"
    if not data.exists():
        write_reviews(data)
    args = ["train", "text-classification", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    return main([*args, "--name", name, "--set", "train.epochs=3", *SMALL, *extra])


def test_train_predict_evaluate_contract(tmp_path, capsys):
    assert train(tmp_path) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "r"
    assert out.strip().endswith(f"run folder: {run}")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["metrics"]["test"]["accuracy"] > 0.9

    assert main(["predict", str(run), "a great film", "dull plot"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-4

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("superb\n\nawful scene\n")
    assert main(["predict", str(run), "--file", str(inputs), "--format", "table"]) == 0
    table = capsys.readouterr().out
    assert "superb" in table and "awful scene" in table and "label" in table

    assert main(["evaluate", str(run), "--data", str(tmp_path / "reviews.csv")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])


def test_every_override_reaches_the_model(tmp_path):
    assert train(tmp_path, "model.cell=gru", "model.pooling=attention", "model.bidirectional=false") == 0
    meta = json.loads((tmp_path / "runs" / "r" / "meta.json").read_text())
    enc = meta["model"]["config"]["encoder"]
    assert enc["cell"] == "gru" and enc["bidirectional"] is False
    assert meta["model"]["config"]["pooling"] == "attention"
    saved = (tmp_path / "runs" / "r" / "config.yaml").read_text()
    assert "cell: gru" in saved and "pooling: attention" in saved


def test_resume_after_interruption_gives_the_same_weights(tmp_path, monkeypatch, capsys):
    ckpt = ["train.checkpoint_every=2"]
    assert train(tmp_path, *ckpt, name="straight") == 0

    original = text_classification.TextClassification.trainer_task
    calls = {"n": 0}

    def interrupted(self):
        task = original(self)
        inner = task.train_step

        def step(model, batch, carry):
            calls["n"] += 1
            if calls["n"] == 20:  # mid-epoch 2
                raise KeyboardInterrupt
            return inner(model, batch, carry)

        task.train_step = step
        return task

    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", interrupted)
    assert train(tmp_path, *ckpt, name="cut") == 130
    run = tmp_path / "runs" / "cut"
    assert (run / "checkpoints" / "latest").exists() and not (run / "meta.json").exists()
    assert main(["predict", str(run), "great"]) == 2
    assert "did not finish" in capsys.readouterr().err
    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", original)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    a = load_file(tmp_path / "runs" / "straight" / "model.safetensors")
    b = load_file(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2  # finished runs are not resumed
    assert "already finished" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "nonsense"], "unknown recipe or task 'nonsense'"),
        (["train", "sentiment", "--set", "train.epochz=3"], "train.epochz: unknown key"),
        (["train", "sentiment", "--set", "train.lr=fast"], "train.lr: Input should be a valid number"),
        (["train", "sentiment", "--set", "model.cell=transformer"], "model.cell"),
        (["train", "sentiment", "--set", "lr"], "--set expects KEY.PATH=VALUE"),
        (["train", "text-classification", "--data", "/nonexistent.csv"], "/nonexistent.csv: no such file"),
        (["train", "sentiment", "--resume", "/tmp"], "do not give a target"),
        (["train"], "give a recipe or task"),
        (["predict", "/no/such/run", "x"], "no run folder"),
        (["evaluate", "/no/such/run"], "no run folder"),
        (["config", "show", "nonsense"], "unknown recipe or task"),
        (["train", "sentiment", "--config", "/no/such.yaml"], "/no/such.yaml: no such config file"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    assert main([*args, *(["--runs-dir", str(tmp_path), "--quiet"] if args[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "sentiment").exists()  # a rejected config creates no run folder


@pytest.mark.parametrize(
    "content, message",
    [
        ("text,label\n", "no examples"),
        ("txt,label\nhello,pos\n", "no column 'text'"),
        ("text,label\nhello,pos,extra\n", "reviews.csv:2: more fields"),
        ("text,label\n,pos\n", "reviews.csv:2: empty 'text'"),
        (b"text,label\n\xff\xfe,pos\n", "not valid UTF-8"),
    ],
)
def test_bad_data_files_are_reported_and_leave_nothing(tmp_path, capsys, content, message):
    data = tmp_path / "reviews.csv"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert train(tmp_path) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list((tmp_path / "runs").iterdir()) == []


def test_bad_yaml_config_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n  lr: [1,\n")
    assert main(["train", "sentiment", "--config", str(bad), "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "invalid YAML" in err


def test_config_list_and_show(capsys):
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert "sentiment" in out and "text-classification" in out
    assert main(["config", "show", "sentiment", "--set", "train.lr=0.01"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.01" in out and "dataset: rotten-tomatoes" in out and "monitor: accuracy" in out
    for cmd in ("train", "predict", "evaluate", "config"):
        assert main([cmd, "--help"]) == 0
        assert "example" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    """Data-parallel training (gloo, 2 CPU processes) ≈ one process on the same global batches."""
    if shutil.which("torchrun") is None and not os.path.exists(
        os.path.join(os.path.dirname(sys.executable), "torchrun")
    ):
        pytest.skip("torchrun not installed")
    data = write_reviews(tmp_path / "reviews.csv", n=256)
    common = ["text-classification", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--quiet", "--set",
              "train.epochs=2", "train.batch_size=32", "train.optimizer=sgd", "train.lr=0.5", *SMALL[:3]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "rnnkit", "train", *common, "--name", "one"], env=env)
    assert single.returncode == 0
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    multi = subprocess.run(
        [torchrun, "--nproc_per_node=2", "--master_port=29511", "-m", "rnnkit", "train", *common, "--name", "two"],
        env=env,
    )
    assert multi.returncode == 0
    a = load_file(tmp_path / "runs" / "one" / "model.safetensors")
    b = load_file(tmp_path / "runs" / "two" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-4, rtol=1e-3)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["one", "two"]  # rank 1 wrote nothing
