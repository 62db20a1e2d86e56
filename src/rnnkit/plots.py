"""Plots people would rather see than read, written as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` (creating its folder) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def learning_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training loss and every validation metric per epoch, one panel each."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    keys = ["train_loss"] + sorted({k for r in history for k in r if k.startswith("val_")})
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(epochs, [r.get(key) for r in history], marker="o")
        ax.set_title(key.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_matrix_plot(cm: Sequence[Sequence[float]], labels: Sequence[str], path: Path) -> Path:
    """Counts with the true label on rows and the prediction on columns."""
    plt = _pyplot()
    K = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 * K + 2.5, 1.2 * K + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(K), labels, rotation=45, ha="right")
    ax.set_yticks(range(K), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max(max(row) for row in cm) or 1
    for i in range(K):
        for j in range(K):
            color = "white" if cm[i][j] > top / 2 else "black"
            ax.text(j, i, f"{int(cm[i][j])}", ha="center", va="center", color=color)
    ax.set_title("confusion matrix (test)")
    return _save(fig, path)


def _visible(token: str) -> str:
    """Whitespace tokens (character level) as a visible mark."""
    return "␣" if token.isspace() else token


def attention_heatmaps(examples: Sequence[tuple[Sequence[str], Sequence[str], Any]], path: Path) -> Path:
    """One heatmap per ``(source tokens, output tokens, weights (len(output), len(source)))`` example.

    Rows are the output tokens, columns the source tokens; each row is the attention distribution that
    produced that output token (so rows sum to 1).
    """
    plt = _pyplot()
    n = len(examples)
    widths = [max(len(src), 1) for src, _, _ in examples]
    heights = [max(len(out), 1) for _, out, _ in examples]
    fig, axes = plt.subplots(
        1, n, figsize=(sum(0.35 * w + 1.4 for w in widths), 0.35 * max(heights) + 1.8), squeeze=False
    )
    for ax, (src, out, weights) in zip(axes[0], examples, strict=True):
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), [_visible(t) for t in src], rotation=90)
        ax.set_yticks(range(len(out)), [_visible(t) for t in out])
        ax.set_xlabel("source")
    axes[0][0].set_ylabel("output")
    fig.suptitle("attention (test examples)")
    return _save(fig, path)


def forecast_plot(
    times: Sequence[Any],
    values: Sequence[float],
    start: int,
    mean: Sequence[float],
    lower: Sequence[float] | None,
    upper: Sequence[float] | None,
    path: Path,
    *,
    title: str = "forecast",
    level: float | None = None,
    validation_start: int | None = None,
) -> Path:
    """The series (gaps as breaks), a forecast of ``len(mean)`` steps from index ``start`` and its interval.

    ``times`` are numbers or datetimes, one per value; dotted lines mark where validation and test begin.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(times, values, color="black", lw=1.2, label="actual")
    span = list(times[start : start + len(mean)])
    ax.plot(span, mean, color="tab:red", lw=1.5, label="forecast")
    if lower is not None and upper is not None:
        label = f"{level:.0%} interval" if level is not None else "interval"
        ax.fill_between(span, lower, upper, color="tab:red", alpha=0.2, lw=0, label=label)
    for i, name in ((validation_start, "validation"), (start, "test")):
        if i is not None:
            ax.axvline(times[i], color="gray", ls=":", lw=1)
            ax.annotate(name, (times[i], 1.0), xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _save(fig, path)


def image_grid(
    images: Sequence[Any],
    titles: Sequence[str],
    path: Path,
    *,
    colors: Sequence[str] | None = None,
    title: str | None = None,
    columns: int = 4,
) -> Path:
    """Images (each ``(H, W)``, ``(1, H, W)`` or ``(3, H, W)``, values in [0, 1]) in a grid, each under its title.

    ``colors`` (one per image, e.g. green for right and red for wrong) colour the titles.
    """
    import numpy as np

    plt = _pyplot()
    n = len(images)
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    first = np.asarray(images[0]) if n else np.zeros((1, 1))
    h, w = first.shape[-2:]
    cell_w = 2.6
    cell_h = cell_w * h / w + 0.5
    fig, axes = plt.subplots(rows, cols, figsize=(cell_w * cols, cell_h * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (img, text) in enumerate(zip(images, titles, strict=True)):
        a = np.asarray(img, dtype=float)
        if a.ndim == 3:
            a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
        ax = axes.flat[i]
        ax.imshow(np.clip(a, 0, 1), cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(text, fontsize=9, color=colors[i] if colors is not None else "black")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
