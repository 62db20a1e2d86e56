"""Long sequences: minGRU's scans against ``torch.nn.GRU``, training step, over sequence lengths.

For each ``T`` it times one training step (forward, ``sum()`` of every output, backward) of

* ``torch.nn.GRU`` — the peer (the fused oneDNN kernel; inherently sequential in ``T``);
* ``Recurrent(MinGRUCell)`` — the default chunked linear-space scan
  (:func:`rnnkit.cells.minimal.chunked_scan`: about ``2 sqrt(2T)`` small steps);
* ``Recurrent(MinGRUCell)`` with the log-space scan (``method="log"``; for comparison);

interleaved, median of ``--repeats``; prints the ratio to the peer and the crossover length (the
shortest ``T`` from which on the chunked scan stays faster). minGRU is a different (weaker per step,
parallel in time) model than a GRU: this compares the cost of the two layers at equal sizes, not
their quality. Use ``OMP_NUM_THREADS=1`` on a shared machine.

Run: ``OMP_NUM_THREADS=1 python benchmarks/scan.py`` (a few minutes), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_interleaved  # noqa: E402
from rnnkit.cells import MinGRUCell  # noqa: E402
from rnnkit.layers import Recurrent  # noqa: E402


class LogScanMinGRU(MinGRUCell):
    """minGRU running the log-space scan (the chunked one is the default)."""

    def scan(self, xp, state=None, mask=None, **kw):
        return super().scan(xp, state, mask, method="log")


def step_fn(module, x):
    def step():
        module(x)[0].sum().backward()
        module.zero_grad(set_to_none=True)

    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", nargs="*", type=int, default=[16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or process CPU time")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.batch, args.input_size, args.hidden_size, args.repeats = [8, 32], 2, 4, 8, 1
    B, I, H = args.batch, args.input_size, args.hidden_size
    torch.manual_seed(0)
    print(f"# benchmarks/scan.py — {dt.date.today()}")
    print(f"machine: {machine()}")
    print(
        f"B={B}, I={I}, H={H}, float32; one training step, median of {args.repeats} interleaved repeats; "
        f"clock: {args.clock}\n"
    )
    print("| T | torch.nn.GRU ms | minGRU chunked scan ms | ratio | minGRU log-space scan ms | ratio |")
    print("|---|---|---|---|---|---|")
    ratios = {}
    for T in args.lengths:
        x = torch.randn(B, T, I)
        models = {
            "gru": torch.nn.GRU(I, H, batch_first=True),
            "chunked": Recurrent(MinGRUCell, I, H),
            "log": Recurrent(LogScanMinGRU, I, H),
        }
        times = time_interleaved({k: step_fn(m, x) for k, m in models.items()}, args.repeats, clock=args.clock)
        ratios[T] = times["chunked"] / times["gru"]
        print(
            f"| {T} | {1e3 * times['gru']:.1f} | {1e3 * times['chunked']:.1f} | {ratios[T]:.2f}× | "
            f"{1e3 * times['log']:.1f} | {times['log'] / times['gru']:.2f}× |"
        )
        sys.stdout.flush()
    crossover = None
    for T in sorted(ratios, reverse=True):
        if ratios[T] >= 1.0:
            break
        crossover = T
    where = f"T = {crossover}" if crossover is not None else f"none up to T = {max(ratios)}"
    print(f"\ncrossover (chunked minGRU faster than nn.GRU from this length on): {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
