"""The benchmark scripts keep running (a smoke run on tiny sizes; no timing is asserted)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_layers_benchmark_smoke(capsys):
    assert load("layers").main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("torch.nn.LSTM", "rnnkit LSTM (fused)", "reference loop", "LayerNorm-LSTM", "minGRU"):
        assert name in out
    assert "matmul ceiling" in out and "machine:" in out


def test_ptb_epoch_benchmark_smoke(capsys):
    assert load("ptb_epoch").main(["--smoke", "--amp"]) == 0
    out = capsys.readouterr().out
    for name in ("plain PyTorch script", "rnnkit Trainer", "amp (bf16)", "rnnkit / plain epoch time", "machine:"):
        assert name in out
    assert "batch data s / epoch" in out and "compute s / epoch" in out
