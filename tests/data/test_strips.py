"""Digit strips: shape and placement, captions in words, determinism, split separation, and the captioning task's
``mnist-5k-strips`` source (its options, resizing, and a tiny train -> test run)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.data import registry
from rnnkit.data.strips import DIGIT_WORDS, compose_strips, mnist_digits, mnist_strips, shift
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


# -- train-only distortion: strip_rotate / strip_scale ------------------------------------------------------
def todays_strips(images, labels, count, *, min_digits, max_digits, jitter, rng):
    """``compose_strips`` as it was before rotate/scale: the byte-for-byte reference for no distortion."""
    strips = np.zeros((count, 1, 28, 28 * max_digits), dtype=np.uint8)
    captions, chosen = [], []
    for i in range(count):
        n = int(rng.integers(min_digits, max_digits + 1))
        idx = [int(j) for j in rng.integers(0, len(images), n)]
        for k, j in enumerate(idx):
            dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
            strips[i, 0, :, 28 * k : 28 * (k + 1)] = shift(images[j], dy, dx)
        captions.append(" ".join(DIGIT_WORDS[int(labels[j])] for j in idx))
        chosen.append(idx)
    return strips, captions, chosen


def bright(image: np.ndarray) -> np.ndarray:
    """(row, column) of the bar's pixels (the corner mark is too dim to count)."""
    return np.argwhere(image >= 100).astype(float)


def tilt(image: np.ndarray) -> float:
    """The bar's long axis in degrees from vertical, positive when its top leans left (turned counterclockwise)."""
    rc = bright(image)
    rc -= rc.mean(0)
    cov = rc.T @ rc
    return float(np.degrees(0.5 * np.arctan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])))


def test_zero_distortion_gives_todays_strips_byte_for_byte():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (50, 28, 28)).astype(np.uint8)
    labels = [i % 10 for i in range(50)]
    for jitter in (0, 2):
        old_rng, new_rng = np.random.default_rng([7, 0]), np.random.default_rng([7, 0])
        want = todays_strips(images, labels, 300, min_digits=1, max_digits=4, jitter=jitter, rng=old_rng)
        got = compose_strips(
            images, labels, 300, min_digits=1, max_digits=4, jitter=jitter, rotate=0.0, scale=0.0, rng=new_rng
        )
        assert got[0].tobytes() == want[0].tobytes() and got[1:] == want[1:]
        assert old_rng.integers(1 << 30) == new_rng.integers(1 << 30)  # no extra numbers were drawn


