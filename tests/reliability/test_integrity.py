"""Integrity (issue #9, item 2): ``meta.json`` records the SHA-256 of every file a run loads; a truncated, altered
or missing file, a meta.json with a wrong hash and an altered checkpoint are one-line errors (exit status 2)
that leave the folder as it was; no load path unpickles or runs anything from the run folder."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal

import pytest
import torch
import yaml
from reliability_helpers import train_argv

from rnnkit.cli.main import main
from rnnkit.fileio import sha256_file
from rnnkit.tasks import text_classification
from rnnkit.tasks.runner import load_run
from rnnkit.training import latest_checkpoint


def tree(folder) -> dict[str, str]:
    """Every file under ``folder`` -> its SHA-256 (what "untouched" means)."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err, err
    return err


@pytest.fixture
def finished(reference, tmp_path):
    """A copy of the reference run (finished, meta.json written)."""
    return shutil.copytree(reference["run"], tmp_path / "run")


@pytest.fixture
def interrupted(reviews, tmp_path, monkeypatch):
    """An unfinished run, stopped in-process by a SIGINT in the middle of epoch 1 (checkpoint at step 7)."""
    original = text_classification.TextClassification.trainer_task
    calls = {"n": 0}

    def signalling(self):
        task = original(self)
        inner = task.train_step

        def step(model, batch, carry):
            calls["n"] += 1
            if calls["n"] == 7:
                os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler: stop after this step
            return inner(model, batch, carry)

        task.train_step = step
        return task

    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", signalling)
    assert main(train_argv(reviews, tmp_path / "runs", "cut")) == 130
    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", original)
    run = tmp_path / "runs" / "cut"
    assert latest_checkpoint(run / "checkpoints").name == "step-00000007"
    return run


def test_meta_records_the_sha256_of_every_file_the_run_loads(finished):
    files = json.loads((finished / "meta.json").read_text())["files"]
    assert {"model.safetensors", "best.safetensors", "tokenizer.json"} <= set(files)
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((finished / name).read_bytes()).hexdigest()
    assert load_run(finished).model is not None


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _flip_last_byte(p):
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01  # a weight's low bit: still a valid safetensors/JSON file, different content
    p.write_bytes(bytes(data))


def _wrong_hash(meta_path, name):
    meta = json.loads(meta_path.read_text())
    meta["files"][name]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))


DAMAGE = {
    "truncated weights": ("model.safetensors", lambda run: _truncate(run / "model.safetensors"), "SHA-256"),
    "altered weight byte": ("model.safetensors", lambda run: _flip_last_byte(run / "model.safetensors"), "SHA-256"),
    "missing weights": ("model.safetensors", lambda run: (run / "model.safetensors").unlink(), "missing"),
    "altered tokenizer": ("tokenizer.json", lambda run: _flip_last_byte(run / "tokenizer.json"), "SHA-256"),
    "missing tokenizer": ("tokenizer.json", lambda run: (run / "tokenizer.json").unlink(), "missing"),
    "wrong hash in meta.json": (
        "model.safetensors",
        lambda run: _wrong_hash(run / "meta.json", "model.safetensors"),
        "SHA-256",
    ),
    "truncated meta.json": ("meta.json", lambda run: _truncate(run / "meta.json"), "invalid JSON"),
    "meta.json without files": (
        "meta.json",
        lambda run: (run / "meta.json").write_text(
            json.dumps({k: v for k, v in json.loads((run / "meta.json").read_text()).items() if k != "files"})
        ),
        "'files'",
    ),
    "meta.json not an object": ("meta.json", lambda run: (run / "meta.json").write_text("[1, 2]"), "JSON object"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_damaged_run_is_a_one_line_error(finished, reviews, capsys, case, command):
    name, damage, message = DAMAGE[case]
    damage(finished)
    before = tree(finished)
    argv = ["predict", str(finished), "a great film"]
    if command == "evaluate":
        argv = ["evaluate", str(finished), "--data", str(reviews)]
    assert main(argv) == 2
    one_line_error(capsys, str(finished / name), message)
    assert tree(finished) == before


def _alter_trainer_json(ckpt):
    meta = json.loads((ckpt / "trainer.json").read_text())
    meta["trainer"]["epoch"] += 1  # plausible, valid JSON: only the digest can tell
    (ckpt / "trainer.json").write_text(json.dumps(meta))


CHECKPOINT_DAMAGE = {
    "weights byte": (lambda c: _flip_last_byte(c / "model.safetensors"), "model.safetensors is missing or does not"),
    "weights truncated": (lambda c: _truncate(c / "model.safetensors"), "does not match its SHA-256"),
    "optimizer missing": (lambda c: (c / "optimizer.safetensors").unlink(), "optimizer.safetensors is missing"),
    "trainer.json altered": (_alter_trainer_json, "does not match its digest"),
    "trainer.json truncated": (lambda c: _truncate(c / "trainer.json"), "trainer.json is missing or unreadable"),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_DAMAGE))
def test_an_altered_checkpoint_is_a_one_line_error_and_the_run_stays_as_it_was(interrupted, capsys, case):
    damage, message = CHECKPOINT_DAMAGE[case]
    ckpt = latest_checkpoint(interrupted / "checkpoints")
    capsys.readouterr()
    damage(ckpt)
    before = tree(interrupted)
    assert main(["train", "--resume", str(interrupted), "--quiet"]) == 2
    one_line_error(capsys, str(ckpt), message)
    assert tree(interrupted) == before


def _forbidden(*args, **kwargs):
    raise AssertionError("a load path tried to unpickle or evaluate something")


def test_no_load_path_unpickles_or_runs_code(interrupted, finished, reviews, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "executed"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    for folder in (finished, interrupted):  # bait a loader could fall for
        (folder / "__init__.py").write_text(payload)
        (folder / "model.pkl").write_bytes(pickle.dumps({"weights": [1.0]}))
        (folder / "model.pt").write_bytes(b"not a torch file")
    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (yaml, "unsafe_load"), (yaml, "full_load")]:  # fmt: skip
        monkeypatch.setattr(module, name, _forbidden)
    safe_loaders = (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    yaml_load = yaml.load

    def only_safe_yaml(stream, Loader):  # noqa: N803 - yaml's own argument name
        # rnnkit's LimitedLoader (config.py) is a SafeLoader subclass that adds limits, no constructors
        if not (isinstance(Loader, type) and issubclass(Loader, safe_loaders)):
            _forbidden()
        if Loader.yaml_constructors is not yaml.SafeLoader.yaml_constructors and Loader not in safe_loaders:
            _forbidden()
        return yaml_load(stream, Loader)

    monkeypatch.setattr(yaml, "load", only_safe_yaml)
    run = load_run(finished)
    assert run.model is not None
    assert main(["predict", str(finished), "a great film"]) == 0
    assert main(["evaluate", str(finished), "--data", str(reviews)]) == 0
    assert main(["train", "--resume", str(interrupted), "--quiet"]) == 0  # checkpoint -> finished run
    assert (interrupted / "meta.json").exists()
    assert not marker.exists()
    capsys.readouterr()
