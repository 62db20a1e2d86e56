"""A run folder is untrusted input (docs/reliability.md, "Run folders from someone else"): nothing in it makes
rnnkit read outside it, write outside where the user said or through a link, or build a model its weights do
not hold. Each test is one attack, answered with one line on stderr, exit status 2, and nothing written."""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys

import pytest
from reliability_helpers import train_argv

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.fileio import sha256_file
from rnnkit.runfolder import RunLock, weights_header
from rnnkit.tasks.runner import load_run

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def tree(folder) -> dict[str, str]:
    """Every entry under ``folder`` -> its SHA-256 (files), its target (links) or "dir"."""
    out = {}
    for p in sorted(folder.rglob("*")):
        key = str(p.relative_to(folder))
        out[key] = f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else sha256_file(p)
    return out


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def trained(reviews, tmp_path_factory):
    """One tiny finished text-classification run (trained on the user file ``reviews``), copied per test."""
    runs = tmp_path_factory.mktemp("trust")
    assert main(train_argv(reviews, runs, "shared", "--set", "train.epochs=1")) == 0
    return runs / "shared"


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "shared", symlinks=True)


def edit_meta(run, change) -> None:
    meta = json.loads((run / "meta.json").read_text())
    change(meta)
    (run / "meta.json").write_text(json.dumps(meta))


def predict(run) -> int:
    return main(["predict", str(run), "a great film"])


# -- every file a run folder names is confined to it ----------------------------------------------------------
@pytest.mark.parametrize(
    "value", ["../outside/tokenizer.json", "/etc/hostname", "sub/tokenizer.json", ".hidden", "two\nlines.json"]
)
def test_a_task_state_path_outside_the_run_is_refused(run, capsys, value):
    (run.parent / "outside").mkdir()
    shutil.copy(run / "tokenizer.json", run.parent / "outside" / "tokenizer.json")
    edit_meta(run, lambda m: m["task_state"].update(tokenizer=value))
    before = tree(run)
    assert predict(run) == 2
    one_line_error(capsys, "task_state.tokenizer", repr(value), "not a plain file name")
    assert tree(run) == before


def test_a_task_state_file_without_a_digest_is_refused(run, capsys):
    shutil.copy(run / "tokenizer.json", run / "other.json")
    edit_meta(run, lambda m: m["task_state"].update(tokenizer="other.json"))
    assert predict(run) == 2
    one_line_error(capsys, "task_state.tokenizer", "'other.json' has no SHA-256")


def test_a_symlinked_tokenizer_is_refused_even_with_the_right_digest(run, tmp_path, capsys):
    outside = tmp_path / "elsewhere.json"
    shutil.copy(run / "tokenizer.json", outside)
    (run / "tokenizer.json").unlink()
    (run / "tokenizer.json").symlink_to(outside)  # same bytes, so the SHA-256 alone would pass
    assert predict(run) == 2
    one_line_error(capsys, str(run / "tokenizer.json"), "symbolic link")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["tokenizer.json", "model.safetensors", "config.yaml", "meta.json"])
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(run, capsys, name):
    (run / name).unlink()
    os.mkfifo(run / name)  # opening it for reading would wait forever for a writer
    assert predict(run) == 2
    one_line_error(capsys, str(run / name), "FIFO")


def test_a_folder_in_place_of_a_file_is_refused(run, capsys):
    (run / "tokenizer.json").unlink()
    (run / "tokenizer.json").mkdir()
    assert predict(run) == 2
    one_line_error(capsys, str(run / "tokenizer.json"), "a folder, not a regular file")


def test_config_yaml_is_covered_by_a_digest(run, capsys):
    files = json.loads((run / "meta.json").read_text())["files"]
    assert files["config.yaml"]["sha256"] == sha256_file(run / "config.yaml")
    with open(run / "config.yaml", "a") as f:
        f.write("description: altered\n")
    assert predict(run) == 2
    one_line_error(capsys, str(run / "config.yaml"), "SHA-256")


def test_a_run_from_before_config_digests_still_loads(run, capsys):
    edit_meta(run, lambda m: m["files"].pop("config.yaml"))  # what rnnkit wrote before it recorded one
    assert load_run(run).model is not None
    assert predict(run) == 0
    capsys.readouterr()


