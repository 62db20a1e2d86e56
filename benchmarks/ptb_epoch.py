"""End-to-end training epoch on PTB: rnnkit's Trainer against the same model as a plain PyTorch script.

Both sides train Zaremba et al.'s "small" model (the ``ptb-lm`` recipe: 2-layer LSTM, 200 units, 200-d
embeddings, U(-0.1, 0.1) init, no dropout, BPTT 20, batch 20, SGD lr 20 on the mean token loss = lr 1 on
Zaremba's summed loss, gradient norm clipped) on the same PTB train split, in the same process:

* **plain** — what one writes by hand (the PyTorch ``word_language_model`` example's shape): its own
  tokenizing and vocabulary, ``batchify`` into (N, B) columns, a ``get_batch`` slice per window,
  ``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``, the hidden state carried and detached;
* **rnnkit** — ``LanguageModelTask.prepare`` (registry data, vocabulary, BPTT stream) and
  ``Trainer.fit`` on the task's batches, exactly what ``rnnkit train ptb-lm`` runs (without validation).

Printed per side: the one-time data preparation (rnnkit's also builds the validation and test streams),
and per epoch the time spent getting batches ("data") and everything else (forward, backward, clipping,
optimizer, the trainer's bookkeeping: "compute"), and the ratio rnnkit / plain (``BASELINES.md``
target: ≤ 0.8×).

By default each side runs ``--batches`` windows ``--repeats`` times, interleaved (plain, rnnkit, then
rnnkit, plain, ...), after a short warm-up; the fastest repeat is extrapolated to a whole epoch. ``--full`` times one
whole epoch per side instead. ``--amp`` adds a row for rnnkit with ``train.amp=true`` (bfloat16 autocast;
the plain script stays float32, so that row is not like for like). ``--split`` also times each phase of a
batch (data, forward, backward, clipping, optimizer) in a hand-written loop over each side's model and
data, and the Trainer's own overhead against that loop. ``--smoke`` runs a tiny synthetic
corpus and model in a few seconds (tests). Use ``OMP_NUM_THREADS=1`` on a shared machine: with 2 threads
and a busy neighbour, OpenMP waits make step times jump by 10x.

The memory allocator matters here: every window allocates several 16 MB logit-sized buffers, and with
glibc's defaults the two sides measured 1.06-1.11x apart, while with
``MALLOC_MMAP_THRESHOLD_=268435456 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456`` both got
faster and equal (docs/results.md).

Run: ``OMP_NUM_THREADS=1 python benchmarks/ptb_epoch.py`` (about 2 minutes; 3 with ``--amp``), ``--full``
(about 10 minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402
from rnnkit.data import registry  # noqa: E402
from rnnkit.tasks.language_model import LanguageModelTask  # noqa: E402
from rnnkit.tasks.runner import resolve_config  # noqa: E402
from rnnkit.training import Trainer  # noqa: E402
from rnnkit.training.trainer import detach  # noqa: E402

TARGET = 0.8
#: the smoke run: a tiny model over a synthetic corpus
SMOKE = ["model.embed_dim=16", "model.hidden_size=16", "train.batch_size=4", "data.bptt=5"]


# -- the plain PyTorch script -----------------------------------------------------------------------
class PlainLM(nn.Module):
    """nn.Embedding -> nn.LSTM -> nn.Linear, sequence-first like the PyTorch example."""

    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, init_range: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)

    def forward(self, x, hidden):
        out, hidden = self.lstm(self.embedding(x), hidden)  # (T, B, H)
        return self.decoder(out), hidden


def plain_prepare(lines: list[str], batch_size: int) -> tuple[torch.Tensor, int]:
    """Words + <eos> per line -> ids in a vocabulary of their own -> (N, B) columns (the tail is dropped)."""
    vocab: dict[str, int] = {}
    ids = [vocab.setdefault(w, len(vocab)) for line in lines for w in [*line.split(), "<eos>"]]
    data = torch.tensor(ids, dtype=torch.long)
    n = data.size(0) // batch_size
    return data[: n * batch_size].view(batch_size, n).t().contiguous(), len(vocab)


def plain_epoch(model, optimizer, data, bptt: int, clip: float, max_batches: int | None) -> dict[str, float]:
    """Train over the (N, B) columns in windows of ``bptt``; times batch fetching apart from the rest."""
    model.train()
    hidden, data_s, batches = None, 0.0, 0
    t0 = time.perf_counter()
    for i in range(0, data.size(0) - 1, bptt):
        if max_batches is not None and batches >= max_batches:
            break
        t = time.perf_counter()
        n = min(bptt, data.size(0) - 1 - i)
        x, y = data[i : i + n], data[i + 1 : i + 1 + n].reshape(-1)
        data_s += time.perf_counter() - t
        if hidden is not None:
            hidden = tuple(h.detach() for h in hidden)
        logits, hidden = model(x, hidden)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        batches += 1
    total = time.perf_counter() - t0
    return {"seconds": total, "data": data_s, "batches": batches, "loss": float(loss.detach())}


def plain_batches_per_epoch(data: torch.Tensor, bptt: int) -> int:
    return math.ceil((data.size(0) - 1) / bptt)


# -- rnnkit -----------------------------------------------------------------------------------------
class TimedBatches:
    """Wraps a task's ``batches`` and adds up the time spent producing them."""

    def __init__(self, batches) -> None:
        self.batches, self.seconds = batches, 0.0

    def __call__(self, split: str, epoch: int):
        it = iter(self.batches(split, epoch))
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                self.seconds += time.perf_counter() - t
                return
            self.seconds += time.perf_counter() - t
            yield batch


