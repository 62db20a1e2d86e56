"""The native (C++) LSTM and GRU time loops: built on first use, cached, and optional.

``csrc/lstm_loop.cpp`` holds the forward and backward of :mod:`rnnkit.layers.fastloop`'s LSTM loop, and
``csrc/gru_loop.cpp`` those of the GRU loop (``GRUCell``, ``LayerNormGRUCell``), each with the whole time loop
in C++ (one matmul and one pass over the batch rows per step); ``csrc/loop_common.h`` has what they share. Both
are compiled as one extension with :func:`torch.utils.cpp_extension.load` the first time a native loop runs on
the CPU (about a minute, once per torch version; a log line says so) into ``$RNNKIT_EXT_DIR`` or
``$RNNKIT_HOME/ext`` (default ``~/.cache/rnnkit/ext``), and loaded from there afterwards. Without a C++
compiler, or with ``RNNKIT_NATIVE=0``, the LSTM runs the Python loop instead and the GRU ``recur`` per step:
same results, slower.
``RNNKIT_NATIVE=1`` makes a failed build an error instead of a warning. The buffers the forward saves
for the backward come from a pool that keeps freed blocks for reuse (so a training step does not page-fault
fresh memory in), in size classes a sixteenth of a power of two apart (so batches of nearby lengths share them):
at most ``RNNKIT_NATIVE_POOL_MB`` (default 512) MiB are kept, the oldest given back first; ``0`` turns the pool
off. ``torch.ops.rnnkit_native.pool_stats()`` says what it holds: bytes and blocks kept, blocks reused, blocks
allocated.

Build it ahead of time with ``python -m rnnkit.layers.native``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import threading
from pathlib import Path

import torch

from .. import settings
from ..paths import rnnkit_home

log = logging.getLogger("rnnkit")

CSRC = Path(__file__).with_name("csrc")
SOURCES = (CSRC / "lstm_loop.cpp", CSRC / "gru_loop.cpp")  # compiled; the digest also covers the header
HEADERS = (CSRC / "loop_common.h",)
_lock = threading.Lock()
_state: dict[str, object] = {}  # "ok": bool once tried, "error": str when the build failed


def _mode() -> str:
    return settings.native_mode()


def _isa_flags() -> tuple[str, list[str]]:
    """The vector instruction set to build for: AVX2 + FMA where torch reports this CPU has them (twice
    the SSE2 baseline's width for the activations and norms), else the compiler's default for the
    architecture. Part of the cache folder's name, so a machine without AVX2 never loads an AVX2 build."""
    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    capability = get() if get is not None else "DEFAULT"
    if platform.machine() in ("x86_64", "AMD64") and capability in ("AVX2", "AVX512"):
        return "avx2", ["-mavx2", "-mfma"]
    return "base", []


def build_dir() -> Path:
    """Where the compiled loops are cached: one folder per source text, torch and Python version, machine
    and instruction set."""
    root = os.environ.get("RNNKIT_EXT_DIR")
    base = Path(root).expanduser() if root else rnnkit_home() / "ext"
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in (*SOURCES, *HEADERS))).hexdigest()[:12]
    isa = _isa_flags()[0]
    tag = f"torch{torch.__version__}-py{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}-{isa}"
    return base / f"native_loops-{digest}-{tag}".replace("+", "_")


def _build() -> None:
    import shutil

    from torch.utils import cpp_extension

    if shutil.which("ninja") is None:  # the `ninja` wheel's binary, when the venv's bin is not on PATH
        try:
            import ninja

            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
        except ImportError:
            pass  # cpp_extension says what is missing

    where = build_dir()
    where.mkdir(parents=True, exist_ok=True)
    name = "rnnkit_native_loops"
    if not (where / f"{name}.so").exists():
        log.info("building rnnkit's native LSTM and GRU loops (once per torch version, about a minute) in %s", where)
    cpp_extension.load(
        name=name,
        sources=[str(p) for p in SOURCES],
        extra_include_paths=[str(CSRC)],
        build_directory=str(where),
        # -fopenmp-simd: the `omp simd` loops vectorise (no OpenMP runtime); -fno-trapping-math: the selects
        # in the activations become blends instead of branches
        extra_cflags=["-O3", "-fopenmp-simd", "-fno-trapping-math", *_isa_flags()[1]],
        is_python_module=False,
        verbose=False,
    )


def available() -> bool:
    """Whether ``torch.ops.rnnkit_native`` is loaded (building it first if needed)."""
    mode = _mode()
    if mode == "0":
        return False
    if "ok" in _state:
        return bool(_state["ok"])
    with _lock:
        if "ok" not in _state:
            # the C++ pool reads this itself on first use (a bad value would read as 0): checked once, first
            settings.native_pool_mb()
            try:
                _build()
                _state["ok"] = True
            except Exception as e:  # no compiler, no ninja, a read-only cache: the Python loop runs
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                _state["ok"], _state["error"] = False, f"{type(e).__name__}: {first}"
                if mode == "1":
                    raise RuntimeError(f"RNNKIT_NATIVE=1 but the native LSTM loop did not build: {first}") from e
                log.warning("native LSTM loop unavailable (%s); using the Python loop", _state["error"])
    return bool(_state["ok"])


def ops():
    """``torch.ops.rnnkit_native`` (call :func:`available` first)."""
    return torch.ops.rnnkit_native


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("RNNKIT_NATIVE", "1")
    available()
    print(f"native LSTM and GRU loops ready in {build_dir()}")
