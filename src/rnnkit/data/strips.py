"""Digit strips for captioning: ``mnist-5k`` digits side by side, captioned with their spoken words.

A strip of ``n`` digits (``min_digits <= n <= max_digits``, uniform) is ``28 x (28 * max_digits)`` grey
levels (uint8, white on black like MNIST): digit ``j`` fills columns ``28 j .. 28 j + 27``, the rest is
black; with ``jitter`` each digit is moved by up to that many pixels in both directions (what leaves its
28 x 28 cell is cut, what it uncovers is black). Its caption is the digits' words, ``"three one four"``.
Everything is drawn from ``numpy.random.default_rng([seed, split number])`` (train 0, validation 1, test 2),
so the same settings give the same strips on every machine, and a split's strips use only that split's
digits (mnist-5k rule: row ``i % 10 == 0`` test, ``== 1`` validation), so no test digit is seen in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .splits import SPLITS

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIDE = 28  # MNIST digits are 28 x 28


def compose_strips(
    images: np.ndarray,
    labels: Sequence[int],
    count: int,
    *,
    min_digits: int = 1,
    max_digits: int = 5,
    jitter: int = 0,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """``count`` strips from digit ``images`` (N, 28, 28) uint8 -> strips (count, 1, 28, 28 * max_digits) uint8,
    their captions, and the indices of the digits each strip holds."""
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits} and {max_digits}")
    if not 0 <= jitter < SIDE:
        raise ValueError(f"jitter must be in 0..{SIDE - 1} pixels, got {jitter}")
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or len(images) != len(labels) or not len(images):
        raise ValueError(f"expected digit images (N, 28, 28) and N labels, got {images.shape} and {len(labels)}")
    strips = np.zeros((count, 1, SIDE, SIDE * max_digits), dtype=np.uint8)
    captions, chosen = [], []
    for i in range(count):
        n = int(rng.integers(min_digits, max_digits + 1))
        idx = [int(j) for j in rng.integers(0, len(images), n)]
        for k, j in enumerate(idx):
            dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
            strips[i, 0, :, SIDE * k : SIDE * (k + 1)] = shift(images[j], dy, dx)
        captions.append(" ".join(DIGIT_WORDS[int(labels[j])] for j in idx))
        chosen.append(idx)
    return strips, captions, chosen


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``image`` moved down ``dy`` and right ``dx`` pixels (negative: up / left); uncovered pixels are 0."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def mnist_digits() -> dict[str, tuple[np.ndarray, list[int]]]:
    """Every split's ``mnist-5k`` digits (N, 28, 28) uint8 and labels (the dataset is fetched on first use)."""
    from . import registry

    digits = registry.load_splits("mnist-5k")
    return {
        s: (
            np.asarray([r["pixels"] for r in digits[s]], dtype=np.uint8).reshape(-1, SIDE, SIDE),
            [int(r["label"]) for r in digits[s]],
        )
        for s in SPLITS
    }


def mnist_strips(
    counts: dict[str, int], *, min_digits: int = 1, max_digits: int = 5, jitter: int = 0, seed: int = 0
) -> dict[str, tuple[np.ndarray, list[str], list[list[int]]]]:
    """Strips of every split from the ``mnist-5k`` registry dataset, split ``k`` drawn with ``rng([seed, k])``."""
    digits = mnist_digits()
    return {
        split: compose_strips(
            *digits[split],
            counts[split],
            min_digits=min_digits,
            max_digits=max_digits,
            jitter=jitter,
            rng=np.random.default_rng([seed, number]),
        )  # fmt: skip
        for number, split in enumerate(SPLITS)
    }
