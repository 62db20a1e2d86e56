"""Train the text recipes from scratch (or collect finished run folders) and print the results table.

Each recipe is trained through the library (``rnnkit.tasks.runner.train``, exactly what ``rnnkit train
RECIPE`` does) into ``--runs-dir``; its row comes from the run's ``meta.json`` alone: test metrics, the best
validation metrics, epochs and training time. The targets and published figures are the ones in
``BASELINES.md``; a row says whether the target was met.

    python benchmarks/recipes.py sentiment pos --runs-dir /tmp/recipes        # train and report
    python benchmarks/recipes.py --collect --runs-dir /tmp/recipes            # report finished runs only
    python benchmarks/recipes.py pos --collect --runs-dir /tmp/recipes --markdown table.md

``--collect`` never trains: a recipe without a finished run folder (``RUNS_DIR/RECIPE/meta.json``) is listed
as "not run". Without it, a recipe whose folder is already finished is reported, not retrained (delete the
folder to retrain). The NLTK perceptron peer for ``pos`` is ``benchmarks/pos_perceptron.py``.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402


@dataclass(frozen=True)
class Target:
    metric: str  # key in meta.json metrics
    split: str  # "test" or "best_validation"
    label: str
    better: str  # "max" or "min"
    target: float
    percent: bool = True  # shown as a percentage (the stored value is a fraction)


@dataclass(frozen=True)
class Recipe:
    name: str
    targets: tuple[Target, ...]
    baseline: str  # published / peer figures, from BASELINES.md


RECIPES = {
    r.name: r
    for r in [
        Recipe(
            "sentiment",
            (Target("accuracy", "test", "test accuracy", "max", 0.80),),
            "majority 57.8%; BiLSTM on MiniLM embeddings 78–80%; NBSVM 79.4, CNN+word2vec 81.5 (MR)",
        ),
        Recipe(
            "ptb-lm",
            (Target("perplexity", "test", "test perplexity", "min", 114.5, percent=False),),
            "Zaremba et al. 2014 small: 114.5 test",
        ),
        Recipe(
            "ptb-lm-regularized",
            (Target("perplexity", "test", "test perplexity", "min", 100.0, percent=False),),
            "AWD-LSTM 58.8 (3×1150, 750 epochs); stretch ≤ 100 in ≤ 2 h",
        ),
        Recipe(
            "char-lm",
            (Target("loss", "best_validation", "validation nats/char", "min", 1.45, percent=False),),
            "char transformer 1.47 nats/char on tiny-shakespeare (different text)",
        ),
        Recipe(
            "pos",
            (
                Target("universal_accuracy", "test", "test accuracy, universal tags", "max", 0.97),
                Target("accuracy", "test", "test accuracy, full Brown tags", "max", 0.9558),
            ),
            "NLTK averaged perceptron 95.58% full tags (same split); BiLSTM taggers ≈ 97% (WSJ)",
        ),
        Recipe(
            "g2p",
            (
                Target("wer", "test", "test WER", "min", 0.25),
                Target("per", "test", "test PER", "min", 0.06),
            ),
            "DBLSTM-CTC 25.8% WER (21.3% with n-gram); enc–dec LSTMs 23–29% WER, 5.5–7.6% PER (other splits)",
        ),
    ]
}


def finished(run_dir: Path) -> dict | None:
    meta = run_dir / "meta.json"
    return json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else None


def train_recipe(name: str, runs_dir: Path, overrides: list[str], quiet: bool) -> dict:
    from rnnkit.tasks.runner import train

    train(name, overrides=overrides, runs_dir=runs_dir, name=name, quiet=quiet)
    meta = finished(runs_dir / name)
    assert meta is not None, f"{runs_dir / name} has no meta.json after training"
    return meta


def training_seconds(meta: dict, run_dir: Path) -> float:
    """The epochs' own time, which covers a run resumed across processes (``train_seconds`` is only the last
    process's); from ``metrics.jsonl`` for runs older than ``meta.json``'s ``epoch_seconds``."""
    if "epoch_seconds" in meta:
        return meta["epoch_seconds"]
    log = run_dir / "metrics.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        epochs = [r["seconds"] for r in rows if "epoch" in r and "seconds" in r]
        if epochs:
            return sum(epochs)
    return meta.get("train_seconds", float("nan"))


def fmt(value: float, t: Target) -> str:
    return f"{100 * value:.2f}%" if t.percent else f"{value:.2f}"


def rows(recipe: Recipe, meta: dict | None, run_dir: Path) -> list[str]:
    if meta is None:
        return [f"| `{recipe.name}` | — | not run | — | — | — | {recipe.baseline} |"]
    out = []
    metrics = meta["metrics"]
    minutes = training_seconds(meta, run_dir) / 60
    for i, t in enumerate(recipe.targets):
        value = metrics[t.split].get(t.metric)
        if value is None:
            result, met = f"no `{t.metric}` in {t.split} metrics", "—"
        else:
            cmp = operator.ge if t.better == "max" else operator.le
            result = fmt(value, t)
            met = "met" if cmp(value, t.target) else "**not met**"
        sign = "≥" if t.better == "max" else "≤"
        name, training, baseline = ("", "", "")
        if i == 0:
            name, baseline = f"`{recipe.name}`", recipe.baseline
            training = f"{metrics.get('epochs', '?')} epochs, {minutes:.1f} min"
        out.append(f"| {name} | {t.label} | {result} | {sign} {fmt(t.target, t)} | {met} | {training} | {baseline} |")
    return out


HEADER = [
    "| recipe | metric | rnnkit | target | | training | published / peer (`BASELINES.md`) |",
    "|---|---|---|---|---|---|---|",
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipes", nargs="*", help=f"default: all of {', '.join(RECIPES)}")
    p.add_argument("--runs-dir", type=Path, default=Path("runs/recipes"))
    p.add_argument("--collect", action="store_true", help="report finished run folders only; never train")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", help="overrides for every trained recipe")
    p.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    names = args.recipes or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    lines = list(HEADER)
    for name in names:
        run_dir = args.runs_dir / name
        meta = finished(run_dir)
        if meta is None and not args.collect:
            meta = train_recipe(name, args.runs_dir, args.overrides, args.quiet)
        lines += rows(RECIPES[name], meta, run_dir)
    text = "\n".join(lines)
    footer = f"\nmachine: {machine()}\ndate: {date.today().isoformat()}; run folders under {args.runs_dir}"
    print(text + footer)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n" + footer + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
