"""``rnnkit compare``: grid syntax, a 2 x 2 comparison end to end, ranking on validation only, continuing an
interrupted comparison, parallel processes, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import text_fixtures
from rnnkit.cli.main import main
from rnnkit.studies.compare import Axis, grid_settings, parse_grid, parse_seeds
from rnnkit.tasks import runner

TINY = ["train.epochs=1", "model.embed_dim=8", "model.hidden_size=8", "train.batch_size=32", "train.lr=0.02"]


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished 2 x 2 comparison (cell lstm / gru, seeds 0 and 1) in ``<tmp>/runs/cmp``, trained once for the
    module; tests that change it work on a copy (:func:`copy_of`)."""
    root = tmp_path_factory.mktemp("compare")
    reviews = text_fixtures.write_reviews(root / "reviews.csv", n=120)
    assert main(compare_argv(reviews, root / "runs")) == 0
    return root


def copy_of(done: Path, tmp_path: Path) -> Path:
    shutil.copytree(done / "runs", tmp_path / "runs")
    return tmp_path / "runs"


def compare_argv(reviews: Path, runs: Path, *extra: str, grid=("model.cell=lstm,gru",), seeds="2") -> list[str]:
    """A tiny comparison's command line; ``extra`` options come after the defaults here, so they win."""
    return ["compare", "text-classification", "--data", str(reviews), "--runs-dir", str(runs), "--name", "cmp",
            "--quiet", "--seeds", seeds, *extra, "--grid", *grid, "--set", *TINY]  # fmt: skip


@pytest.fixture
def count_trains(monkeypatch):
    """Record every ``runner.train`` call of a comparison (they still train)."""
    calls = []
    real = runner.train

    def spy(*args, **kwargs):
        calls.append(kwargs.get("resume") or Path(kwargs["runs_dir"]) / kwargs["name"])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train", spy)
    return calls


def test_grid_and_seeds_syntax():
    axes = parse_grid(["model.cell=lstm,gru,rnn_tanh", "model.pooling = max, attention"])
    assert axes == [Axis("model.cell", ("lstm", "gru", "rnn_tanh")), Axis("model.pooling", ("max", "attention"))]
    settings = grid_settings(axes)
    assert [s.label for s in settings][:3] == ["cell=lstm,pooling=max", "cell=lstm,pooling=attention",
                                              "cell=gru,pooling=max"]  # fmt: skip
    assert settings[1].overrides == ("model.cell=lstm", "model.pooling=attention") and len(settings) == 6
    same_tail = grid_settings(parse_grid(["model.dropout=0.1,0.2", "data.dropout=0"]))
    assert same_tail[0].label == "model.dropout=0.1,data.dropout=0"  # a shared last part: the whole key
    assert [s.label for s in grid_settings([])] == ["default"]
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("0, 5,9") == [0, 5, 9] and parse_seeds(2) == [0, 1]


def test_a_2x2_comparison_ranks_on_validation_and_shows_test(done, tmp_path, capsys):
    runs = copy_of(done, tmp_path)
    assert main(compare_argv(done / "reviews.csv", runs)) == 0  # every run finished: the table again
    out = capsys.readouterr().out
    folder = runs / "cmp"
    results = json.loads((folder / "results.json").read_text())
    assert (folder / "results.md").read_text().count("| cell=") == 2 and (folder / "results.png").stat().st_size > 0
    assert results["metric"] == "loss" and results["mode"] == "min" and results["ranked_by"] == "validation"
    assert {r["setting"] for r in results["settings"]} == {"cell=lstm", "cell=gru"}
    means = [r["validation"]["mean"] for r in results["settings"]]
    assert means == sorted(means)  # loss: lowest first
    for row in results["settings"]:
        assert row["seeds"] == [0, 1] and row["parameters"] > 0 and row["seconds_per_epoch"] > 0
        for run in row["runs"]:
            meta = json.loads((Path(run["run"]) / "meta.json").read_text())
            assert meta["seed"] == run["seed"] and Path(run["run"]).name == f"seed-{run['seed']}"
            assert run["validation"] == meta["metrics"]["best_validation"]["val_loss"]
            assert run["test"] == meta["metrics"]["test"]["loss"]
    lstm, gru = sorted(results["settings"], key=lambda r: r["setting"] != "cell=lstm")
    assert lstm["parameters"] > gru["parameters"]  # four gates against three
    test = results["test_between_best_two"]
    assert test["method"] == "welch-t" and test["first"] == results["settings"][0]["setting"]
    assert "| 1 | " + results["settings"][0]["setting"] in out and "Welch's t-test (scipy)" in out


