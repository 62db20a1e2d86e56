"""The benchmark scripts keep running (a smoke run on tiny sizes; no timing is asserted)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
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


def test_recipes_report_reads_finished_runs(tmp_path, capsys):
    import json

    def run(name, test, best, seconds=120.0):
        (tmp_path / name).mkdir()
        meta = {"metrics": {"test": test, "best_validation": best, "epochs": 3}, "train_seconds": seconds}
        (tmp_path / name / "meta.json").write_text(json.dumps(meta))

    run("pos", {"accuracy": 0.96, "universal_accuracy": 0.969}, {"accuracy": 0.95})
    run("char-lm", {"loss": 1.50}, {"loss": 1.40})
    (tmp_path / "g2p").mkdir()  # unfinished: no meta.json, and --collect never trains
    out_md = tmp_path / "table.md"
    assert load("recipes").main(["pos", "char-lm", "g2p", "--collect", "--runs-dir", str(tmp_path),
                                 "--markdown", str(out_md)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    lines = {line.split("|")[2].strip(): line for line in out.splitlines() if line.startswith("|")}
    universal, full = lines["test accuracy, universal tags"], lines["test accuracy, full Brown tags"]
    assert "96.90%" in universal and "**not met**" in universal
    assert "96.00%" in full and "| met |" in full
    chars = lines["validation nats/char"]
    assert "1.40" in chars and "| met |" in chars  # the validation figure, not the test one
    assert "not run" in out and "3 epochs, 2.0 min" in out and "machine:" in out
    assert out_md.read_text().startswith("| recipe |")
