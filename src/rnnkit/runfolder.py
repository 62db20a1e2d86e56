"""Run folder names: a new run never takes the name of an existing folder (see :mod:`rnnkit.tasks.runner`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from rnnkit.errors import RnnkitError

logger = logging.getLogger("rnnkit")


def check_run_name(name: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or os.sep in name:
        raise RnnkitError(f"invalid run name {name!r}: use a plain folder name, not a path or a hidden name")
    return name


def next_free_name(runs_dir: Path, base: str) -> str:
    """``base`` if ``runs_dir/base`` does not exist, else ``base-2``, ``base-3``, ..."""
    name, i = base, 2
    while (runs_dir / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name
