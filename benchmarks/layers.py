"""Training-step time of rnnkit's layers against torch.nn.LSTM/GRU, measured in the same run.

For each size it times one training step (forward, a scalar loss over every output, backward) of

* ``torch.nn.LSTM`` / ``torch.nn.GRU`` — the peers;
* ``rnnkit.layers.LSTM`` / ``GRU`` on the fused path (target ≤ 1.03× the peer: the wrapper costs nothing);
* ``rnnkit.layers.LSTM(implementation="loop")`` — the time loop over rnnkit's own cells, i.e. the
  hand-differentiated LSTM loop of ``rnnkit.layers.fastloop`` (target ≤ 1.5×), and
  ``implementation="reference"`` — ``recur`` per step under autograd (the oracle);
* ``Recurrent(LayerNormLSTMCell)`` — no CPU peer has a fused LN-LSTM (target ≤ 1.6× ``nn.LSTM``), on
  the fast loop and on the reference loop;
* ``rnnkit.layers.GRU(implementation="loop")`` — the native (C++) GRU loop (target ≥ 1.2× faster than
  ``nn.GRU``), and ``Recurrent(LayerNormGRUCell)`` on the same loop (target ≤ 1.3× ``nn.GRU``);
* ``Recurrent(MinGRUCell)`` — the chunked linear-space scan, against ``nn.GRU``;

and prints ratios to the peer plus the achieved GFLOP/s of the matmuls against a measured matmul ceiling; then
the loops' own per-step matmuls timed alone, the most a loop could reach at each size.
Run: ``python benchmarks/layers.py`` (``--quick`` for a smoke run, ``--device cuda`` on a GPU; ``--clock cpu``
with ``OMP_NUM_THREADS=1`` times CPU time, for a shared machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, matmul_ceiling, time_interleaved  # noqa: E402
from rnnkit.cells import LayerNormGRUCell, LayerNormLSTMCell, MinGRUCell  # noqa: E402
from rnnkit.layers import GRU, LSTM, Recurrent  # noqa: E402

DEFAULT_SIZES = [(64, 256, 128, 256), (32, 128, 64, 128), (16, 1024, 64, 128)]


def step_fn(module, x, device):
    def step():
        out = module(x)[0]
        out.sum().backward()
        module.zero_grad(set_to_none=True)

    return step


def flops_per_step(B, T, I, H, gates):
    """Matmul FLOPs of one training step (forward + backward ≈ 3× forward)."""
    return 3 * 2 * B * T * (I + H) * gates * H


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="*", default=None, help="B,T,I,H entries (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats: a smoke run")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time or process CPU time")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes] if args.sizes else DEFAULT_SIZES
    if args.quick:
        sizes, args.repeats = [(8, 32, 16, 32)], 2
    dev = args.device
    torch.manual_seed(0)
    ceiling = matmul_ceiling(device=dev, clock=args.clock)
    print(f"# benchmarks/layers.py — {dt.date.today()}")
    print(f"machine: {machine()}")
    print(f"matmul ceiling (1024² float32): {ceiling:.1f} GFLOP/s; clock: {args.clock}\n")
    print("| B | T | I | H | model | ms / training step | ratio to peer | GFLOP/s | % of ceiling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for B, T, I, H in sizes:
        x = torch.randn(B, T, I, device=dev)
        models = {
            "torch.nn.LSTM": (torch.nn.LSTM(I, H, batch_first=True), 4, None),
            "rnnkit LSTM (fused)": (LSTM(I, H, batch_first=True), 4, "torch.nn.LSTM"),
            "rnnkit LSTM (loop)": (LSTM(I, H, batch_first=True, implementation="loop"), 4, "torch.nn.LSTM"),
            "rnnkit LSTM (reference loop)": (
                LSTM(I, H, batch_first=True, implementation="reference"),
                4,
                "torch.nn.LSTM",
            ),
            "rnnkit LayerNorm-LSTM": (Recurrent(LayerNormLSTMCell, I, H), 4, "torch.nn.LSTM"),
            "rnnkit LayerNorm-LSTM (reference loop)": (
                Recurrent(LayerNormLSTMCell, I, H, implementation="reference"),
                4,
                "torch.nn.LSTM",
            ),
            "torch.nn.GRU": (torch.nn.GRU(I, H, batch_first=True), 3, None),
            "rnnkit GRU (fused)": (GRU(I, H, batch_first=True, implementation="fused"), 3, "torch.nn.GRU"),
            "rnnkit GRU (loop)": (GRU(I, H, batch_first=True, implementation="loop"), 3, "torch.nn.GRU"),
            "rnnkit LayerNorm-GRU": (Recurrent(LayerNormGRUCell, I, H), 3, "torch.nn.GRU"),
            "rnnkit minGRU (chunked scan)": (Recurrent(MinGRUCell, I, H), None, "torch.nn.GRU"),
        }
        for m, *_ in models.values():
            m.to(dev)
        fns = {k: step_fn(m, x, dev) for k, (m, _, _) in models.items()}
        times = time_interleaved(fns, args.repeats, device=dev, clock=args.clock)
        for k, (_, gates, peer) in models.items():
            t = times[k]
            ratio = f"{t / times[peer]:.2f}×" if peer else "1.00× (peer)"
            if gates:
                gf = flops_per_step(B, T, I, H, gates) / t / 1e9
                perf = f"{gf:.1f} | {100 * gf / ceiling:.0f}%"
            else:
                perf = "— | —"  # minGRU does no hidden-to-hidden matmul: FLOPs are not comparable
            print(f"| {B} | {T} | {I} | {H} | {k} | {1e3 * t:.1f} | {ratio} | {perf} |")
        sys.stdout.flush()
    step_products(sizes, args, ceiling)
    return 0


def step_products(sizes, args, ceiling) -> None:
    """The loops' own per-step matmuls, timed alone: for each step the forward's ``h (B, H) @ W_hh^T`` and the
    backward's ``dG (B, G) @ W_hh``, T times, for the GRU (G = 3H) and the LSTM (G = 4H). What a native loop
    could reach if its row passes cost nothing; the input products and dW_hh (large matmuls) are left out."""
    print("\nThe loops' per-step matmuls alone (forward h @ W_hh^T and backward dG @ W_hh, T steps):\n")
    print("| B | T | H | G | ms for T steps | GFLOP/s | % of ceiling |")
    print("|---|---|---|---|---|---|---|")
    for B, T, _, H in sizes:
        fns, flops = {}, {}
        for G in (3 * H, 4 * H):
            dev = args.device
            h, w, d = torch.randn(B, H, device=dev), torch.randn(G, H, device=dev), torch.randn(B, G, device=dev)
            o1, o2 = torch.empty(B, G, device=dev), torch.empty(B, H, device=dev)

            def run(h=h, w=w, d=d, o1=o1, o2=o2, T=T):
                for _ in range(T):
                    torch.mm(h, w.t(), out=o1)
                    torch.mm(d, w, out=o2)

            fns[G], flops[G] = run, 2 * 2 * B * H * G * T
        times = time_interleaved(fns, args.repeats, device=args.device, clock=args.clock)
        for G, t in times.items():
            gf = flops[G] / t / 1e9
            print(f"| {B} | {T} | {H} | {G} | {1e3 * t:.1f} | {gf:.1f} | {100 * gf / ceiling:.0f}% |")


if __name__ == "__main__":
    raise SystemExit(main())
