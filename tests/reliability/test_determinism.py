"""Determinism (issue #9, item 6): on the CPU the same seed and config give identical metrics and weights, run
after run (see ``docs/reliability.md#determinism`` for what holds on GPUs)."""

from __future__ import annotations

import json

from reliability_helpers import same_run, train_argv
from safetensors.torch import load_file


def test_same_seed_same_config_same_metrics_on_cpu(forkserver, reviews, reference, tmp_path):
    """A second process trains the reference run's config again: every epoch record (but its timing), the test
    metrics and the weights are identical. A different seed changes them (the seed is what decides)."""
    status, err = forkserver.run(train_argv(reviews, tmp_path, "again"))
    assert status == 0, err
    same_run(reference["run"], tmp_path / "again")

    status, err = forkserver.run(train_argv(reviews, tmp_path, "other-seed", "train.seed=1"))
    assert status == 0, err
    a = load_file(reference["run"] / "model.safetensors")
    b = load_file(tmp_path / "other-seed" / "model.safetensors")
    assert any(not (a[k] == b[k]).all() for k in a)
    ra = (reference["run"] / "metrics.jsonl").read_text().splitlines()
    rb = (tmp_path / "other-seed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["train_loss"] for r in ra] != [json.loads(r)["train_loss"] for r in rb]
