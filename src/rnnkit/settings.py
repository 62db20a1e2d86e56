"""rnnkit's environment variables other than ``RNNKIT_HOME`` (:mod:`rnnkit.paths`), read and checked in one place,
so that a wrong value is refused by name before any work starts (lowest layer: no rnnkit imports, no torch).

* ``RNNKIT_NATIVE``: ``auto`` (default: the native loops where they build), ``0`` (never), ``1`` (a failed
  build is an error);
* ``RNNKIT_NATIVE_POOL_MB``: MiB of freed buffers the native loops keep for reuse, a whole number from 0 (no
  pool) to 1048576, default 512.
"""

from __future__ import annotations

import os

POOL_MB_MAX = 1 << 20  # 1 TiB: past any machine, and far from overflowing the C++ side's byte count


def native_mode() -> str:
    """``RNNKIT_NATIVE``, lower-cased: ``"auto"``, ``"0"`` or ``"1"`` (ValueError otherwise)."""
    mode = os.environ.get("RNNKIT_NATIVE", "auto").strip().lower() or "auto"
    if mode not in ("0", "1", "auto"):
        raise ValueError(f"RNNKIT_NATIVE must be 0, 1 or auto, got {mode!r}")
    return mode


def native_pool_mb() -> int:
    """``RNNKIT_NATIVE_POOL_MB`` as an int (default 512; ValueError if it is not a whole number in range)."""
    raw = os.environ.get("RNNKIT_NATIVE_POOL_MB", "").strip()
    if not raw:
        return 512
    if not raw.isdigit() or int(raw) > POOL_MB_MAX:
        raise ValueError(
            f"RNNKIT_NATIVE_POOL_MB must be a whole number of MiB from 0 to {POOL_MB_MAX}, got {raw[:40]!r}"
        )
    return int(raw)


def check() -> None:
    """Raise ValueError naming the first of these variables that holds a value rnnkit would refuse later."""
    native_mode()
    native_pool_mb()
