"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def json_safe(value: Any) -> Any:
    """``value`` with every float that is NaN or infinite replaced by ``None`` (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_text(value: Any, indent: int | None = None) -> str:
    """Strict JSON (NaN/infinity as ``null``, see :func:`json_safe`) for what the CLI prints."""
    return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False, indent=indent)


def check_runs_dir(runs_dir: Path) -> None:
    """``--runs-dir`` must be a folder or a path that can become one: no part of it may be a regular file."""
    from rnnkit.errors import RnnkitError

    for p in [runs_dir, *runs_dir.parents]:
        if p.exists():
            if not p.is_dir():
                what = "is not a folder" if p == runs_dir else f"lies under {p}, which is not a folder"
                raise RnnkitError(f"--runs-dir {what}", where=str(runs_dir))
            return


def add_run_options(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--name", default=None, help=f"run folder name (default: {default_name}, or -2, -3, ... if taken)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: ./runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines; print only the result")


def make_parser(subparsers, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def summary_table(summary) -> None:
    """Per-epoch losses and validation metrics, then the test metrics, as a table on stderr."""
    from rich.console import Console
    from rich.table import Table

    keys = ["train_loss"] + [k for k in summary.history[0] if k.startswith("val_")] if summary.history else []
    table = Table("epoch", *keys, "seconds", title="training summary")
    for r in summary.history:
        cells = [f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        table.add_row(str(r["epoch"]) + (" *" if r.get("best") else ""), *cells, f"{r['seconds']:.1f}")
    Console(stderr=True).print(table)
    test = ", ".join(f"{k} {v:.4f}" for k, v in summary.metrics.items())
    Console(stderr=True).print(f"test (* = the kept epoch): {test}")


def print_summary(summary, quiet: bool = True) -> None:
    """The last lines of a training command: test metrics, best epoch, where the run is (rank 0 only)."""
    if summary.path is None:  # another rank of a torchrun job
        return
    if not quiet and summary.history:
        summary_table(summary)
    metrics = " ".join(f"{k}={v:.4f}" for k, v in summary.metrics.items())
    print(f"test: {metrics}")
    if summary.best is not None:
        print(f"best epoch: {summary.best['epoch']} of {len(summary.history)}")
    print(f"run folder: {summary.path}")
