"""Image files -> arrays (Pillow, imported only when an image is read).

Every image is converted to grayscale (``channels=1``) or RGB (``channels=3``) and resized to a fixed
``(H, W)`` with bilinear filtering, so images of any size and mode (palette, RGBA, 16-bit) become one
batchable shape: uint8 (:func:`read_image`) or float32 in ``[0, 1]`` (:func:`load_image`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RnnkitError


def read_image(path: str | Path, size: tuple[int, int], channels: int = 1) -> np.ndarray:
    """An image file -> ``(channels, H, W)`` uint8 (compact for holding a data set in memory).

    Unreadable or missing files are one-line errors naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"read_image: channels must be 1 or 3, got {channels}")
    path = Path(path)
    if not path.is_file():  # checked with stat: a FIFO or a device is never opened
        raise RnnkitError("not a regular file" if path.exists() else "no such image file", where=str(path))
    H, W = size
    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((W, H), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)  # (H, W) or (H, W, 3)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RnnkitError(f"cannot read image: {e}", where=str(path)) from None
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def load_image(path: str | Path, size: tuple[int, int], channels: int = 1) -> np.ndarray:
    """An image file -> ``(channels, H, W)`` float32 in ``[0, 1]``."""
    return read_image(path, size, channels).astype(np.float32) / 255.0
