"""``rnnkit tune``: the space syntax, a 3-trial search that continues from SQLite, pruning, the best config as a
recipe file, the test split left alone until ``--final``, and one-line errors for bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
import yaml

import text_fixtures
from rnnkit.cli.main import main
from rnnkit.studies.tune import Dimension, ReportEpochs, open_study, parse_space
from rnnkit.training import Trainer

TINY = ["train.epochs=2", "model.embed_dim=8", "model.hidden_size=8", "train.batch_size=32"]
SPACE = ["model.hidden_size=int:4:16:2", "train.lr=loguniform:1e-3:3e-2"]


def tune_argv(reviews: Path, *extra: str, trials: int = 3, space=SPACE) -> list[str]:
    """A tiny search's command line; ``extra`` options come after the defaults here, so they win."""
    runs = reviews.parent / "runs"
    return ["tune", "text-classification", "--data", str(reviews), "--runs-dir", str(runs), "--name", "search",
            "--quiet", "--trials", str(trials), *extra, "--space", *space, "--set", *TINY]  # fmt: skip


@pytest.fixture
def reviews(tmp_path) -> Path:
    return text_fixtures.write_reviews(tmp_path / "reviews.csv", n=120)


@pytest.fixture
def splits(monkeypatch):
    """The splits every ``Trainer.evaluate`` call is asked for."""
    asked = []
    real = Trainer.evaluate

    def spy(self, model, task, split="validation"):
        asked.append(split)
        return real(self, model, task, split)

    monkeypatch.setattr(Trainer, "evaluate", spy)
    return asked


def load(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="rnnkit", storage=f"sqlite:///{folder / 'study.db'}")


def test_space_syntax(tmp_path):
    dims = parse_space(["model.hidden_size=int:32:256", "train.lr=loguniform:1e-4:1e-2", "model.cell=choice:lstm,gru",
                        "model.num_layers=int:1:3:1", "model.dropout=float:0:0.5", "x.n=logint:8:64"])  # fmt: skip
    assert dims[0] == Dimension("model.hidden_size", "int", 32, 256)
    assert dims[1] == Dimension("train.lr", "float", 1e-4, 1e-2, log=True)
    assert dims[2].choices == ("lstm", "gru") and dims[3].step == 1 and dims[5].log and dims[5].kind == "int"
    assert [d.describe() for d in dims[:3]] == ["int:32:256", "loguniform:0.0001:0.01", "choice:lstm,gru"]
    space = tmp_path / "space.yaml"
    space.write_text("model.hidden_size: int:32:256\nmodel.cell: [lstm, gru]\nmodel.bidirectional: choice:true,false\n")
    from_file = parse_space(space)
    assert from_file[:2] == dims[:1] + [Dimension("model.cell", "choice", choices=("lstm", "gru"))]
    assert from_file[2].choices == (True, False)  # values are read like --set values
    assert dims[0].contains(128) and not dims[0].contains(300) and not dims[0].contains(True)
    assert dims[2].contains("gru") and not dims[2].contains("rnn_tanh")


def test_a_search_continues_from_sqlite_and_never_evaluates_test(reviews, capsys, splits):
    assert main(tune_argv(reviews, trials=3)) == 0
    folder = reviews.parent / "runs" / "search"
    study = load(folder)
    assert len(study.trials) == 3 and "test" not in splits
    first = [t.params for t in study.trials]
    # the recipe's values (hidden_size 8 from --set, lr 1e-3) lie in the space: they are the first trial
    assert first[0] == {"model.hidden_size": 8, "train.lr": 1e-3} and study.trials[0].user_attrs["recipe_defaults"]
    out = capsys.readouterr().out
    assert "(recipe defaults)" in out and f"best config: {folder / 'best.yaml'}" in out

    assert main(tune_argv(reviews, trials=4)) == 0  # the same command with one more trial: continues the study
    study = load(folder)
    assert len(study.trials) == 4 and [t.params for t in study.trials[:3]] == first
    assert study.trials[3].params not in first  # a continued search draws a new point
    assert "test" not in splits
    outcome = json.loads((folder / "tune.json").read_text())
    assert outcome["best"]["trial"] == study.best_trial.number and outcome["split"] == "validation"
    assert sum(outcome["trials"].values()) == 4

    assert main(tune_argv(reviews, trials=4)) == 0  # already 4 finished trials: nothing trained
    assert len(load(folder).trials) == 4


