"""Where rnnkit keeps what it caches: the one place that reads ``RNNKIT_HOME`` (lowest layer: no rnnkit imports)."""

from __future__ import annotations

import os
from pathlib import Path


def rnnkit_home() -> Path:
    """``$RNNKIT_HOME`` or ``~/.cache/rnnkit``: datasets, the int8 graphs, the compiled native loop."""
    return Path(os.environ.get("RNNKIT_HOME") or "~/.cache/rnnkit").expanduser()
