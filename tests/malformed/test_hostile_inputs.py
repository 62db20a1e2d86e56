"""Hostile input (issue #20): configs, ``--set`` values, command-line values and data files made to hang, exhaust
memory or crash rnnkit. Each case is its repro, run in-process: exit status 2, one short line on stderr naming
the file (and line) or the option, no traceback, no run folder left behind, a given run folder unchanged.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.config import MAX_YAML_DEPTH, MAX_YAML_NODES
from rnnkit.data.textfile import MAX_LINE_BYTES
from rnnkit.fileio import sha256_file
from rnnkit.runfolder import MAX_RUN_NAME

SMALL = ["model.embed_dim=8", "model.hidden_size=8", "train.batch_size=16"]

#: 288 bytes of YAML that expand to 9**9 (387 million) strings: the "billion laughs"
BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)
#: the same bomb as one ``--set`` value (a flow mapping)
BOMB_VALUE = "{" + BOMB.strip().replace("\n", ", ") + "}"


def write_reviews(path: Path, n: int = 60) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([f"{'a great' if i % 2 else 'a dull'} film number {i}", "pos" if i % 2 else "neg"])
    return path


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, argv: list[str], *expected: str) -> str:
    """Run ``rnnkit argv``: exit 2, one line on stderr holding each of ``expected``, nothing on stdout."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert code == 2, err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err[:2000]
    assert "Traceback" not in err and len(err) < 500, err[:2000]
    for text in expected:
        assert text in err, err
    assert captured.out == ""
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One small trained text-classification run (copied by the tests that change it)."""
    tmp = tmp_path_factory.mktemp("hostile")
    data = write_reviews(tmp / "reviews.csv")
    argv = ["train", "text-classification", "--data", str(data), "--runs-dir", str(tmp / "runs"), "--name", "done",
            "--quiet", "--set", "train.epochs=1", "--set", *SMALL]  # fmt: skip
    assert main(argv) == 0
    return tmp / "runs" / "done"


def test_the_run_got_both_set_groups(run):
    """``--set a=1 --set b=2``: both apply (argparse used to keep only the last group, silently)."""
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["epochs"] == 1 and config["model"]["hidden_size"] == 8


@pytest.fixture
def data(tmp_path) -> Path:
    return write_reviews(tmp_path / "reviews.csv")


def train_argv(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "text-classification", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), "--quiet",
            "--set", "train.epochs=1", *SMALL, *extra]  # fmt: skip


def edited_copy(run: Path, dest: Path, name: str, content: str) -> Path:
    """A copy of ``run`` whose file ``name`` holds ``content``, with meta.json's SHA-256 of it updated where it
    records one, as someone editing the run by hand would (so the checksum check passes and the reader runs)."""
    import shutil

    copy = Path(shutil.copytree(run, dest))
    meta = json.loads((copy / "meta.json").read_text())
    (copy / name).write_text(content)
    if name in meta["files"]:
        meta["files"][name]["sha256"] = sha256_file(copy / name)
        (copy / "meta.json").write_text(json.dumps(meta))
    return copy


def assert_no_run_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


# -- YAML: alias bombs, deep nesting, size -------------------------------------------------------------------


def test_alias_bomb_in_a_config_file_is_refused_at_once(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB.encode()) < 400
    one_line_error(capsys, ["config", "show", "text-classification", "--config", str(bomb)],
                   f"{bomb}:", "refused YAML", f"more than {MAX_YAML_NODES:,} values")  # fmt: skip


def test_alias_bomb_in_set_is_refused(tmp_path, capsys, data):
    one_line_error(capsys, ["config", "show", "text-classification", "--set", f"train.x={BOMB_VALUE}"],
                   "--set train.x", "refused YAML")  # fmt: skip
    one_line_error(capsys, train_argv(tmp_path, data, f"model.hidden_size={BOMB_VALUE}"), "--set model.hidden_size")
    assert_no_run_folder(tmp_path)


def test_alias_bomb_in_a_runs_config_yaml(run, tmp_path, capsys):
    """A run folder's config.yaml is validated, not checksummed: a bomb there must not hang predict/evaluate."""
    copy = edited_copy(run, tmp_path / "run", "config.yaml", BOMB)
    before = tree(copy)
    one_line_error(capsys, ["predict", str(copy), "a fine film"], str(copy / "config.yaml"), "YAML")
    one_line_error(capsys, ["evaluate", str(copy)], str(copy / "config.yaml"), "YAML")
    assert tree(copy) == before


def test_self_referring_alias_and_deep_nesting_are_refused(tmp_path, capsys):
    loop = tmp_path / "loop.yaml"
    loop.write_text("train: &t\n  lr: 0.1\n  more: *t\n")
    one_line_error(capsys, ["config", "show", "text-classification", "--config", str(loop)],
                   str(loop), "alias refers to the value that contains it")  # fmt: skip
    deep = tmp_path / "deep.yaml"
    deep.write_text("train: " + "[" * 10_000 + "]" * 10_000 + "\n")
    one_line_error(capsys, ["config", "show", "text-classification", "--config", str(deep)],
                   f"{deep}:1", f"nested deeper than {MAX_YAML_DEPTH} levels")  # fmt: skip
    one_line_error(capsys, ["config", "show", "text-classification", "--set", "train.lr=" + "[" * 5000],
                   "--set train.lr", "nested deeper")  # fmt: skip


