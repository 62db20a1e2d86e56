"""``rnnkit evaluate``: a trained run's metrics on its test split, or on the test split of other data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import json_text, make_parser

EPILOG = """\
examples:
  rnnkit evaluate runs/quickstart
  rnnkit evaluate runs/my-run --data other_reviews.csv
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "evaluate",
        help="metrics of a trained run on test data",
        description="Evaluate a finished run folder with the run's own vocabularies and label maps.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run folder, e.g. runs/quickstart")
    p.add_argument("--data", type=Path, default=None, help="other data in the task's format (its test split is used)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rnnkit.config import load_yaml
    from rnnkit.tasks.runner import evaluate

    metrics = evaluate(args.run_dir, args.data)  # checks the folder, config.yaml's SHA-256 included
    seed = (load_yaml(args.run_dir / "config.yaml").get("train") or {}).get("seed", 0)  # 0: TrainConfig default
    print(f"{args.run_dir}: trained with train.seed={seed}", file=sys.stderr)
    print(json_text(metrics, indent=2))
    return 0
