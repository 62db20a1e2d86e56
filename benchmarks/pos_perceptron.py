"""The peer for the ``pos`` recipe: NLTK's averaged perceptron tagger on rnnkit's Brown split, side by side.

Trains ``nltk.tag.perceptron.PerceptronTagger`` (5 iterations, NLTK's defaults; pure Python) on the
``brown-pos`` train split that ``rnnkit train pos`` uses, tags the test split, and reports token accuracy on
the full Brown tags and on the 12 universal tags (its predictions and the gold tags both mapped with
:func:`rnnkit.data.tagsets.brown_to_universal`, as the recipe's ``universal_accuracy`` does). With
``--run RUN`` (a finished ``pos`` run folder) the recipe's test figures are printed beside it.

    pip install nltk        # or: pip install -e ".[peers]"
    python benchmarks/pos_perceptron.py --run runs/pos                  # ≈ 18 min on one core
    python benchmarks/pos_perceptron.py --train-sentences 500           # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402


def accuracy(gold: list[list[str]], pred: list[list[str]], mapping=None) -> float:
    right = total = 0
    for g_sent, p_sent in zip(gold, pred, strict=True):
        for g, p in zip(g_sent, p_sent, strict=True):
            if mapping is not None:
                g, p = mapping(g), mapping(p)
            right += g == p
            total += 1
    return right / total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=5, help="perceptron passes over train (NLTK's default 5)")
    p.add_argument("--train-sentences", type=int, default=None, help="use only the first N train sentences")
    p.add_argument("--test-sentences", type=int, default=None, help="tag only the first N test sentences")
    p.add_argument("--run", type=Path, default=None, help="a finished `rnnkit train pos` run folder to compare")
    p.add_argument("--seed", type=int, default=0, help="NLTK shuffles the training sentences with `random`")
    args = p.parse_args(argv)
    try:
        from nltk.tag.perceptron import PerceptronTagger
    except ImportError:
        print("this benchmark needs NLTK: pip install nltk", file=sys.stderr)
        return 2
    from rnnkit.data import registry
    from rnnkit.data.tagsets import brown_to_universal

    splits = registry.load_splits("brown-pos")
    train = [list(zip(r["tokens"], r["tags"], strict=True)) for r in splits["train"][: args.train_sentences]]
    test = splits["test"][: args.test_sentences]
    random.seed(args.seed)
    tagger = PerceptronTagger(load=False)
    t0 = time.perf_counter()
    tagger.train(train, nr_iter=args.iterations)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = [[tag for _, tag in tagger.tag(r["tokens"])] for r in test]
    tag_s = time.perf_counter() - t0
    gold = [r["tags"] for r in test]
    full = accuracy(gold, pred)
    universal = accuracy(gold, pred, brown_to_universal)
    tokens = sum(len(g) for g in gold)

    print(f"brown-pos: {len(train):,} train sentences, {len(test):,} test sentences ({tokens:,} tokens)")
    print("| tagger | full Brown tags | universal tags | train s | tag s |")
    print("|---|---|---|---|---|")
    print(f"| NLTK averaged perceptron ({args.iterations} it.) | {full:.2%} | {universal:.2%} | {train_s:.0f} | "
          f"{tag_s:.0f} |")  # fmt: skip
    if args.run is not None:
        meta = json.loads((args.run / "meta.json").read_text(encoding="utf-8"))
        test_m = meta["metrics"]["test"]
        ours_full, ours_universal = test_m["accuracy"], test_m.get("universal_accuracy", float("nan"))
        seconds = meta.get("epoch_seconds", meta["train_seconds"])
        print(f"| rnnkit `pos` ({args.run}) | {ours_full:.2%} | {ours_universal:.2%} | {seconds:.0f} | — |")
        print(f"rnnkit − perceptron: full {100 * (ours_full - full):+.2f} points, "
              f"universal {100 * (ours_universal - universal):+.2f} points")  # fmt: skip
    print(f"machine: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