def rnnkit_epoch(task, model, ttask, train_config, max_batches: int | None) -> dict[str, float]:
    timed = TimedBatches(ttask.batches)
    ttask = type(ttask)(**{**vars(ttask), "batches": timed})
    config = train_config.model_copy(update={"epochs": 1, "max_steps": max_batches})
    trainer = Trainer(config, quiet=True)
    t0 = time.perf_counter()
    result = trainer.fit(model, ttask, val_split=None)
    total = time.perf_counter() - t0
    return {"seconds": total, "data": timed.seconds, "batches": result.steps, "loss": result.history[-1]["train_loss"]}


# -- where the time goes ----------------------------------------------------------------------------
PHASES = ("data", "forward", "backward", "clip", "optimizer")


def phase_split(step_parts, batches: int) -> dict[str, float]:
    """Seconds per batch of each phase: ``step_parts()`` yields one ``(phase, callable)`` per phase of a
    batch, in order; each callable's time is added to its phase."""
    totals = dict.fromkeys(PHASES, 0.0)
    for _ in range(batches):
        for name, fn in step_parts():
            t = time.perf_counter()
            fn()
            totals[name] += time.perf_counter() - t
    return {k: v / batches for k, v in totals.items()}


def plain_parts(model, optimizer, data, bptt: int, clip: float):
    """The plain script's batch, cut into phases (same calls as :func:`plain_epoch`)."""
    box = {"i": 0, "hidden": None}

    def parts():
        def fetch():
            i = box["i"] if box["i"] + 1 < data.size(0) else 0
            n = min(bptt, data.size(0) - 1 - i)
            box["x"], box["y"] = data[i : i + n], data[i + 1 : i + 1 + n].reshape(-1)
            box["i"] = i + n

        def forward():
            hidden = None if box["hidden"] is None else tuple(h.detach() for h in box["hidden"])
            logits, box["hidden"] = model(box["x"], hidden)
            box["loss"] = F.cross_entropy(logits.view(-1, logits.size(-1)), box["y"])

        def backward():
            optimizer.zero_grad(set_to_none=True)
            box["loss"].backward()

        yield "data", fetch
        yield "forward", forward
        yield "backward", backward
        yield "clip", lambda: nn.utils.clip_grad_norm_(model.parameters(), clip)
        yield "optimizer", optimizer.step

    return parts