def test_an_oversized_meta_json_is_refused_before_it_is_parsed(run, capsys):
    with open(run / "meta.json", "ab") as f:
        f.truncate(17 << 20)  # sparse: 17 MB of NUL bytes after the JSON
    assert predict(run) == 2
    one_line_error(capsys, str(run / "meta.json"), "bytes")


def test_a_tokenizer_over_the_size_cap_is_refused_before_it_is_parsed(run, monkeypatch, capsys):
    from rnnkit import runfolder

    monkeypatch.setattr(runfolder, "STATE_FILE_MAX_BYTES", 100)  # the real cap is 256 MB: too big to write here
    assert predict(run) == 2
    one_line_error(capsys, str(run / "tokenizer.json"), "at most 100")


# -- sizes are checked before a model is built ----------------------------------------------------------------
def test_a_huge_layer_count_is_refused_from_the_header(run, capsys):
    edit_meta(run, lambda m: m["model"]["config"]["encoder"].update(num_layers=1_000_000))
    assert predict(run) == 2
    one_line_error(capsys, "model.config.encoder.num_layers=1000000", "tensors")


def test_a_hidden_size_the_weights_do_not_hold_is_refused(run, capsys):
    edit_meta(run, lambda m: m["model"]["config"]["encoder"].update(hidden_size=12000))
    assert predict(run) == 2
    one_line_error(capsys, str(run / "meta.json"), "model.config makes", "the weights hold")


def test_a_deeply_nested_model_config_is_one_line(run, capsys):
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    edit_meta(run, lambda m: m["model"]["config"].update(extra=deep))
    assert predict(run) == 2
    one_line_error(capsys, str(run / "meta.json"), "nested more than 32 levels")


def test_a_label_map_that_does_not_fit_the_output_layer_is_refused(run, capsys):
    edit_meta(run, lambda m: m["task_state"]["labels"].append("neutral"))
    assert predict(run) == 2
    one_line_error(capsys, "task_state.labels has 3 entries", "model.config.num_classes", "has 2")


def test_a_safetensors_header_that_lies_about_its_length_is_refused(run, capsys):
    weights = run / "model.safetensors"
    weights.write_bytes(struct.pack("<Q", 1 << 40) + weights.read_bytes()[8:])
    edit_meta(run, lambda m: m["files"]["model.safetensors"].update(sha256=sha256_file(weights)))
    assert predict(run) == 2
    one_line_error(capsys, str(weights), "bad header length")
    with pytest.raises(RnnkitError, match="bad header length"):
        weights_header(weights)


# -- evaluate reads no path the run folder names ----------------------------------------------------------------
def test_evaluate_of_a_run_on_a_user_file_needs_data(run, reviews, capsys):
    secret = run.parent / "secret.txt"
    secret.write_text("password=hunter2\n")
    config = (run / "config.yaml").read_text().replace(str(reviews), str(secret))
    (run / "config.yaml").write_text(config)
    edit_meta(run, lambda m: m["files"]["config.yaml"].update(sha256=sha256_file(run / "config.yaml")))
    assert main(["evaluate", str(run)]) == 2
    err = one_line_error(capsys, str(secret), "pass that file (or another) with --data")
    assert "hunter2" not in err
    assert main(["evaluate", str(run), "--data", str(reviews)]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out)


# -- export writes only new regular files where the user said -------------------------------------------------
def test_export_defaults_to_a_folder_in_the_current_directory(run, tmp_path, monkeypatch, capsys):
    before = tree(run)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    out = tmp_path / "shared-export"
    assert capsys.readouterr().out.splitlines() == [str(out / "model.pt"), str(out / "model.json")]
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.pt", "tokenizer.json"]
    assert sha256_file(out / "tokenizer.json") == sha256_file(run / "tokenizer.json")
    assert tree(run) == before  # nothing written into the run folder


def test_export_refuses_to_overwrite_unless_forced(run, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "tokenizer.json").write_text("mine")
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 2
    one_line_error(capsys, str(out / "tokenizer.json"), "exists", "--force")
    assert (
        sorted(p.name for p in out.iterdir()) == ["tokenizer.json"] and (out / "tokenizer.json").read_text() == "mine"
    )
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out), "--force"]) == 0
    assert sha256_file(out / "tokenizer.json") == sha256_file(run / "tokenizer.json")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("name", ["model.pt", "tokenizer.json", "model.json"])