def test_test_metrics_never_change_the_ranking(done, tmp_path, capsys, count_trains):
    runs = copy_of(done, tmp_path)
    first = json.loads((runs / "cmp" / "results.json").read_text())
    order = [r["setting"] for r in first["settings"]]
    for rank, row in enumerate(first["settings"]):  # make the test losses say the opposite of validation
        for run in row["runs"]:
            meta_path = runs / "cmp" / row["setting"] / f"seed-{run['seed']}" / "meta.json"
            meta = json.loads(meta_path.read_text())
            meta["metrics"]["test"]["loss"] = 10.0 - rank
            meta_path.write_text(json.dumps(meta))
    assert main(compare_argv(done / "reviews.csv", runs)) == 0
    again = json.loads((runs / "cmp" / "results.json").read_text())
    assert count_trains == []  # every run had finished: nothing trained
    assert [r["setting"] for r in again["settings"]] == order
    assert [r["test"]["mean"] for r in again["settings"]] == [10.0 - i for i in range(len(order))]


def test_a_comparison_continues_where_it_stopped(done, tmp_path, capsys, count_trains):
    runs = copy_of(done, tmp_path)
    folder = runs / "cmp"
    unfinished = folder / "cell=gru" / "seed-0"
    (unfinished / "meta.json").unlink()  # as if killed after its last checkpoint
    assert main(compare_argv(done / "reviews.csv", runs, grid=("model.cell=lstm,gru",), seeds="0,1,7")) == 0
    assert sorted(map(str, count_trains)) == sorted(
        map(str, [unfinished, folder / "cell=lstm" / "seed-7", folder / "cell=gru" / "seed-7"])
    )
    assert all((folder / s / f"seed-{n}" / "meta.json").is_file() for s in ("cell=lstm", "cell=gru") for n in (0, 1, 7))
    assert json.loads((folder / "compare.json").read_text())["seeds"] == [0, 1, 7]

    assert main(compare_argv(done / "reviews.csv", runs, grid=("model.cell=lstm,rnn_tanh",))) == 2
    assert "holds another comparison (different grid)" in capsys.readouterr().err


def test_an_interrupted_run_resumes_to_the_same_weights(done, tmp_path, monkeypatch, capsys, count_trains):
    from rnnkit.tasks import text_classification

    original = text_classification.TextClassification.trainer_task
    steps = {"n": 0}

    def interrupted(self):
        task = original(self)
        inner = task.train_step

        def step(model, batch, carry):
            steps["n"] += 1
            if steps["n"] == 5:  # the second batch of the second run (3 batches an epoch)
                raise KeyboardInterrupt
            return inner(model, batch, carry)

        task.train_step = step
        return task

    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", interrupted)
    argv = compare_argv(done / "reviews.csv", tmp_path, "--set", "train.checkpoint_every=1", grid=("model.cell=gru",))
    assert main(argv) == 130
    assert "the same rnnkit compare command again" in capsys.readouterr().err
    cut = tmp_path / "cmp" / "cell=gru" / "seed-1"
    assert (cut / "checkpoints" / "latest").exists() and not (cut / "meta.json").exists()
    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", original)
    count_trains.clear()
    assert main(argv) == 0
    assert count_trains == [cut]  # seed 0 had finished: only the cut run, resumed from its checkpoint
    a = load_file(done / "runs" / "cmp" / "cell=gru" / "seed-1" / "model.safetensors")  # trained without a break
    b = load_file(cut / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # not real data, but a process server and two workers importing torch: ~15 s on one core
def test_parallel_processes_train_every_run(tmp_path, capsys):
    reviews = text_fixtures.write_reviews(tmp_path / "reviews.csv", n=120)
    assert main(compare_argv(reviews, tmp_path / "runs", "--jobs", "2", grid=("model.cell=gru",))) == 0
    results = json.loads((tmp_path / "runs" / "cmp" / "results.json").read_text())
    (row,) = results["settings"]
    assert row["seeds"] == [0, 1] and row["validation"]["n"] == 2
    assert results["test_between_best_two"] is None  # one setting: nothing to test against


@pytest.mark.parametrize(
    "grid, extra, message",
    [
        (["model.cell"], [], "--grid expects KEY.PATH=V1,V2"),
        (["model.cell="], [], "empty value"),
        (["model.cell=lstm,,gru"], [], "empty value"),
        (["model.cell=lstm,lstm"], [], "listed twice"),
        (["model.cell=lstm", "model.cell=gru"], [], "given twice"),
        (["train.seed=1,2"], [], "seeds are --seeds"),
        (["model.cell=lstm,bogus"], [], "model.cell"),
        (["model.nope=1,2"], [], "nope"),
        (["model.cell=lstm"], ["--seeds", "x,y"], "--seeds expects"),
        (["model.cell=lstm"], ["--seeds", "0"], "at least one seed"),
        (["model.cell=lstm"], ["--jobs", "0"], "positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, grid, extra, message):
    reviews = text_fixtures.write_reviews(tmp_path / "reviews.csv", n=20)
    assert main(compare_argv(reviews, tmp_path / "runs", *extra, grid=grid)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[-1] and "Traceback" not in err  # one line (argparse: after its usage)
    assert not any((tmp_path / "runs").glob("cmp/*/seed-*"))  # nothing trained
