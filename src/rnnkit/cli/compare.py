"""``rnnkit compare``: train a grid of settings x seeds and rank them on validation metrics (mean ± sd)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_run_options, check_runs_dir, make_parser, positive_int

EPILOG = """\
examples:
  rnnkit compare sentiment --grid model.cell=lstm,gru,rnn_tanh model.pooling=max,attention --seeds 3
  rnnkit compare sentiment --grid model.cell=lstm,gru --seeds 0,1,2,3,4 --set train.epochs=6
  rnnkit compare sentiment --seeds 5                       # one setting: the recipe's spread over seeds
  rnnkit compare text-classification --data reviews.csv --grid model.hidden_size=64,128 --jobs 2

The same command again continues an interrupted comparison (finished runs are skipped). Each run is an ordinary
run folder under RUNS-DIR/NAME/<setting>/seed-<N>/; the table is in RUNS-DIR/NAME/results.md (.json, .png).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "compare",
        help="train a grid of settings over several seeds and rank them",
        description="Train every combination of --grid values with every seed, then rank the settings by their "
        "mean validation metric (train.monitor). Test metrics are shown beside, never used to rank; the best two "
        "are compared with Welch's t-test (a bootstrap interval without SciPy).",
        epilog=EPILOG,
    )
    p.add_argument("target", metavar="RECIPE", help="a recipe (e.g. sentiment) or a task kind")
    p.add_argument("--grid", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                   help="a config key and its values, e.g. model.cell=lstm,gru (several keys: a grid)")  # fmt: skip
    p.add_argument("--seeds", default="3", metavar="N|S1,S2",
                   help="how many seeds (3: seeds 0, 1, 2) or which (0,5,9); default 3")  # fmt: skip
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="dotted overrides applied to every run, e.g. train.epochs=6")  # fmt: skip
    p.add_argument("--config", type=Path, default=None, help="YAML file merged over the recipe's defaults")
    p.add_argument("--data", type=Path, default=None, help="your data file (format depends on the task)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="runs at a time, in separate processes sharing the CPU threads (default 1)")  # fmt: skip
    add_run_options(p, "compare-RECIPE; the same name continues that comparison")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rnnkit.studies.compare import compare
    from rnnkit.training import TrainingInterrupted

    check_runs_dir(args.runs_dir)
    try:
        results = compare(
            args.target, args.grid, seeds=args.seeds, config_file=args.config, overrides=args.overrides,
            data=args.data, runs_dir=args.runs_dir, name=args.name, jobs=args.jobs, quiet=args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt as e:  # TrainingInterrupted (its checkpoint saved), or Ctrl-C between two runs
        detail = f"{e.message}; or" if isinstance(e, TrainingInterrupted) else "interrupted;"
        print(f"rnnkit: {detail} run the same rnnkit compare command again to continue the comparison",
              file=sys.stderr)  # fmt: skip
        return 130
    print(results["markdown"], end="")
    print(f"results: {Path(results['folder']) / 'results.md'} (.json, .png)")
    return 0