def test_export_never_writes_through_a_symlink(run, tmp_path, capsys, name, force):
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep me")
    (out / name).symlink_to(victim)
    argv = ["export", str(run), "--format", "torchscript", "--out", str(out)] + (["--force"] if force else [])
    assert main(argv) == 2
    one_line_error(capsys, str(out / name), "symbolic link")
    assert victim.read_text() == "keep me" and os.listdir(out) == [name]


def test_export_copies_only_digested_files_named_in_task_state(run, tmp_path, capsys):
    edit_meta(run, lambda m: m["task_state"].update(extra="../../victim"))  # not a file key: never copied
    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(tmp_path / "out")) == ["model.json", "model.pt", "tokenizer.json"]
    assert json.loads((tmp_path / "out" / "model.json").read_text())["files"] == ["tokenizer.json"]


def test_export_out_under_a_regular_file_is_one_line(run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    for out in (tmp_path / "notes.txt" / "deeper", tmp_path / "notes.txt"):
        assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 2
        one_line_error(capsys, "--out", "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "x"


# -- --resume: no writing through links, one process at a time ------------------------------------------------
@pytest.fixture
def unfinished(run):
    """The run as if it had stopped after its last checkpoint: resumable."""
    for name in ("meta.json", "model.safetensors", "predictions.jsonl"):
        (run / name).unlink()
    return run


@pytest.mark.parametrize("name", ["train.log", "metrics.jsonl", "plots", "checkpoints/latest"])
def test_resume_refuses_a_symlink_in_the_run_folder(unfinished, tmp_path, capsys, name):
    victim = tmp_path / "victim"
    victim.mkdir() if name == "plots" else victim.write_text("keep me")
    target = unfinished / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.symlink_to(victim)
    before = tree(unfinished)
    assert main(["train", "--resume", str(unfinished), "--quiet"]) == 2
    one_line_error(capsys, str(target), "symbolic link")
    assert tree(unfinished) == before
    assert (list(victim.iterdir()) == []) if name == "plots" else victim.read_text() == "keep me"


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_a_second_resume_of_a_locked_run_is_refused(unfinished, capsys):
    with RunLock(unfinished):  # another process training into it (flock conflicts per open file)
        before = tree(unfinished)
        assert main(["train", "--resume", str(unfinished), "--quiet"]) == 2
        one_line_error(capsys, str(unfinished), f"run folder is in use by another process (pid {os.getpid()})")
        assert tree(unfinished) == before
        with pytest.raises(RnnkitError, match="in use by another process"):
            RunLock(unfinished).acquire()
    assert not (unfinished / ".lock").exists()  # released: the file goes with the lock
    assert main(["train", "--resume", str(unfinished), "--quiet"]) == 0
    assert (unfinished / "meta.json").is_file() and not (unfinished / ".lock").exists()
    capsys.readouterr()


def test_a_symlinked_lock_file_is_refused(unfinished, tmp_path, capsys):
    (tmp_path / "victim").write_text("keep me")
    (unfinished / ".lock").symlink_to(tmp_path / "victim")
    assert main(["train", "--resume", str(unfinished), "--quiet"]) == 2
    one_line_error(capsys, str(unfinished / ".lock"), "symbolic link")
    assert (tmp_path / "victim").read_text() == "keep me"


def test_a_new_run_is_locked_while_it_is_created(reviews, tmp_path, monkeypatch):
    from rnnkit.tasks import text_classification

    original, seen = text_classification.TextClassification.prepare, []

    def prepare(self, run_dir, reuse=False):  # in the middle of creating the run: another process tries
        with pytest.raises(RnnkitError, match=rf"in use by another process \(pid {os.getpid()}\)"):
            RunLock(run_dir).acquire()
        seen.append(run_dir)
        return original(self, run_dir, reuse)

    monkeypatch.setattr(text_classification.TextClassification, "prepare", prepare)
    assert main(train_argv(reviews, tmp_path / "runs", "new", "--set", "train.epochs=1")) == 0
    assert seen == [tmp_path / "runs" / "new"] and not (tmp_path / "runs" / "new" / ".lock").exists()
