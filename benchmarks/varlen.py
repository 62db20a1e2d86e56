"""Ragged batches: rnnkit's ``lengths=`` against ``torch.nn.LSTM`` on a ``PackedSequence``, in the same run.

One training step (forward over the batch, a scalar loss over every real output and the final states,
backward) on a batch whose lengths are drawn uniformly from ``--min-len``..``--max-len``:

* **peer** — ``torch.nn.LSTM`` on ``pack_padded_sequence(x, lengths, enforce_sorted=False)``, the
  output unpacked again with ``pad_packed_sequence`` (what one writes to get right results from torch);
* **rnnkit** — ``rnnkit.layers.LSTM(...)(x, lengths=lengths)`` on the padded batch: no packing; the
  fused kernel runs once per distinct-length segment over the sequences still active (see
  ``rnnkit.layers.recurrent.fused_causal``), the backward direction on each sequence reversed in place.

For scale, a third column times ``torch.nn.LSTM`` on the padded batch with the lengths ignored (wrong
final states and backward-direction outputs; what one would get without packing). Both layers hold the
same weights. Before timing, the script checks (and asserts) that outputs, final
states and the input gradient agree. Printed: ms per step, the speed-up (peer time / rnnkit time;
target ≥ 3×) and the machine. Use ``OMP_NUM_THREADS=1`` on a shared machine.

Run: ``OMP_NUM_THREADS=1 python benchmarks/varlen.py`` (about a minute), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_interleaved  # noqa: E402
from rnnkit.layers import LSTM  # noqa: E402

TARGET = 3.0


def peer_step(lstm, x, lengths):
    def run():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, c) = lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, h, c

    return run


def peer_padded_step(lstm, x):
    """For scale only: ``torch.nn.LSTM`` over the padded batch, lengths ignored (wrong final states)."""

    def run():
        out, (h, c) = lstm(x)
        return out, h, c

    return run


def rnnkit_step(lstm, x, lengths):
    def run():
        out, (h, c) = lstm(x, lengths=lengths)
        return out, h, c

    return run


def train_step(run, module, x):
    def step():
        out, h, c = run()
        (out.sum() + h.sum() + c.sum()).backward()
        module.zero_grad(set_to_none=True)
        x.grad = None

    return step


def check_equal(peer, ours, x) -> float:
    """Outputs, final states and input gradients of both sides; returns the largest difference."""
    worst = 0.0
    results = []
    for run in (peer, ours):
        x.grad = None
        out, h, c = run()
        (out.sum() + h.sum() + c.sum()).backward()
        results.append((out.detach(), h.detach(), c.detach(), x.grad.clone()))
    x.grad = None
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        worst = max(worst, float((a - b).abs().max()))
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--min-len", type=int, default=16)
    p.add_argument("--max-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or process CPU time")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.input_size, args.hidden_size, args.min_len, args.max_len, args.repeats = 6, 8, 8, 2, 12, 1
    B, I, H = args.batch, args.input_size, args.hidden_size
    torch.manual_seed(0)
    lengths = torch.randint(args.min_len, args.max_len + 1, (B,))
    T = int(lengths.max())
    x = torch.randn(B, T, I, requires_grad=True)
    print(f"# benchmarks/varlen.py — {dt.date.today()}")
    print(f"machine: {machine()}")
    print(
        f"batch {B}, lengths uniform in {args.min_len}..{args.max_len} (padded to {T}, {int(lengths.sum()):,} real "
        f"steps of {B * T:,}), I={I}, H={H}, float32; one training step, median of {args.repeats} interleaved repeats; "
        f"clock: {args.clock}\n"
    )
    print(
        "| direction | layers | torch.nn.LSTM packed ms | rnnkit lengths= ms | speed-up | max abs diff "
        "| (torch.nn.LSTM padded, lengths ignored, ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    worst_speedup = float("inf")
    for bidirectional in (False, True):
        for layers in (1, 2):
            peer = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
            ours = LSTM(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
            ours.load_state_dict(peer.state_dict())
            peer_run, ours_run = peer_step(peer, x, lengths), rnnkit_step(ours, x, lengths)
            diff = check_equal(peer_run, ours_run, x)
            padded = peer_padded_step(peer, x)
            times = time_interleaved(
                {
                    "peer": train_step(peer_run, peer, x),
                    "rnnkit": train_step(ours_run, ours, x),
                    "padded": train_step(padded, peer, x),
                },
                args.repeats,
                warmup=1,
                clock=args.clock,
            )
            speedup = times["peer"] / times["rnnkit"]
            worst_speedup = min(worst_speedup, speedup)
            name = "bidirectional" if bidirectional else "forward"
            print(
                f"| {name} | {layers} | {1e3 * times['peer']:.1f} | {1e3 * times['rnnkit']:.1f} | {speedup:.2f}× | "
                f"{diff:.1e} | {1e3 * times['padded']:.1f} |"
            )
            sys.stdout.flush()
    verdict = "met" if worst_speedup >= TARGET else "not met"
    print(f"\nsmallest speed-up: {worst_speedup:.2f}× (target ≥ {TARGET}×: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
