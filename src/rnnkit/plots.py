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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
