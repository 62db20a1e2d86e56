"""``rnnkit train``: any recipe or task, with a config file and dotted overrides; ``--resume`` continues."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_run_options, check_runs_dir, make_parser, print_summary

EPILOG = """\
examples:
  rnnkit train sentiment                                   # a recipe (rnnkit config list shows them)
  rnnkit train sentiment --set train.epochs=3 model.cell=gru model.pooling=attention
  rnnkit train text-classification --data reviews.csv      # your CSV/JSONL with text,label columns
  rnnkit train sentiment-imdb --data aclImdb/              # your IMDB copy (or a review,sentiment CSV)
  rnnkit train sentiment --config my.yaml                  # YAML on top of the recipe's defaults
  rnnkit train --resume runs/sentiment                     # continue an interrupted run (Ctrl-C saves first)
  torchrun --nproc_per_node=2 -m rnnkit train sentiment    # the same command, data-parallel
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "train",
        help="train a recipe or task on real or your own data",
        description="Train a model, evaluate it on the test split, and write a run folder that predict, "
        "evaluate, serve and export can use.",
        epilog=EPILOG,
    )
    p.add_argument("target", nargs="?", help="a recipe (e.g. sentiment) or a task kind (e.g. text-classification)")
    p.add_argument("--config", type=Path, default=None, help="YAML file merged over the recipe's defaults")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="dotted overrides, e.g. train.lr=3e-3 model.cell=gru (repeatable: all apply)")  # fmt: skip
    p.add_argument("--data", type=Path, default=None, help="your data file (format depends on the task)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN", help="continue an unfinished run folder")
    add_run_options(p, "the recipe's name")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Exit 0 when trained, 2 on bad input, 130 when SIGINT/SIGTERM stopped training (after saving a checkpoint)."""
    from rnnkit.errors import RnnkitError
    from rnnkit.tasks.runner import train
    from rnnkit.training import TrainingInterrupted

    if args.resume is not None and (args.target or args.config or args.data):
        raise RnnkitError("--resume continues a run with its saved config; do not give a target, --config or --data")
    if args.resume is None:
        check_runs_dir(args.runs_dir)
    try:
        summary = train(
            args.target, config_file=args.config, overrides=args.overrides, data=args.data, runs_dir=args.runs_dir,
            name=args.name, resume=args.resume, quiet=args.quiet,
        )  # fmt: skip
    except TrainingInterrupted as e:
        print(f"rnnkit: {e}", file=sys.stderr)
        return 130
    print_summary(summary, quiet=args.quiet)
    return 0
