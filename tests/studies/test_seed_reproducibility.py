"""The seed is explicit in every run folder (config.yaml, meta.json, ``rnnkit evaluate``), and a CPU run is
bit-reproducible with the same seed, thread count and machine: the premise of comparing settings over seeds."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from rnnkit.cli.main import main
from rnnkit.tasks import runner

TINY = ["train.epochs=2", "model.hidden_size=8", "train.batch_size=32"]  # the recipe's dropout 0.3 stays: RNG in use


def without_timing(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_same_seed_same_run_other_seed_other_run(fake_rotten_tomatoes, tmp_path, capsys):
    fake_rotten_tomatoes()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what the guarantee needs: the same thread count for both runs
    try:
        runs = [
            runner.train("sentiment", overrides=[*TINY, f"train.seed={s}"], runs_dir=tmp_path, name=name, quiet=True)
            for name, s in (("a", 7), ("b", 7), ("c", 8))
        ]
    finally:
        torch.set_num_threads(threads)
    a, b, c = (load_file(r.path / "model.safetensors") for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    assert without_timing(runs[0].history) == without_timing(runs[1].history)
    assert runs[0].metrics == runs[1].metrics
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert without_timing(runs[0].history) != without_timing(runs[2].history)

    meta = json.loads((runs[2].path / "meta.json").read_text())
    assert meta["seed"] == 8 and "seed: 8" in (runs[2].path / "config.yaml").read_text()
    assert main(["evaluate", str(runs[2].path)]) == 0
    captured = capsys.readouterr()
    assert "train.seed=8" in captured.err and json.loads(captured.out) == runs[2].metrics
