"""Streaming inference latency: ``rnnkit.layers.LSTM.step`` against ``torch.nn.LSTM`` on length-1 inputs.

Batch 1, one step at a time (what a live decoder or an online classifier does): the peer calls
``torch.nn.LSTM`` with a ``(1, 1, I)`` input and its ``(h, c)`` each step; rnnkit calls
``layer.step(x_t, (h, c))`` on a drop-in ``LSTM`` holding the same weights (torch's one-step kernel,
``torch.lstm_cell``, on the layer's parameters, without the sequence machinery). Both run under
``torch.inference_mode()``; the script first checks that 50 stepped outputs agree. Printed: µs per step
(median over interleaved repeats of ``--steps`` steps each), the ratio rnnkit / peer (target ≤ 0.5×)
and the machine.

Run: ``OMP_NUM_THREADS=1 python benchmarks/streaming.py`` (seconds), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_interleaved  # noqa: E402
from rnnkit.layers import LSTM  # noqa: E402

TARGET = 0.5


def peer_loop(lstm, xs, state):
    def run():
        s = state
        for x in xs:
            _, s = lstm(x.view(1, 1, -1), s)

    return run


def rnnkit_loop(layer, xs, state):
    def run():
        s = state
        for x in xs:
            _, s = layer.step(x, s)

    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=["256,256,1", "256,256,2", "128,128,1", "512,512,1"],
                   help="I,H,layers entries (default: %(default)s)")  # fmt: skip
    p.add_argument("--steps", type=int, default=200, help="steps per timed repeat")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or process CPU time")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]
    if args.quick:
        sizes, args.steps, args.repeats = [(8, 8, 1)], 5, 2
    torch.manual_seed(0)
    print(f"# benchmarks/streaming.py — {dt.date.today()}")
    print(f"machine: {machine()}")
    print(
        f"batch 1, float32, torch.inference_mode; median of {args.repeats} interleaved repeats of {args.steps} steps; "
        f"clock: {args.clock}\n"
    )
    print("| I | H | layers | torch.nn.LSTM one-step call µs | rnnkit LSTM.step µs | ratio | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for I, H, layers in sizes:
        peer = torch.nn.LSTM(I, H, num_layers=layers, batch_first=True).eval()
        ours = LSTM(I, H, num_layers=layers, batch_first=True).eval()
        ours.load_state_dict(peer.state_dict())
        xs = list(torch.randn(args.steps, 1, I).unbind(0))  # each (1, I)
        state = (torch.zeros(layers, 1, H), torch.zeros(layers, 1, H))
        with torch.inference_mode():
            s_peer, s_ours, diff = state, state, 0.0
            for x in xs[:50]:
                y_peer, s_peer = peer(x.view(1, 1, -1), s_peer)
                y_ours, s_ours = ours.step(x, s_ours)
                diff = max(diff, float((y_peer.view(1, -1) - y_ours).abs().max()))
            for a, b in zip(s_peer, s_ours, strict=True):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            assert diff < 1e-5, diff
            times = time_interleaved(
                {"peer": peer_loop(peer, xs, state), "rnnkit": rnnkit_loop(ours, xs, state)},
                args.repeats,
                clock=args.clock,
            )
        t_peer, t_ours = times["peer"] / args.steps, times["rnnkit"] / args.steps
        worst = max(worst, t_ours / t_peer)
        print(
            f"| {I} | {H} | {layers} | {1e6 * t_peer:.1f} | {1e6 * t_ours:.1f} | {t_ours / t_peer:.2f}× | {diff:.1e} |"
        )
        sys.stdout.flush()
    verdict = "met" if worst <= TARGET else "not met"
    print(f"\nlargest ratio: {worst:.2f}× (target ≤ {TARGET}×: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
