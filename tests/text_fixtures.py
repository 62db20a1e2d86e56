"""Tiny review CSVs for tests that train a text classifier (the label is told by one word)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

GOOD, BAD = ["great", "superb", "moving"], ["dull", "awful", "tedious"]
FILLER = ["the", "film", "plot", "cast", "story", "a", "its", "scene"]


def write_reviews(path: Path, n: int = 300, seed: int = 0) -> Path:
    """``text,label`` rows: four filler words, one good/bad word that decides ``pos``/``neg``, a unique id."""
    rng = random.Random(seed)
    good, bad, filler = GOOD, BAD, FILLER
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            words = rng.sample(filler, 4) + [rng.choice(good if label == "pos" else bad), f"id{i}"]
            rng.shuffle(words)
            w.writerow([" ".join(words), label])
    return path
