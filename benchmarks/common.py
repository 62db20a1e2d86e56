"""Shared helpers for the benchmark scripts: machine description and robust timing."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def machine() -> str:
    """CPU model, cores, torch version and threads (and the GPU when one is used)."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    s = (
        f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )
    if torch.cuda.is_available():
        s += f", GPU {torch.cuda.get_device_name(0)}"
    return s


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_interleaved(
    fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 2, device: str = "cpu", clock: str = "wall"
):
    """Median seconds per call of each function, run round-robin so drifts hit all of them alike.

    ``clock="cpu"`` measures the process's CPU time instead of wall time: on a shared machine it leaves
    out the time other processes hold the cores (it still counts cache and page-fault costs they
    cause). Use it with one thread (CPU time adds up over threads)."""
    now = CLOCKS[clock]
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = now()
            fn()
            _sync(device)
            times[k].append(now() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_ceiling(
    n: int = 1024, repeats: int = 10, device: str = "cpu", dtype=torch.float32, clock: str = "wall"
) -> float:
    """Achieved GFLOP/s of a square float32 matmul: the physical limit a layer can approach."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = time_interleaved({"mm": lambda: a @ b}, repeats, device=device, clock=clock)["mm"]
    return 2 * n**3 / t / 1e9


def replace_results_section(text: str, heading: str, path: str | os.PathLike | None = None) -> None:
    """Put ``text`` (a whole ``## heading ...`` section) into ``docs/results.md`` in place of the section whose
    heading starts with ``heading``, or at the end when there is none; written atomically."""
    import re
    from pathlib import Path

    from rnnkit.fileio import atomic_write_text

    path = Path(path) if path is not None else Path(__file__).resolve().parents[1] / "docs" / "results.md"
    doc = path.read_text(encoding="utf-8")
    pattern = re.compile(r"^## " + re.escape(heading) + r".*?(?=^## |\Z)", re.S | re.M)
    doc = pattern.sub(lambda m: text + "\n", doc, count=1) if pattern.search(doc) else doc.rstrip() + "\n\n" + text
    atomic_write_text(path, doc)
