"""Digit strips for captioning: ``mnist-5k`` digits side by side, captioned with their spoken words.

A strip of ``n`` digits (``min_digits <= n <= max_digits``, uniform) is ``28 x (28 * max_digits)`` grey
levels (uint8, white on black like MNIST): digit ``j`` fills columns ``28 j .. 28 j + 27``, the rest is
black; with ``jitter`` each digit is moved by up to that many pixels in both directions (what leaves its
28 x 28 cell is cut, what it uncovers is black). With ``rotate`` / ``scale`` each digit is first turned by an
angle uniform in [-rotate, rotate] degrees (positive: counterclockwise as displayed) and scaled by a factor uniform
in [1 - scale, 1 + scale] about its centre (:func:`distort`: one affine map, bilinear, outside = 0), then moved.
Its caption is the digits' words, ``"three one four"``.
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
MAX_ROTATE = 45  # degrees
MAX_SCALE = 0.5


def compose_strips(
    images: np.ndarray,
    labels: Sequence[int],
    count: int,
    *,
    min_digits: int = 1,
    max_digits: int = 5,
    jitter: int = 0,
    rotate: float = 0.0,
    scale: float = 0.0,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """``count`` strips from digit ``images`` (N, 28, 28) uint8 -> strips (count, 1, 28, 28 * max_digits) uint8,
    their captions, and the indices of the digits each strip holds.

    Per digit, ``rng`` draws (when ``rotate`` or ``scale`` is set) two uniforms for the angle and the factor, then
    (when ``jitter`` is set) the move; with ``rotate = scale = 0`` nothing more is drawn than without them."""
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {min_digits} and {max_digits}")
    if not 0 <= jitter < SIDE:
        raise ValueError(f"jitter must be in 0..{SIDE - 1} pixels, got {jitter}")
    if not 0 <= rotate <= MAX_ROTATE:
        raise ValueError(f"rotate must be in 0..{MAX_ROTATE} degrees, got {rotate}")
    if not 0 <= scale < MAX_SCALE:
        raise ValueError(f"scale must be in [0, {MAX_SCALE}), got {scale}")
    images = np.asarray(images, dtype=np.uint8)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or len(images) != len(labels) or not len(images):
        raise ValueError(f"expected digit images (N, 28, 28) and N labels, got {images.shape} and {len(labels)}")
    strips = np.zeros((count, 1, SIDE, SIDE * max_digits), dtype=np.uint8)
    captions, chosen = [], []
    distorting = bool(rotate or scale)
    cells, angles, factors = [], [], []  # (strip, cell, digit, dy, dx) and, when distorting, each one's warp
    for i in range(count):
        n = int(rng.integers(min_digits, max_digits + 1))
        idx = [int(j) for j in rng.integers(0, len(images), n)]
        for k, j in enumerate(idx):
            if distorting:
                a, f = rng.uniform(-1.0, 1.0, 2)
                angles.append(rotate * a)
                factors.append(1.0 + scale * f)
            dy, dx = (int(v) for v in rng.integers(-jitter, jitter + 1, 2)) if jitter else (0, 0)
            cells.append((i, k, j, dy, dx))
        captions.append(" ".join(DIGIT_WORDS[int(labels[j])] for j in idx))
        chosen.append(idx)
    chunk = 4096  # digits warped at once (bounded memory)
    for start in range(0, len(cells), chunk):
        part = cells[start : start + chunk]
        digits = images[[j for _, _, j, _, _ in part]]
        if distorting:
            digits = distort(digits, angles[start : start + chunk], factors[start : start + chunk])
        for (i, k, _, dy, dx), image in zip(part, digits, strict=True):
            strips[i, 0, :, SIDE * k : SIDE * (k + 1)] = shift(image, dy, dx)
    return strips, captions, chosen


def distort(images: np.ndarray, angles: Sequence[float], factors: Sequence[float]) -> np.ndarray:
    """Images (N, H, W) uint8, each turned by ``angles[n]`` degrees (positive: counterclockwise as displayed)
    and scaled by ``factors[n]`` (> 1 grows it) about its centre: one affine map per image, bilinear
    interpolation, 0 outside the image -> (N, H, W) uint8. Angle 0 with factor 1 gives the image back exactly."""
    images = np.asarray(images, dtype=np.uint8)
    angles, factors = np.asarray(angles, dtype=np.float64), np.asarray(factors, dtype=np.float64)
    if images.ndim != 3 or angles.shape != (len(images),) or factors.shape != angles.shape or (factors <= 0).any():
        raise ValueError(f"expected images (N, H, W), N angles and N positive factors, got {images.shape}, "
                         f"{angles.shape} and {factors.shape}")  # fmt: skip
    n, h, w = images.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")  # output pixel, from the centre
    theta = np.deg2rad(angles)[:, None, None]
    cos, sin = np.cos(theta) / factors[:, None, None], np.sin(theta) / factors[:, None, None]
    # where each output pixel comes from: the inverse map (turn back by -angle, divide by the factor)
    src_x = cx + cos * x - sin * y
    src_y = cy + sin * x + cos * y
    x0, y0 = np.floor(src_x), np.floor(src_y)
    wx, wy = (src_x - x0).astype(np.float32), (src_y - y0).astype(np.float32)
    pw = w + 2  # a ring of zeros around each image: samples outside it read 0
    padded = np.zeros((n, h + 2, pw), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = images
    flat = padded.ravel()
    base = (np.arange(n) * (h + 2) * pw)[:, None, None]
    left, right = (np.clip(v, -1, w).astype(np.intp) + 1 for v in (x0, x0 + 1))
    top, bottom = ((np.clip(v, -1, h).astype(np.intp) + 1) * pw + base for v in (y0, y0 + 1))
    upper = flat[top + left] * (1 - wx) + flat[top + right] * wx
    lower = flat[bottom + left] * (1 - wx) + flat[bottom + right] * wx
    out = upper * (1 - wy) + lower * wy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


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
