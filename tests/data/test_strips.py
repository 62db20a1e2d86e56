"""Digit strips: shape and placement, captions in words, determinism, split separation, and the captioning task's
``mnist-5k-strips`` source (its options, resizing, and a tiny train -> test run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.data import registry
from rnnkit.data.strips import DIGIT_WORDS, compose_strips, mnist_strips, shift
from rnnkit.errors import RnnkitError
from rnnkit.tasks import runner
from rnnkit.tasks.captioning import Captioning
from rnnkit.tasks.runner import resolve_config


def digit(label: int, split: int) -> np.ndarray:
    """A 28 x 28 "digit" whose pixels say its label and split (so a strip can be read back exactly)."""
    a = np.zeros((28, 28), dtype=np.uint8)
    a[4:24, 4 + 2 * label : 8 + 2 * label] = 200 + split  # a bar whose place is the label
    a[0, 0] = 1 + split
    return a


def fake_mnist(n_per_split=(40, 10, 10)):
    splits = {}
    for k, (s, n) in enumerate(zip(("train", "validation", "test"), n_per_split, strict=True)):
        splits[s] = [{"pixels": digit(i % 10, k).ravel().tolist(), "label": i % 10} for i in range(n)]
    return splits


@pytest.fixture
def fake_digits(monkeypatch):
    splits = fake_mnist()
    real = registry.load_splits
    monkeypatch.setattr(registry, "load_splits", lambda name: splits if name == "mnist-5k" else real(name))
    return splits


def test_compose_strips_places_digits_side_by_side_and_says_them():
    images = np.stack([digit(d, 0) for d in range(10)])
    strips, captions, chosen = compose_strips(
        images, list(range(10)), 50, min_digits=2, max_digits=4, rng=np.random.default_rng(0)
    )
    assert strips.shape == (50, 1, 28, 112) and strips.dtype == np.uint8
    for strip, caption, idx in zip(strips, captions, chosen, strict=True):
        assert 2 <= len(idx) <= 4 and caption == " ".join(DIGIT_WORDS[j] for j in idx)
        for k in range(4):
            cell = strip[0, :, 28 * k : 28 * (k + 1)]
            assert np.array_equal(cell, images[idx[k]]) if k < len(idx) else not cell.any()
    assert {len(i) for i in chosen} == {2, 3, 4}
    with pytest.raises(ValueError, match="min_digits <= max_digits"):
        compose_strips(images, list(range(10)), 1, min_digits=3, max_digits=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected digit images"):
        compose_strips(images[:, :5], list(range(10)), 1, rng=np.random.default_rng(0))


def test_jitter_moves_each_digit_within_its_cell():
    images = np.stack([digit(d, 0) for d in range(10)])
    strips, _, chosen = compose_strips(
        images, list(range(10)), 40, max_digits=3, jitter=2, rng=np.random.default_rng(1)
    )
    moves = set()
    for strip, idx in zip(strips, chosen, strict=True):
        for k, j in enumerate(idx):
            cell = strip[0, :, 28 * k : 28 * (k + 1)]
            found = [
                (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if np.array_equal(cell, shift(images[j], dy, dx))
            ]
            assert found
            moves.add(found[0])
    assert len(moves) > 10  # the moves vary
    assert np.array_equal(shift(images[3], 0, 0), images[3]) and shift(images[3], 1, 0)[0].sum() == 0
    with pytest.raises(ValueError, match="jitter must be in 0..27"):
        compose_strips(images, list(range(10)), 1, jitter=28, rng=np.random.default_rng(0))


def test_strips_are_deterministic_and_use_only_their_splits_digits(fake_digits):
    counts = {"train": 30, "validation": 20, "test": 20}
    a = mnist_strips(counts, seed=3)
    b = mnist_strips(counts, seed=3)
    c = mnist_strips(counts, seed=4)
    for s in counts:
        assert np.array_equal(a[s][0], b[s][0]) and a[s][1] == b[s][1]
    assert a["train"][1] != c["train"][1]
    for k, s in enumerate(("train", "validation", "test")):
        strips = a[s][0]
        assert len(strips) == counts[s]
        marks = strips[:, 0, 0, ::28]  # each cell's corner says which split its digit came from (0: empty)
        assert set(np.unique(marks)) <= {0, 1 + k}
        bars = strips[strips >= 200]
        assert set(np.unique(bars)) == {200 + k}


def test_captioning_reads_strips_and_its_options_have_an_effect(fake_digits, tmp_path):
    base = ["data.dataset=mnist-5k-strips", "data.image_size=[28,84]", "data.max_digits=3"]
    base += ["data.strips_per_split.train=12", "data.strips_per_split.validation=5", "data.strips_per_split.test=6"]
    _, cfg = resolve_config("captioning", overrides=base)
    task = Captioning(cfg)
    info = task.prepare(tmp_path)
    assert info["sizes"] == {"train": 12, "validation": 5, "test": 6} and info["digits"] == [1, 3]
    assert tuple(task.splits["test"]["images"].shape) == (6, 1, 28, 84)
    assert set(task.vocab.tokens[4:]) <= set(DIGIT_WORDS)
    assert all(1 <= len(t.split()) <= 3 for rs in task.splits["train"]["texts"] for t in rs)
    # min_digits, the seed and a different image size
    _, one = resolve_config("captioning", overrides=[*base, "data.min_digits=3"])
    t1 = Captioning(one)
    t1.prepare(tmp_path / "one")
    assert all(len(t.split()) == 3 for rs in t1.splits["train"]["texts"] for t in rs)
    _, seeded = resolve_config("captioning", overrides=[*base, "data.strip_seed=1"])
    t2 = Captioning(seeded)
    t2.prepare(tmp_path / "seed")
    assert t2.splits["train"]["texts"] != task.splits["train"]["texts"]
    _, jittered = resolve_config("captioning", overrides=[*base, "data.strip_jitter=3"])
    t4 = Captioning(jittered)
    assert t4.prepare(tmp_path / "jitter")["jitter"] == 3
    assert not torch.equal(t4.splits["test"]["images"], task.splits["test"]["images"])
    # strip_resample: new train strips each epoch after the first (the same for a given epoch); else the same strips

    def epoch_pixels(t, epoch):  # order-free: every train image of the epoch, summed
        return sum(float(b["images"].sum()) for b in t._batches("train", epoch))

    _, resampled = resolve_config("captioning", overrides=[*base, "data.strip_resample=true"])
    t5 = Captioning(resampled)
    t5.prepare(tmp_path / "resample")
    assert epoch_pixels(task, 0) == epoch_pixels(task, 1) == epoch_pixels(t5, 0)
    assert epoch_pixels(t5, 1) != epoch_pixels(t5, 0) and epoch_pixels(t5, 1) == epoch_pixels(t5, 1)
    assert epoch_pixels(t5, 2) != epoch_pixels(t5, 1)
    _, small = resolve_config("captioning", overrides=[*base, "data.image_size=[14,42]"])
    t3 = Captioning(small)
    t3.prepare(tmp_path / "small")
    assert tuple(t3.splits["train"]["images"].shape[1:]) == (1, 14, 42)
    with pytest.raises(Exception, match="min_digits .4. exceeds data.max_digits .3."):
        resolve_config("captioning", overrides=[*base, "data.min_digits=4"])
    _, none = resolve_config("captioning")
    with pytest.raises(RnnkitError, match="or set data.dataset=mnist-5k-strips"):
        Captioning(none).prepare(tmp_path / "none")


def test_a_tiny_strip_captioner_trains_and_writes_its_plot(fake_digits, tmp_path):
    overrides = [
        "data.dataset=mnist-5k-strips", "data.image_size=[28,56]", "data.max_digits=2",
        "data.strips_per_split.train=64", "data.strips_per_split.validation=8", "data.strips_per_split.test=8",
        "model.cnn_channels=[4]", "model.cond_dim=16", "model.hidden_size=16", "model.embed_dim=8",
        "train.epochs=1", "train.batch_size=16",
    ]  # fmt: skip
    summary = runner.train("captioning", overrides=overrides, runs_dir=tmp_path, quiet=True)
    assert {"exact_match", "token_accuracy", "loss"} <= set(summary.metrics)
    meta = json.loads((summary.path / "meta.json").read_text())
    assert meta["dataset"]["name"] == "mnist-5k-strips" and "plots/captions.png" in meta["plots"]
    rows = [json.loads(line) for line in (summary.path / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["image"] == "test-00000"
