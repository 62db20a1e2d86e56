"""int8 dynamic quantization against the float model on a sentiment run's test split, in the same process.

For a finished text-classification run folder (default ``runs/quickstart``: ``rnnkit quickstart`` makes it)
this times batched inference over the whole test split — the task's own path (bucketing by length, padding,
batches of 256, the model's probabilities) — for

* ``fp32 torch`` — the run's model as ``rnnkit predict`` runs it (the peer);
* ``int8 onnxruntime`` — ``rnnkit predict --quantize int8``: the exported graph (ONNX ``LSTM`` nodes) with
  ONNX Runtime's dynamic int8 quantization (``DynamicQuantizeLSTM``, int8 MatMuls for the head);
* ``fp32 onnxruntime`` — the same graph unquantized (so the int8 gain and the runtime's share are apart);
* ``int8 torch.ao`` — ``torch.ao.quantization``'s dynamic int8 LSTM + Linear (the PyTorch-only option);

round-robin (interleaved repeats, median), and the test accuracy of each. Target (issue #7): int8 at least
1.8x faster than fp32 torch, at most 0.5 points less accurate. Run:
``python benchmarks/quantize.py [RUN] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, time_interleaved  # noqa: E402


def torch_int8(model):
    """``torch.ao.quantization.quantize_dynamic`` of the LSTM/GRU stacks and Linear layers. Its mapping is by
    exact type, and rnnkit's drop-in layers subclass ``nn.LSTM``: each stack is copied into a plain
    ``nn.LSTM``/``nn.GRU`` first (same parameter names), then quantized; ``lengths`` become a PackedSequence."""
    import copy

    import torch.ao.nn.quantized.dynamic as nnqd
    from torch import nn
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Packed(nn.Module):
        def __init__(self, q, mode):
            super().__init__()
            self.q, self.mode = q, mode

        def forward(self, x, hx=None, lengths=None):
            T = x.shape[1]
            if lengths is not None:
                x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, state = self.q(x, hx)
            if lengths is not None:
                out = pad_packed_sequence(out, batch_first=True, total_length=T)[0]
            return out, state

    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    model = copy.deepcopy(model).eval()
    for member in getattr(model, "members", [model]):  # an ensemble: each member's stacks
        stacks = member.encoder.stacks
        for i, stack in enumerate(stacks):
            plain_cls = nn.LSTM if stack.mode == "LSTM" else nn.GRU
            plain = plain_cls(stack.input_size, stack.hidden_size, stack.num_layers, batch_first=True,
                              bidirectional=stack.bidirectional)  # fmt: skip
            plain.load_state_dict(stack.state_dict())
            plain.qconfig = default_dynamic_qconfig
            quantized = nnqd.LSTM.from_float(plain) if stack.mode == "LSTM" else nnqd.GRU.from_float(plain)
            stacks[i] = Packed(quantized, stack.mode)
    return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", nargs="?", default="runs/quickstart", help="a text-classification run folder")
    ap.add_argument("--repeats", type=int, default=7, help="timed passes over the test split per variant")
    ap.add_argument("--no-torch-ao", action="store_true", help="skip the torch.ao int8 variant")
    args = ap.parse_args(argv)
    run_dir = Path(args.run)
    if not (run_dir / "meta.json").is_file():
        print(f"{run_dir}: no finished run folder here; make one with `rnnkit quickstart` (or give its path)",
              file=sys.stderr)  # fmt: skip
        return 2

    import onnxruntime as ort

    from rnnkit.export import QuantizedModel, int8_onnx
    from rnnkit.export.onnx import export_onnx
    from rnnkit.tasks.runner import load_run, prepared_task

    run = load_run(run_dir)
    if run.meta["task"] != "text-classification":
        print(f"{run_dir}: a {run.meta['task']} run; this benchmark reads text-classification runs", file=sys.stderr)
        return 2
    task = prepared_task(run)  # the run's test split with its own tokenizer
    test = task.splits["test"]
    ids, labels = test["ids"], torch.tensor(test["labels"])
    int8_path = int8_onnx(run_dir, run.model, run.meta["files"]["model.safetensors"]["sha256"])
    with tempfile.TemporaryDirectory() as tmp:
        export_onnx(run.model, Path(tmp) / "fp32.onnx")
        models = {
            "fp32 torch": run.model,
            "int8 onnxruntime": QuantizedModel(run.model, int8_path),
            "fp32 onnxruntime": QuantizedModel(run.model, Path(tmp) / "fp32.onnx"),
        }
        if not args.no_torch_ao:
            models["int8 torch.ao"] = torch_int8(run.model)
        accuracy = {}
        with torch.no_grad():
            for name, m in models.items():
                accuracy[name] = float((task.probabilities(m, ids, len(ids)).argmax(-1) == labels).float().mean())
            fns = {name: (lambda m=m: task.probabilities(m, ids, len(ids))) for name, m in models.items()}
            times = time_interleaved(fns, args.repeats, warmup=1)

    base_t, base_a = times["fp32 torch"], accuracy["fp32 torch"]
    tokens = sum(len(x) for x in ids)
    print(f"# int8 dynamic quantization, {run_dir} ({len(ids)} test texts, {tokens} tokens), {dt.date.today()}")
    print(f"# machine: {machine()}; onnxruntime {ort.__version__}")
    print(f"# model: {run.meta['model']['kind']}, {run.model.num_parameters():,} parameters")
    print("| variant | test pass (s) | speed-up vs fp32 torch | test accuracy | vs fp32 torch (points) |")
    print("|---|---|---|---|---|")
    for name in models:
        print(f"| {name} | {times[name]:.3f} | {base_t / times[name]:.2f}x | {accuracy[name]:.4f} | "
              f"{100 * (accuracy[name] - base_a):+.2f} |")  # fmt: skip
    speed = base_t / times["int8 onnxruntime"]
    change = 100 * (accuracy["int8 onnxruntime"] - base_a)
    ok = speed >= 1.8 and change >= -0.5
    print(f"target (int8 >= 1.8x faster, <= 0.5 point accuracy loss): {'met' if ok else 'NOT met'} "
          f"({speed:.2f}x faster, accuracy {change:+.2f} points)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