def test_distort_matches_a_hand_rotation_and_scales_about_the_centre():
    from rnnkit.data.strips import distort

    bar = np.zeros((1, 28, 28), dtype=np.uint8)
    bar[0, 4:24, 12:16] = 200  # a vertical bar with a foot to the right: nothing symmetric about it
    bar[0, 20:24, 16:22] = 120
    assert np.array_equal(distort(bar, [0.0], [1.0]), bar)
    assert np.array_equal(distort(bar, [90.0], [1.0])[0], np.rot90(bar[0]))  # counterclockwise as displayed
    assert np.array_equal(distort(bar, [-90.0], [1.0])[0], np.rot90(bar[0], -1))
    # any angle and factor: the same map as torch's affine grid sampler (bilinear, zeros outside), up to rounding
    for angle, factor in [(30.0, 1.0), (-17.0, 1.2), (40.0, 0.7)]:
        t, s = np.radians(angle), factor
        theta = torch.tensor([[[np.cos(t) / s, -np.sin(t) / s, 0.0], [np.sin(t) / s, np.cos(t) / s, 0.0]]])
        grid = torch.nn.functional.affine_grid(theta, [1, 1, 28, 28], align_corners=True)
        hand = torch.nn.functional.grid_sample(torch.from_numpy(bar[None]).double(), grid.double(), align_corners=True)
        got = distort(bar, [angle], [factor])
        assert got.dtype == np.uint8 and np.abs(got[0].astype(float) - hand[0, 0].numpy()).max() <= 0.51
    only_bar = bar.copy()
    only_bar[0, 20:24, 16:22] = 0
    assert (
        abs(tilt(distort(only_bar, [30.0], [1.0])[0]) - 30) < 3
        and abs(tilt(distort(only_bar, [-20.0], [1.0])[0]) + 20) < 3
    )

    def height(image):
        rows = bright(image)[:, 0]
        return rows.max() - rows.min() + 1

    assert height(only_bar[0]) == 20
    assert abs(height(distort(only_bar, [0.0], [1.25])[0]) - 25) <= 1  # grows about the centre ...
    assert abs(height(distort(only_bar, [0.0], [0.75])[0]) - 15) <= 1  # ... and shrinks
    assert abs(bright(distort(only_bar, [0.0], [0.75])[0])[:, 0].mean() - 13.5) < 0.6
    with pytest.raises(ValueError, match="N angles and N positive factors"):
        distort(bar, [1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="N angles and N positive factors"):
        distort(bar, [1.0], [0.0])


def test_rotate_and_scale_turn_and_resize_each_digit_reproducibly():
    images = np.stack([digit(d, 0) for d in range(10)])
    plain = compose_strips(images, list(range(10)), 60, max_digits=3, rng=np.random.default_rng(2))[0]
    turned, _, chosen = compose_strips(
        images, list(range(10)), 60, max_digits=3, rotate=20, rng=np.random.default_rng(2)
    )
    again = compose_strips(images, list(range(10)), 60, max_digits=3, rotate=20, rng=np.random.default_rng(2))[0]
    assert turned.shape == plain.shape == (60, 1, 28, 84) and turned.dtype == np.uint8
    assert np.array_equal(turned, again) and not np.array_equal(turned, plain)
    tilts = [
        tilt(s[0, :, 28 * k : 28 * (k + 1)]) for s, idx in zip(turned, chosen, strict=True) for k in range(len(idx))
    ]
    assert max(abs(t) for t in tilts) < 20 + 3 and min(tilts) < -10 and max(tilts) > 10  # within +-20, both ways
    scaled, _, chosen = compose_strips(images, list(range(10)), 60, max_digits=3, scale=0.3, jitter=1,
                                       rng=np.random.default_rng(3))  # fmt: skip
    heights = []
    for s, idx in zip(scaled, chosen, strict=True):
        for k in range(len(idx)):
            rows = bright(s[0, :, 28 * k : 28 * (k + 1)])[:, 0]
            heights.append(rows.max() - rows.min() + 1)
    assert min(heights) >= 20 * 0.7 - 1 and max(heights) <= 20 * 1.3 + 1  # the bar is 20 rows high
    assert min(heights) < 18 and max(heights) > 22
    assert scaled.any() and scaled.max() <= 200  # bilinear never exceeds the brightest pixel
    for bad, match in [({"rotate": 46}, "rotate must be in 0..45"), ({"rotate": -1}, "rotate must be in 0..45"),
                       ({"scale": 0.5}, "scale must be in"), ({"scale": -0.1}, "scale must be in")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            compose_strips(images, list(range(10)), 1, rng=np.random.default_rng(0), **bad)


def test_captioning_distorts_only_the_train_strips(fake_digits, tmp_path):
    base = ["data.dataset=mnist-5k-strips", "data.image_size=[28,84]", "data.max_digits=3", "data.strip_resample=true"]
    base += ["data.strips_per_split.train=12", "data.strips_per_split.validation=5", "data.strips_per_split.test=6"]

    def task(name, *sets):
        t = Captioning(resolve_config("captioning", overrides=[*base, *sets])[1])
        return t, t.prepare(tmp_path / name)

    plain, plain_info = task("plain")
    zero, _ = task("zero", "data.strip_rotate=0", "data.strip_scale=0")
    bent, info = task("bent", "data.strip_rotate=20", "data.strip_scale=0.2")
    again, _ = task("again", "data.strip_rotate=20", "data.strip_scale=0.2")
    assert info["train_rotate"] == 20 and info["train_scale"] == 0.2
    assert plain_info["train_rotate"] == plain_info["train_scale"] == 0
    for s in ("validation", "test"):
        assert torch.equal(bent.splits[s]["images"], plain.splits[s]["images"])
        assert bent.splits[s]["texts"] == plain.splits[s]["texts"]
    assert torch.equal(zero.splits["train"]["images"], plain.splits["train"]["images"])
    assert not torch.equal(bent.splits["train"]["images"], plain.splits["train"]["images"])
    assert torch.equal(bent.splits["train"]["images"], again.splits["train"]["images"])
    digits = mnist_digits()["train"]  # the train strips are compose_strips' distorted strips of the train digits
    want, captions, _ = compose_strips(
        *digits, 12, max_digits=3, rotate=20, scale=0.2, rng=np.random.default_rng([0, 0])
    )
    assert np.array_equal(bent.splits["train"]["images"].numpy(), want)
    assert [t[0] for t in bent.splits["train"]["texts"]] == captions

    def epoch_images(t, epoch):
        return torch.cat([b["images"] for b in t._batches("train", epoch)])

    assert torch.equal(epoch_images(zero, 1), epoch_images(plain, 1))
    assert not torch.equal(epoch_images(bent, 1), epoch_images(plain, 1))  # resampled epochs are distorted too
    assert torch.equal(epoch_images(bent, 1), epoch_images(again, 1))
    assert not torch.equal(epoch_images(bent, 1), epoch_images(bent, 2))


def test_strip_rotate_and_scale_out_of_range_are_one_line_cli_errors(fake_digits, tmp_path, capsys):
    from rnnkit.cli.main import main

    args = ["train", "captioning", "--runs-dir", str(tmp_path / "runs"), "--quiet", "--set"]
    for bad in ("data.strip_rotate=90", "data.strip_rotate=-1", "data.strip_scale=0.5", "data.strip_scale=-0.2"):
        assert main([*args, "data.dataset=mnist-5k-strips", bad]) == 2
        err = capsys.readouterr().err
        assert bad.split("=")[0] in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_tiny_captioner_trains_on_distorted_resampled_strips(fake_digits, tmp_path):
    overrides = [
        "data.dataset=mnist-5k-strips", "data.image_size=[28,56]", "data.max_digits=2", "data.strip_resample=true",
        "data.strip_rotate=15", "data.strip_scale=0.15", "data.strip_jitter=1",
        "data.strips_per_split.train=32", "data.strips_per_split.validation=8", "data.strips_per_split.test=8",
        "model.cnn_channels=[4]", "model.cond_dim=16", "model.hidden_size=16", "model.embed_dim=8",
        "train.epochs=2", "train.batch_size=16",
    ]  # fmt: skip
    summary = runner.train("captioning", overrides=overrides, runs_dir=tmp_path, quiet=True)
    assert {"exact_match", "token_accuracy", "loss"} <= set(summary.metrics)
    dataset = json.loads((summary.path / "meta.json").read_text())["dataset"]
    assert dataset["train_rotate"] == 15 and dataset["train_scale"] == 0.15 and dataset["jitter"] == 1