def test_huge_config_file_is_refused_before_it_is_parsed(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("train:\n  lr: 0.1\n" + "# padding\n" * 200_000)
    one_line_error(capsys, ["config", "show", "text-classification", "--config", str(big)], str(big), "larger than")


def test_anchors_within_the_budget_still_work(tmp_path, capsys):
    ok = tmp_path / "ok.yaml"
    ok.write_text("model:\n  hidden_size: &n 12\n  embed_dim: *n\ntrain:\n  epochs: 2\n")
    capsys.readouterr()
    assert main(["config", "show", "text-classification", "--config", str(ok)]) == 0
    out = capsys.readouterr().out
    assert "hidden_size: 12" in out and "embed_dim: 12" in out


def test_long_values_are_cut_in_validation_errors(tmp_path, capsys, data):
    err = one_line_error(capsys, train_argv(tmp_path, data, "train.lr=" + "x" * 100_000), "train.lr", "...")
    assert err.count("x") < 200
    err = one_line_error(capsys, train_argv(tmp_path, data, "train." + "k" * 10_000 + "=1"), "unknown key")
    assert err.count("k") < 200
    assert_no_run_folder(tmp_path)


# -- JSON nested too deeply --------------------------------------------------------------------------------


def test_deeply_nested_jsonl_input(tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"text": "a fine film", "label": "pos"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    one_line_error(capsys, train_argv(tmp_path, deep), f"{deep}:2", "nested too deeply")
    assert_no_run_folder(tmp_path)


def test_deeply_nested_meta_json(run, tmp_path, capsys):
    copy = edited_copy(run, tmp_path / "run", "meta.json", "[" * 100_000 + "]" * 100_000)
    one_line_error(capsys, ["predict", str(copy), "a fine film"], str(copy / "meta.json"), "JSON")


def test_recursion_error_anywhere_is_still_one_line(run, capsys, monkeypatch):
    """The last guard (cli/main.py) for a reader of nested JSON/YAML that does not catch RecursionError itself."""
    from rnnkit.tasks import runner

    def deep(*args, **kwargs):
        return json.loads("[" * 100_000 + "]" * 100_000)

    monkeypatch.setattr(runner, "predict", deep)
    one_line_error(capsys, ["predict", str(run), "a fine film"], "nested too deeply")


# -- a broken tokenizer.json --------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["{}", '{"model": {"type": "WordLevel"}}', "not json", "[" * 100_000])
def test_broken_tokenizer_json_in_a_run(run, tmp_path, capsys, content):
    """The tokenizers library raises a bare Exception on a bad file: one line naming the file."""
    copy = edited_copy(run, tmp_path / "run", "tokenizer.json", content)
    tokenizer = copy / "tokenizer.json"
    one_line_error(capsys, ["predict", str(copy), "a fine film"], str(tokenizer), "not a valid tokenizer.json")


# -- command-line values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gist"),
    [("r" * 300, f"longer than {MAX_RUN_NAME} characters"), ("run\x1b[2J\nname", "printable characters only"),
     ("tab\there", "printable")],
)  # fmt: skip
def test_bad_run_names(tmp_path, capsys, data, name, gist):
    err = one_line_error(capsys, [*train_argv(tmp_path, data), "--name", name], "invalid run name", gist)
    assert "\x1b" not in err
    assert_no_run_folder(tmp_path)


def test_runs_dir_under_a_regular_file(tmp_path, capsys, data):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for runs_dir in (blocker, blocker / "runs"):
        argv = ["train", "text-classification", "--data", str(data), "--runs-dir", str(runs_dir), "--quiet"]
        one_line_error(capsys, argv, str(runs_dir), "not a folder")
        one_line_error(capsys, ["quickstart", "--runs-dir", str(runs_dir), "--quiet"], str(runs_dir), "not a folder")
    assert blocker.read_text() == ""


@pytest.mark.parametrize(
    ("option", "gist"),
    [(["--temperature", "inf"], "temperature: Input should be a finite number"),
     (["--temperature", "nan"], "temperature: Input should be a finite number"),
     (["--temperature", "-1"], "temperature: Input should be greater than 0"),
     (["--top-p", "nan"], "top_p"),
     (["--seed", str(10**30)], "seed: Input should be less than or equal to 9223372036854775807"),
     (["--seed", "-5"], "seed: Input should be greater than or equal to 0")],
)  # fmt: skip
def test_generate_options_are_checked_before_anything_is_loaded(tmp_path, capsys, option, gist):
    one_line_error(capsys, ["generate", str(tmp_path / "no-run"), "x", *option], "generate options", gist)


def test_predict_prints_strict_json_for_nan(run, capsys, monkeypatch):
    """A model output that is NaN or infinite prints as null: every line is valid JSON (json.loads with the
    non-standard constants refused)."""
    from rnnkit.tasks import runner

    rows = [{"label": "pos", "score": math.nan, "probabilities": {"pos": math.inf, "neg": -math.inf}}]
    monkeypatch.setattr(runner, "predict", lambda *a, **k: rows)
    capsys.readouterr()
    assert main(["predict", str(run), "a fine film"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    assert [json.loads(line, parse_constant=refuse) for line in lines] == [
        {"label": "pos", "score": None, "probabilities": {"pos": None, "neg": None}}
    ]


def test_evaluate_prints_strict_json_for_nan(run, capsys, monkeypatch):
    from rnnkit.tasks import runner

    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: {"loss": math.nan, "accuracy": 0.5})
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    assert json.loads(capsys.readouterr().out, parse_constant=float) == {"loss": None, "accuracy": 0.5}


# -- files that are not regular files ---------------------------------------------------------------------------


def _without_blocking(argv: list[str]) -> int:
    """``main(argv)`` in a thread that must finish within 60 s (opening a FIFO would block for ever)."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    thread.start()
    thread.join(60)
    assert result, "rnnkit blocked on a FIFO"
    return result[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_as_data_config_or_file_is_not_opened(run, tmp_path, capsys):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    cases = [
        (train_argv(tmp_path, fifo), "not a regular file"),
        (["train", "text-classification", "--config", str(fifo), "--data", str(fifo)], "not a regular file"),
        (["predict", str(run), "--file", str(fifo)], "not a regular file"),
        (["generate", str(run), "--file", str(fifo)], "not a regular file"),
        (["train", "captioning", "--data", str(fifo), "--runs-dir", str(tmp_path / "runs"), "--quiet"],
         "not a regular file"),
    ]  # fmt: skip
    for argv, gist in cases:
        capsys.readouterr()
        assert _without_blocking(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(fifo) in err and gist in err, err
    assert_no_run_folder(tmp_path)
    from rnnkit.data.images import read_image
    from rnnkit.errors import RnnkitError

    with pytest.raises(RnnkitError, match="fifo.csv: not a regular file"):
        read_image(fifo, (8, 8))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_as_input_file(run, tmp_path, capsys):
    one_line_error(capsys, ["predict", str(run), "--file", "/dev/zero"], "/dev/zero", "not a regular file")
    one_line_error(capsys, train_argv(tmp_path, Path("/dev/zero")), "/dev/zero", "not a regular file")
    assert_no_run_folder(tmp_path)


# -- lines too long to tokenize ---------------------------------------------------------------------------------


def test_line_longer_than_the_limit(run, tmp_path, capsys):
    """The issue's repro has a 200 MB line (> 6.7 GB when tokenized); a line just over the limit shows the check."""
    long = tmp_path / "long.csv"
    with open(long, "wb") as f:
        f.write(b"text,label\na fine film,pos\n")
        f.write(b"w " * (MAX_LINE_BYTES // 2) + b"x,neg\n")
        f.write(b"a dull film,neg\n")
    one_line_error(capsys, train_argv(tmp_path, long), f"{long}:3", f"line longer than {MAX_LINE_BYTES:,} bytes")
    assert_no_run_folder(tmp_path)
    one_line_error(capsys, ["predict", str(run), "--file", str(long)], f"{long}:3", "line longer than")
    lm = ["train", "language-model", "--data", str(long), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    one_line_error(capsys, lm, f"{long}:3", "line longer than")
    assert_no_run_folder(tmp_path)


def test_csv_field_larger_than_the_limit(tmp_path, capsys):
    """A quoted CSV field over many short lines: each line is short, the record is not."""
    big = tmp_path / "field.csv"
    with open(big, "wb") as f:
        f.write(b'text,label\n"' + b"word\n" * (MAX_LINE_BYTES // 5 + 1) + b'",pos\n')
    one_line_error(capsys, train_argv(tmp_path, big), str(big), "field larger than field limit")
    assert_no_run_folder(tmp_path)


@pytest.mark.parametrize("layout", ["long line across chunks", "long last line", "long line in a chunk", "fine"])
def test_line_length_check_names_the_right_line(tmp_path, layout):
    """Lines crossing the checker's 1 MiB chunks are measured whole, and the first long one is named."""
    from rnnkit.data.textfile import check_line_lengths
    from rnnkit.errors import RnnkitError

    mib = 1 << 20
    lines = {
        "long line across chunks": [b"a" * (mib - 3), b"b" * 10, b"c" * (mib + 5), b"d"],
        "long last line": [b"a" * 10] * 3 + [b"z" * (2 * mib + 1)],
        "long line in a chunk": [b"a" * 10, b"b" * 5000, b"c" * 10],
        "fine": [b"a" * 4000, b"b" * 4096, b""],
    }[layout]
    limit = 4096
    path = tmp_path / "lines.txt"
    path.write_bytes(b"\n".join(lines) + (b"\n" if layout != "long last line" else b""))
    expected = next((i for i, line in enumerate(lines, 1) if len(line) > limit), None)
    if expected is None:
        check_line_lengths(path, limit)
    else:
        with pytest.raises(RnnkitError, match=f"lines.txt:{expected}: line longer than 4,096 bytes"):
            check_line_lengths(path, limit)
