"""``rnnkit tune``: an Optuna search (TPE, median pruning) over a recipe's settings, on validation metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_run_options, check_runs_dir, make_parser, positive_int

EPILOG = """\
examples:
  rnnkit tune sentiment --trials 20 --space model.hidden_size=int:32:256 train.lr=loguniform:1e-4:1e-2 \\
      model.cell=choice:lstm,gru
  rnnkit tune sentiment --trials 40 --space space.yaml --timeout 3600 --final

Space kinds: int:LOW:HIGH[:STEP], logint:LOW:HIGH, float:LOW:HIGH, loguniform:LOW:HIGH, choice:A,B,C; a YAML
file maps keys to the same strings (or to a list of choices). The study is RUNS-DIR/NAME/study.db (SQLite): the
same command again continues it up to --trials finished trials. The best config is RUNS-DIR/NAME/best.yaml, for
`rnnkit train RECIPE --config`. Trials never evaluate the test split; --final trains the best config and the
recipe defaults once each and prints their test metric.
"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "tune",
        help="search hyperparameters with Optuna on validation metrics",
        description="Search a recipe's settings with Optuna (seeded TPE sampler, median pruning on the validation "
        "metric after each epoch), the study kept in SQLite so the same command continues it.",
        epilog=EPILOG,
    )
    p.add_argument("target", metavar="RECIPE", help="a recipe (e.g. sentiment) or a task kind")
    p.add_argument("--trials", type=positive_int, required=True, help="finished trials the study should hold")
    p.add_argument("--space", nargs="+", action="extend", default=[], metavar="KEY=KIND:...|FILE.yaml",
                   help="what to search: KEY=KIND:... items, or one YAML file of them")  # fmt: skip
    p.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="start no new trial after S seconds")  # fmt: skip
    p.add_argument("--prune-after", type=positive_int, default=None, metavar="EPOCHS",
                   help="epochs a trial trains before it may be pruned (default: a third of train.epochs)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0; trials train with train.seed)")
    p.add_argument("--seeds", default=None, metavar="N|S1,S2",
                   help="train every trial with each of these seeds (3: seeds 0, 1, 2) and rank by the mean; "
                   "default: train.seed alone")  # fmt: skip
    p.add_argument("--final", action="store_true",
                   help="then train the best config and the recipe defaults once; print their test metric")  # fmt: skip
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="dotted overrides applied to every trial, e.g. train.epochs=6")  # fmt: skip
    p.add_argument("--config", type=Path, default=None, help="YAML file merged over the recipe's defaults")
    p.add_argument("--data", type=Path, default=None, help="your data file (format depends on the task)")
    add_run_options(p, "tune-RECIPE; the same name continues that search")
    p.set_defaults(run=run)
    return p


def space_argument(items: list[str]):
    """``--space``: KEY=KIND items, or exactly one YAML file (an item without ``=``)."""
    from rnnkit.errors import RnnkitError

    files = [i for i in items if "=" not in i]
    if not items:
        raise RnnkitError("give --space KEY=KIND:... items or a YAML file (rnnkit tune --help)")
    if files and len(items) > 1:
        raise RnnkitError("--space takes KEY=KIND:... items or one YAML file, not both")
    if files and not Path(files[0]).exists() and not files[0].endswith((".yaml", ".yml")):
        raise RnnkitError(f"--space expects KEY=KIND:... items (e.g. train.lr=loguniform:1e-4:1e-2) or a YAML file, "
                          f"got {files[0]!r}")  # fmt: skip
    return Path(files[0]) if files else items


def run(args: argparse.Namespace) -> int:
    from rnnkit.studies.tune import describe_params, tune

    check_runs_dir(args.runs_dir)
    try:
        out = tune(
            args.target, space_argument(args.space), trials=args.trials, config_file=args.config,
            overrides=args.overrides, data=args.data, runs_dir=args.runs_dir, name=args.name, timeout=args.timeout,
            seed=args.seed, final=args.final, quiet=args.quiet, prune_after=args.prune_after, seeds=args.seeds,
        )  # fmt: skip
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM during a trial (the trainer stops after its step)
        print("rnnkit: interrupted; the same rnnkit tune command continues the search", file=sys.stderr)
        return 130
    metric, counts = out["metric"], ", ".join(f"{n} {k}" for k, n in out["trials"].items())
    print(f"trials: {counts}")
    for t in out["top"]:
        params = describe_params(t["params"], sep=" ")
        mark = " (recipe defaults)" if out["recipe_defaults"] and out["recipe_defaults"]["trial"] == t["trial"] else ""
        print(f"trial {t['trial']}: validation {metric} {t['value']:.4f}  {params}{mark}")
    print(f"best config: {out['best_config']}")
    final = out.get("final")
    if final:
        b, d = final["best"], final["defaults"]
        per = f" per seed, mean ± sd over seeds {', '.join(map(str, d['seeds']))}" if "seeds" in d else ""
        if b.get("same_as_defaults"):
            print(f"test {metric} (evaluated once{per}): {_figure(d, 'test')} (validation {_figure(d, 'validation')}); "
                  "the best trial is the recipe defaults, trained once")  # fmt: skip
            return 0
        print(f"test {metric} (evaluated once{per}): best {_figure(b, 'test')} (validation "
              f"{_figure(b, 'validation')}), recipe defaults {_figure(d, 'test')} (validation "
              f"{_figure(d, 'validation')})")  # fmt: skip
    return 0


def _figure(result: dict, key: str) -> str:
    """``0.8135``, or ``0.8052 ± 0.0077`` for a mean over seeds."""
    sd = result.get(f"{key}_sd")
    return f"{result[key]:.4f}" if sd is None else f"{result[key]:.4f} ± {sd:.4f}"
