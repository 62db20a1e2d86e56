"""``rnnkit export``: a run folder's model as ONNX (float32 or int8) or TorchScript, to run without rnnkit."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..formats import EXPORT_FORMATS, QUANTIZE
from .common import make_parser

EPILOG = """\
examples:
  rnnkit export runs/quickstart --format onnx                   # ./quickstart-export/model.onnx (+ .json)
  rnnkit export runs/quickstart --format onnx --quantize int8   # int8 weights, ~2x faster on CPU
  rnnkit export runs/char-lm --out char-lm-export/char.onnx             # state in, state out: stream chunk by chunk
  rnnkit export runs/quickstart --format torchscript --out ts/   # ts/model.pt

Beside the model: a .json naming its inputs, outputs and the preprocessing files (copied next to it: only the
files the run's meta.json lists with a SHA-256). Without --out the files go to ./<run name>-export/ in the
current folder, never into the run folder. Existing files are not overwritten unless --force; a symbolic
link in their place is always refused.
Exports: classifier, tagger, language_model and many-series forecaster runs (TorchScript: lstm/gru/rnn cells).
ONNX needs: pip install 'rnnkit[export]'.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "export",
        help="export a trained run folder to ONNX (optionally int8) or TorchScript",
        description="Write a run's model as an ONNX graph with dynamic batch and length (recurrent state as "
        "explicit inputs/outputs for language models) and a JSON description beside it.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run folder")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=EXPORT_FORMATS[0], help="onnx (default) or torchscript")
    p.add_argument("--quantize", choices=QUANTIZE, default=None, help="int8: dynamic quantization for CPU")
    p.add_argument(
        "--out", type=Path, default=None, help="the .onnx/.pt file, or a folder (default: ./<run name>-export/ here)"
    )
    p.add_argument("--force", action="store_true", help="replace files that already exist there")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rnnkit.export import check_options, export_run
    from rnnkit.tasks import runner

    check_options(args.format, args.quantize)
    loaded = runner.load_run(args.run_dir)
    path = export_run(loaded, args.format, quantize=args.quantize, out=args.out, force=args.force)
    print(path)
    print(path.with_suffix(".json"))
    return 0