def test_an_interrupted_trial_is_tried_again(reviews, capsys):
    assert main(tune_argv(reviews, trials=1)) == 0
    folder = reviews.parent / "runs" / "search"
    study = load(folder)
    killed = study.ask({"model.hidden_size": optuna.distributions.IntDistribution(4, 16, step=2),
                        "train.lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})  # fmt: skip
    params = killed.params  # left RUNNING, as by a kill -9 during training
    assert main(tune_argv(reviews, trials=2)) == 0
    trials = load(folder).trials
    assert trials[killed.number].state == optuna.trial.TrialState.FAIL
    assert trials[-1].params == params and trials[-1].state == optuna.trial.TrialState.COMPLETE


def test_the_best_config_trains_with_train_config_and_final_reports_test_once(reviews, capsys, splits):
    assert main(tune_argv(reviews, "--final", trials=2)) == 0
    out = capsys.readouterr().out
    folder = reviews.parent / "runs" / "search"
    final = json.loads((folder / "tune.json").read_text())["final"]
    assert (Path(final["defaults"]["run"]) / "meta.json").is_file()
    if load(folder).best_trial.user_attrs.get("recipe_defaults"):  # one run answers for both
        assert splits.count("test") == 1 and final["best"]["run"] == final["defaults"]["run"]
    else:  # the final run of the best config and of the recipe defaults, nothing else
        assert splits.count("test") == 2 and "test loss (evaluated once): best" in out and "recipe defaults" in out
        assert Path(final["best"]["run"]).name == f"final-trial-{load(folder).best_trial.number}"

    best = folder / "best.yaml"
    text = best.read_text()
    assert text.startswith("# rnnkit tune") and f"rnnkit train text-classification --config {best}" in text
    params = load(folder).best_trial.params
    args = ["train", "text-classification", "--config", str(best), "--data", str(reviews), "--runs-dir",
            str(reviews.parent / "runs"), "--name", "from-best", "--quiet"]  # fmt: skip
    assert main(args) == 0
    saved = yaml.safe_load((reviews.parent / "runs" / "from-best" / "config.yaml").read_text())
    assert saved["model"]["hidden_size"] == params["model.hidden_size"] and saved["train"]["lr"] == params["train.lr"]
    assert saved["train"]["epochs"] == 2  # the --set of the search is part of the recipe file
    best_number = load(folder).best_trial.number
    assert f"(rnnkit tune, trial {best_number}: model.hidden_size={params['model.hidden_size']}" in saved["description"]


def test_final_trains_once_when_the_best_trial_is_the_recipe_defaults(reviews, capsys, splits):
    assert main(tune_argv(reviews, "--final", trials=1)) == 0  # the only trial: the recipe's own values
    folder = reviews.parent / "runs" / "search"
    assert splits.count("test") == 1 and not list(folder.glob("final-trial-*"))
    final = json.loads((folder / "tune.json").read_text())["final"]
    assert final["best"] == {**final["defaults"], "same_as_defaults": True}
    assert "the best trial is the recipe defaults, trained once" in capsys.readouterr().out


class FakeTrial:
    def __init__(self, prune: bool) -> None:
        self.prune, self.reports = prune, []

    def report(self, value, step):
        self.reports.append((value, step))

    def should_prune(self):
        return self.prune


def test_the_epoch_callback_reports_and_prunes():
    keep, stop = FakeTrial(False), FakeTrial(True)
    ReportEpochs(keep, "accuracy").on_epoch_end(None, 0, {"val_accuracy": 0.5, "train_loss": 1.0})
    assert keep.reports == [(0.5, 0)]
    with pytest.raises(optuna.TrialPruned, match="after epoch 3"):
        ReportEpochs(stop, "accuracy").on_epoch_end(None, 2, {"val_accuracy": 0.25})


@pytest.mark.parametrize("prune_after", [1, 3])
def test_no_trial_is_pruned_before_prune_after_epochs(tmp_path, prune_after):
    study = open_study(optuna, tmp_path / "study.db", "max", seed=0, prune_after=prune_after)
    for _ in range(2):  # two finished trials at 0.9 from the first epoch on
        done = study.ask()
        for epoch in range(5):
            done.report(0.9, epoch)
        study.tell(done, 0.9)
    behind = study.ask()
    pruned_at = None
    for epoch in range(5):  # far behind the median at every epoch
        behind.report(0.1, epoch)
        if behind.should_prune():
            pruned_at = epoch
            break
    assert pruned_at == prune_after - 1  # after exactly prune_after epochs (steps count from 0)


def test_prune_after_defaults_to_a_third_of_the_epochs_and_is_recorded(reviews, capsys):
    assert main(tune_argv(reviews, trials=1)) == 0
    assert json.loads((reviews.parent / "runs" / "search" / "tune.json").read_text())["prune_after"] == 1  # 2 // 3 -> 1
    assert main(tune_argv(reviews, "--prune-after", "2", "--name", "search2", trials=1)) == 0
    assert json.loads((reviews.parent / "runs" / "search2" / "tune.json").read_text())["prune_after"] == 2


@pytest.mark.parametrize(
    "space, extra, message",
    [
        (["model.hidden_size"], [], "expects KEY=KIND:... items"),
        (["model.hidden_size", "train.lr=float:0:1"], [], "not both"),
        (["model.hidden_size=int:32"], [], "expected int:LOW:HIGH[:STEP]"),
        (["model.hidden_size=int:64:32"], [], "LOW must be below HIGH"),
        (["model.hidden_size=int:a:32"], [], "expected an integer"),
        (["train.lr=loguniform:0:1"], [], "log scale needs LOW > 0"),
        (["train.lr=normal:0:1"], [], "unknown kind 'normal'"),
        (["model.cell=choice:"], [], "choice needs values"),
        (["model.cell=choice:lstm,lstm"], [], "listed twice"),
        (["model.cell=choice:lstm,foo"], [], "model.cell"),
        (["model.nope=int:1:4"], [], "nope"),
        (["train.seed=int:1:5"], [], "not searchable"),
        (["space.yaml", "train.lr=float:0:1"], [], "not both"),
        (["missing.yaml"], [], "missing.yaml"),
        (SPACE, ["--trials", "0"], "positive integer"),
        (SPACE, ["--timeout", "-1"], "positive number"),
        (SPACE, ["--prune-after", "0"], "positive integer"),
        (SPACE, ["--seeds", "x"], "--seeds expects a count (3) or seeds (0,5,9)"),
        (SPACE, ["--seeds", "0"], "give at least one seed"),
        (SPACE, ["--seeds", "1,1"], "give distinct seeds"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(reviews, capsys, space, extra, message):
    assert main(tune_argv(reviews, *extra, space=space)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert not (reviews.parent / "runs" / "search" / "study.db").exists()  # nothing started


def test_without_optuna_one_line_says_how_to_install(reviews, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    assert main(tune_argv(reviews)) == 2
    assert "pip install 'rnnkit[tune]'" in capsys.readouterr().err


def test_a_diverging_trial_fails_and_the_search_goes_on(reviews, capsys, monkeypatch):
    from rnnkit.studies import tune as tune_module
    from rnnkit.training import NonFiniteError

    real, calls = tune_module.run_trial, {"n": 0}

    def diverge_first(search, params, callbacks=(), seed=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise NonFiniteError("training loss became nan at epoch 1, batch 2")
        return real(search, params, callbacks, seed=seed)

    monkeypatch.setattr(tune_module, "run_trial", diverge_first)
    assert main(tune_argv(reviews, trials=2)) == 0
    states = [t.state for t in load(reviews.parent / "runs" / "search").trials]
    assert states[0] == optuna.trial.TrialState.FAIL and len(states) == 3  # two finished trials, as asked

    def always_diverge(search, params, callbacks=(), seed=None):
        raise NonFiniteError("training loss became nan at epoch 1, batch 1")

    monkeypatch.setattr(tune_module, "run_trial", always_diverge)
    assert main(tune_argv(reviews, "--name", "all-fail", trials=2)) == 2  # a round of failures ends the search
    assert "no trial completed" in capsys.readouterr().err


def test_with_seeds_every_trial_is_the_mean_over_them_and_final_trains_each(reviews, capsys, splits):
    """``--seeds 0,1``: a trial's value is the mean of its two seeds' validation values, the seed-0 value is
    the very value a one-seed search gets for the same settings (the recipe seed is 0), and ``--final`` trains
    the best config and the defaults once per seed and reports mean +- sd."""
    assert main(tune_argv(reviews, trials=1)) == 0  # one seed: the recipe defaults, seed 0
    one = load(reviews.parent / "runs" / "search").trials[0].value
    argv = tune_argv(reviews, "--seeds", "0,1", "--final", trials=2)
    argv[argv.index("--name") + 1] = "seeded"
    assert main(argv) == 0
    folder = reviews.parent / "runs" / "seeded"
    trials = load(folder).trials
    for t in trials:
        per_seed = t.user_attrs["seed_values"]
        assert set(per_seed) == {"0", "1"} and t.value == pytest.approx((per_seed["0"] + per_seed["1"]) / 2)
    assert trials[0].user_attrs["recipe_defaults"] and trials[0].user_attrs["seed_values"]["0"] == pytest.approx(one)
    saved = json.loads((folder / "tune.json").read_text())
    assert saved["seeds"] == [0, 1]
    final = saved["final"]
    labels = ["defaults"] if final["best"].get("same_as_defaults") else ["best", "defaults"]
    assert splits.count("test") == 2 * len(labels)  # once per final run, never during the search
    for label in labels:
        result = final[label]
        assert [Path(r).name.rsplit("-", 1)[1] for r in result["runs"]] == ["seed0", "seed1"]
        tests = [r["test"] for r in result["per_seed"]]
        assert result["test"] == pytest.approx(sum(tests) / 2) and result["test_sd"] is not None
        for run, seed in zip(result["runs"], (0, 1), strict=True):
            assert yaml.safe_load((Path(run) / "config.yaml").read_text())["train"]["seed"] == seed
    out = capsys.readouterr().out
    assert "per seed, mean ± sd over seeds 0, 1" in out and " ± " in out.splitlines()[-1]
    # another --seeds is another search: the folder refuses it
    argv[argv.index("0,1")] = "0,2"
    assert main(argv) == 2
    assert "different seeds" in capsys.readouterr().err
