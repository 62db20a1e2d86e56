"""``rnnkit predict``: run a trained model on inputs given as arguments, in a file, or on stdin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import json_text, make_parser

EPILOG = """\
examples:
  rnnkit predict runs/quickstart "a moving, beautifully acted film" "two hours I will not get back"
  rnnkit predict runs/quickstart --file reviews.txt --format table     # one input per line
  echo "dull and clumsy" | rnnkit predict runs/quickstart
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "predict",
        help="predict with a trained run folder",
        description="Load a run folder (config, weights, vocabularies; no Python needed) and predict.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run folder, e.g. runs/quickstart")
    p.add_argument(
        "inputs", nargs="*", default=[], metavar="INPUT", help="inputs (texts, ...); default: --file or stdin"
    )
    p.add_argument("--file", type=Path, default=None, help="read inputs from this file, one per line")
    p.add_argument("--format", choices=["json", "table"], default="json", help="output format (default: json lines)")
    p.add_argument(
        "--quantize", choices=["int8"], default=None, help="int8: run the dynamically quantized model (ONNX Runtime)"
    )
    p.set_defaults(run=run)
    return p


def read_lines(path: Path) -> list[str]:
    """The file's non-blank lines; a byte that is not UTF-8 is reported with its line."""
    from rnnkit.data.textfile import read_lines as read_text_lines

    return [line for line in read_text_lines(path, "utf-8", hint="") if line.strip()]


def run(args: argparse.Namespace) -> int:
    from rnnkit.tasks.runner import predict

    inputs = list(args.inputs)
    if args.file is not None:
        inputs += read_lines(args.file)
    if not inputs and not sys.stdin.isatty():
        inputs = [line for line in sys.stdin.read().splitlines() if line.strip()]
    results = predict(args.run_dir, inputs, quantize=args.quantize)
    if args.format == "json":
        for r in results:
            print(json_text(r))  # NaN/infinity as null: strict JSON
    else:
        from rich.console import Console
        from rich.table import Table

        keys = [k for k in results[0] if not isinstance(results[0][k], (dict, list))]
        table = Table(*keys)
        for r in results:
            table.add_row(*(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys))
        Console().print(table)
    return 0