def rnnkit_parts(model, ttask, optimizer, clip: float):
    """rnnkit's batch, cut into phases: the task's batches and ``train_step`` (what the Trainer calls), the
    Trainer's clipping and SGD step, without the Trainer's own bookkeeping."""
    box = {"it": iter(ttask.batches("train", 0)), "carry": None}

    def parts():
        def fetch():
            try:
                box["batch"] = next(box["it"])
            except StopIteration:
                box["it"] = iter(ttask.batches("train", 0))
                box["batch"], box["carry"] = next(box["it"]), None

        def forward():
            box["loss"], box["carry"], _ = ttask.train_step(model, box["batch"], detach(box["carry"]))

        def backward():
            box["loss"].backward()

        def step():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        yield "data", fetch
        yield "forward", forward
        yield "backward", backward
        yield "clip", lambda: nn.utils.clip_grad_norm_(model.parameters(), clip)
        yield "optimizer", step

    return parts


# -- the run ----------------------------------------------------------------------------------------
def smoke_corpus(folder: Path, seed: int = 0) -> Path:
    """A small synthetic corpus with train/valid/test files (what ``--data FOLDER`` reads)."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(40)]
    for name, n in (("train.txt", 200), ("valid.txt", 20), ("test.txt", 20)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(n)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def row(name: str, prep: float, per_batch: float, data_per_batch: float, batches: int, ref: float | None) -> str:
    epoch = per_batch * batches
    data = data_per_batch * batches
    ratio = f"{epoch / ref:.2f}×" if ref else "1.00× (peer)"
    return (
        f"| {name} | {prep:.2f} | {data:.2f} ({100 * data / epoch:.1f}%) | {epoch - data:.1f} | {epoch:.1f} | "
        f"{1e3 * per_batch:.1f} | {ratio} |"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=150, help="windows per timed repeat (default %(default)s)")
    p.add_argument("--repeats", type=int, default=4, help="interleaved repeats per side (default %(default)s)")
    p.add_argument("--warmup", type=int, default=10, help="untimed windows per side first (default %(default)s)")
    p.add_argument("--full", action="store_true", help="time one whole epoch per side (no extrapolation)")
    p.add_argument("--amp", action="store_true", help="also rnnkit with train.amp=true (bfloat16 autocast)")
    p.add_argument("--smoke", action="store_true", help="tiny synthetic corpus and model: a few seconds")
    p.add_argument("--split", action="store_true", help="also time each phase (data, forward, backward, ...)")
    args = p.parse_args(argv)
    overrides = SMOKE if args.smoke else []
    if args.smoke:
        args.batches, args.repeats, args.warmup = 5, 1, 1
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data_path = smoke_corpus(Path(tmp)) if args.smoke else None
        _, config = resolve_config("ptb-lm", overrides=overrides)
        c, m = config.train, config.model
        bptt = config.data.bptt

        # data: each side prepares its own, from the same train text
        t = time.perf_counter()
        if data_path is None:
            lines = [r["text"] for r in registry.load_splits("ptb")["train"]]
        else:
            lines = (data_path / "train.txt").read_text(encoding="utf-8").splitlines()
        columns, vocab_size = plain_prepare(lines, c.batch_size)
        plain_prep = time.perf_counter() - t
        t = time.perf_counter()
        task = LanguageModelTask(config, data_path)
        task.prepare(Path(tmp))
        rnnkit_prep = time.perf_counter() - t

        plain = PlainLM(vocab_size, m.embed_dim, m.hidden_size, m.num_layers, m.init_range)
        plain_opt = torch.optim.SGD(plain.parameters(), lr=c.lr)
        model = task.build_model()
        ttask = task.trainer_task()
        n_plain, n_rnnkit = plain_batches_per_epoch(columns, bptt), len(task.streams["train"])
        runs = {"plain": [], "rnnkit": [], "rnnkit amp": []}
        sides = {
            "plain": lambda k: plain_epoch(plain, plain_opt, columns, bptt, c.grad_clip, k),
            "rnnkit": lambda k: rnnkit_epoch(task, model, ttask, c, k),
        }
        if args.amp:
            amp = c.model_copy(update={"amp": True})
            sides["rnnkit amp"] = lambda k: rnnkit_epoch(task, model, ttask, amp, k)
        for run in sides.values():
            run(args.warmup)
        for rep in range(1 if args.full else args.repeats):
            order = list(sides.items())
            for name, run in order if rep % 2 == 0 else order[::-1]:  # alternate which side goes first
                runs[name].append(run(None if args.full else args.batches))
        splits = {}
        if args.split:  # the same models and optimizers, each batch cut into timed phases
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=c.lr)
            parts = {
                "plain": plain_parts(plain, plain_opt, columns, bptt, c.grad_clip),
                "rnnkit": rnnkit_parts(model, ttask, opt, c.grad_clip),
            }
            for step_parts in parts.values():
                phase_split(step_parts, args.warmup)
            for rep in range(args.repeats):
                for name in ("plain", "rnnkit") if rep % 2 == 0 else ("rnnkit", "plain"):
                    split = phase_split(parts[name], args.batches)
                    best = splits.get(name)
                    if best is None or sum(split.values()) < sum(best.values()):
                        splits[name] = split

    print(f"# benchmarks/ptb_epoch.py — {dt.date.today()}{' (smoke)' if args.smoke else ''}")
    print(f"machine: {machine()}")
    print(
        f"data: {'synthetic' if args.smoke else 'ptb'} train, {columns.numel():,} tokens; vocabulary {vocab_size:,}; "
        f"model {m.num_layers}x{m.hidden_size} LSTM, embeddings {m.embed_dim}, bptt {bptt}, batch {c.batch_size}"
    )
    print(f"batches per epoch: plain {n_plain:,}, rnnkit {n_rnnkit:,}")
    mode = "one whole epoch per side" if args.full else (
        f"{args.batches} batches x {args.repeats} interleaved repeats per side (after {args.warmup} warm-up "
        "batches), the fastest repeat extrapolated to an epoch"
    )  # fmt: skip
    print(f"mode: {mode}\n")
    print("| side | data prep s (once) | batch data s / epoch | compute s / epoch | epoch s | ms / batch | ratio |")
    print("|---|---|---|---|---|---|---|")
    per = {}
    for name, results in runs.items():
        if results:
            best = min(results, key=lambda r: r["seconds"] / r["batches"])
            per[name] = (best["seconds"] / best["batches"], best["data"] / best["batches"])
    ref = per["plain"][0] * n_plain
    labels = {"plain": "plain PyTorch script", "rnnkit": "rnnkit Trainer", "rnnkit amp": "rnnkit Trainer, amp (bf16)"}
    for name, (per_batch, data_per_batch) in per.items():
        prep = plain_prep if name == "plain" else rnnkit_prep
        n = n_plain if name == "plain" else n_rnnkit
        print(row(labels[name], prep, per_batch, data_per_batch, n, None if name == "plain" else ref))
    ratio = per["rnnkit"][0] * n_rnnkit / ref
    verdict = "met" if ratio <= TARGET else "not met"
    print(f"\nrnnkit / plain epoch time: {ratio:.2f}× (target ≤ {TARGET}×: {verdict})")
    if "rnnkit amp" in per:
        print(f"rnnkit amp / plain (float32) epoch time: {per['rnnkit amp'][0] * n_rnnkit / ref:.2f}×")
    if splits:
        print(
            "\nwhere the time goes: ms per batch by phase (a hand-written loop over each side's model and data, "
            "the fastest of the interleaved repeats; 'trainer overhead' = Trainer ms / batch - this loop's)\n"
        )
        print(f"| side | {' | '.join(PHASES)} | total | trainer overhead |")
        print("|---|" + "---|" * (len(PHASES) + 2))
        for name, split in splits.items():
            total = sum(split.values())
            over = f"{1e3 * (per['rnnkit'][0] - total):+.1f}" if name == "rnnkit" else "—"
            cells = " | ".join(f"{1e3 * split[k]:.2f} ({100 * split[k] / total:.0f}%)" for k in PHASES)
            print(f"| {labels[name]} | {cells} | {1e3 * total:.1f} | {over} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
