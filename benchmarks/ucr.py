"""UCR/UEA time-series classification: the rnnkit ``ucr`` recipe against sktime classifiers, same split, same run.

For each dataset (default: GunPoint, ItalyPowerDemand, ArrowHead, BasicMotions, JapaneseVowels, OSULeaf,
ACSF1; all from the dataset registry) it

* trains the ``ucr`` recipe through the library (``rnnkit.tasks.runner.train``) with the per-dataset
  overrides in ``OVERRIDES`` (the same ``--set`` a user gives ``rnnkit train ucr``), on the official train
  cases minus the registry's validation cases, and scores the official test cases;
* fits sktime's 1-NN DTW (``KNeighborsTimeSeriesClassifier(distance="dtw")``, full window, the UCR archive's
  baseline) and MiniRocket (``RocketClassifier(rocket_transform="minirocket")``, fixed seed) on *all* the
  official train cases (train + validation, as published figures do) and scores the same test cases;

then prints one table (test accuracy, seconds to train + test) with the published 1-NN DTW figure from
``BASELINES.md`` beside it, and the machine. ``--write`` replaces the "Time-series classification" section
of ``docs/results.md`` with it; ``--markdown`` prints that section instead.

JapaneseVowels has cases of 7-29 steps; both sktime classifiers refuse unequal lengths here, so each case is
padded to the longest by repeating its last step (sktime's own padder pads with zeros). rnnkit reads the cases
at their own lengths.

Run: ``OMP_NUM_THREADS=1 python benchmarks/ucr.py`` (needs the ``peers`` extra: ``pip install -e ".[peers]"``);
``--quick`` is a smoke run (GunPoint, 2 epochs, few MiniRocket kernels).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, replace_results_section  # noqa: E402
from rnnkit.data import registry  # noqa: E402
from rnnkit.tasks.runner import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels", "OSULeaf", "ACSF1"]
#: 1-NN DTW (full window) test accuracy from the UCR archive, as quoted in BASELINES.md
PUBLISHED_DTW = {"GunPoint": 90.7, "ItalyPowerDemand": 95.0, "ArrowHead": 70.3, "OSULeaf": 59.1}
#: ``--set`` overrides of the ``ucr`` recipe per dataset (long series are averaged down to ~100 steps)
OVERRIDES: dict[str, list[str]] = {
    "ArrowHead": ["data.downsample=4"],  # validation loss 0.20 against 0.49 at full length (251 steps)
    "OSULeaf": ["data.downsample=4", "train.batch_size=16"],
    "ACSF1": ["data.downsample=16"],
}
SECTION = "## Time-series classification (issue #6)"


def load(name: str):
    """Registry splits -> (train cases incl. validation, train labels, test cases, test labels); a case is (C, T)."""
    s = registry.load_splits(name)
    train = s["train"] + s["validation"]

    def arrays(records):
        return [np.asarray(r["series"], dtype=np.float64) for r in records], np.asarray([r["label"] for r in records])

    return (*arrays(train), *arrays(s["test"]))


def pad_edge(cases: list[np.ndarray], length: int) -> np.ndarray:
    """(N, C, length): each case padded by repeating its last step."""
    return np.stack([np.pad(x, ((0, 0), (0, length - x.shape[1])), mode="edge") for x in cases])


def run_peers(name: str, quick: bool) -> dict[str, tuple[float, float]]:
    from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier
    from sktime.classification.kernel_based import RocketClassifier

    x_tr, y_tr, x_te, y_te = load(name)
    lengths = {x.shape[1] for x in x_tr + x_te}
    out = {}
    peers = {
        "1-NN DTW (sktime)": lambda: KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw"),
        "MiniRocket (sktime)": lambda: RocketClassifier(
            num_kernels=200 if quick else 10_000, rocket_transform="minirocket", random_state=0
        ),
    }
    for label, make in peers.items():
        if len(lengths) == 1:
            a, b = np.stack(x_tr), np.stack(x_te)
        else:  # sktime's classifiers here refuse unequal lengths: repeat each case's last step
            longest = max(lengths)
            a, b = pad_edge(x_tr, longest), pad_edge(x_te, longest)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                clf = make().fit(a, y_tr)
                acc = 100 * float(np.mean(clf.predict(b) == y_te))
            except (ValueError, RuntimeError) as e:  # a peer that cannot run on this set: a dash, not a crash
                print(f"{name}: {label} failed: {str(e).splitlines()[0][:120]}")
                acc = float("nan")
        out[label] = (acc, time.perf_counter() - t0)
    return out


def run_rnnkit(name: str, quick: bool) -> dict[str, float]:
    overrides = [f"data.dataset={name}", *OVERRIDES.get(name, [])]
    if quick:
        overrides.append("train.epochs=2")
    with tempfile.TemporaryDirectory() as runs:
        r = train("ucr", overrides=overrides, runs_dir=runs, quiet=True)
    return {
        "accuracy": 100 * r.metrics["accuracy"],
        "seconds": r.seconds,
        "epoch": (r.best or {}).get("epoch", 0),
        "epochs": len(r.history),
        "overrides": " ".join(overrides[1:]),
    }


def pct(v: float) -> str:
    return "—" if v != v else f"{v:.1f}%"


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| dataset | rnnkit `ucr` | 1-NN DTW (sktime, this run) | MiniRocket (sktime, this run) | 1-NN DTW published "
        "| rnnkit ≥ 1-NN DTW? | rnnkit s | 1-NN DTW s | MiniRocket s | rnnkit overrides |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dtw = r["peers"]["1-NN DTW (sktime)"]
        mr = r["peers"]["MiniRocket (sktime)"]
        pub = PUBLISHED_DTW.get(r["name"])
        bars = [v for v in (dtw[0], pub) if v is not None and v == v]  # NaN: the peer could not run
        met = "—" if not bars else "yes" if r["rnnkit"]["accuracy"] >= max(bars) - 1e-9 else "**no**"
        lines.append(
            f"| {r['name']} | {r['rnnkit']['accuracy']:.1f}% | {pct(dtw[0])} | {pct(mr[0])} | "
            f"{f'{pub:.1f}%' if pub is not None else '—'} | {met} | {r['rnnkit']['seconds']:.0f} | {dtw[1]:.0f} | "
            f"{mr[1]:.0f} | {r['rnnkit']['overrides'] or '—'} |"
        )
    return lines


def section(rows: list[dict], command: str) -> str:
    return "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}` ({dt.date.today()}). Machine: {machine()}.",
            "rnnkit: the `ucr` recipe (`src/rnnkit/configs/ucr.yaml`: an ensemble of 5 BiGRU 64 classifiers, mean",
            "pooling, probabilities averaged; channel standardisation from the train split, 150 epochs, Adam 0.01 with",
            "cosine decay, the epoch with the lowest validation loss kept), trained on the official train cases minus",
            "the registry's validation cases (about 10%), with the",
            "per-dataset `--set` overrides in the last column. sktime peers fit all the official train cases. Every",
            "figure is test accuracy on the official test cases; times are train + test seconds on this machine,",
            'shared with other jobs while measuring. "rnnkit ≥ 1-NN DTW?" compares with the higher of the 1-NN DTW',
            "run here and the published figure.",
            "",
            *table(rows),
            "",
        ]
    )


def write_section(text: str, path: Path | None = None) -> None:
    replace_results_section(text, "Time-series classification", path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=DATASETS)
    p.add_argument("--quick", action="store_true", help="smoke run: GunPoint, 2 epochs, 200 MiniRocket kernels")
    p.add_argument("--write", action="store_true", help="replace the section in docs/results.md")
    p.add_argument("--markdown", action="store_true", help="print the docs/results.md section")
    args = p.parse_args(argv)
    logging.getLogger("rnnkit").setLevel(logging.WARNING)
    names = ["GunPoint"] if args.quick else args.datasets
    print(f"# benchmarks/ucr.py — {dt.date.today()}")
    print(f"machine: {machine()}")
    rows = []
    for name in names:
        row = {"name": name, "rnnkit": run_rnnkit(name, args.quick), "peers": run_peers(name, args.quick)}
        rows.append(row)
        rk = row["rnnkit"]
        peers = ", ".join(f"{k} {a:.1f}% ({s:.0f} s)" for k, (a, s) in row["peers"].items())
        print(f"{name}: rnnkit {rk['accuracy']:.1f}% ({rk['seconds']:.0f} s, best epoch {rk['epoch']}); {peers}",
              flush=True)  # fmt: skip
    print()
    print("\n".join(table(rows)))
    command = "OMP_NUM_THREADS=1 python benchmarks/ucr.py" + (
        f" --datasets {' '.join(names)}" if names != DATASETS else ""
    )
    if args.markdown:
        print()
        print(section(rows, command))
    if args.write:
        write_section(section(rows, command))
        print("wrote docs/results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
