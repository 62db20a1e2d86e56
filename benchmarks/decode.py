"""Metrics of a finished seq2seq run (e.g. ``g2p``) on one split under other decoding settings.

The run's weights and vocabularies are loaded as ``rnnkit evaluate`` does; each ``BEAM:LENGTH_PENALTY``
setting decodes the chosen split again (greedy is ``1:0``). Used to check on validation whether a wider beam
or a length penalty would move the test figure (docs/results.md, the ``g2p`` bullet):

    python benchmarks/decode.py runs/g2p --split validation --settings 5:0 10:0 5:0.6 5:1.0

With the run's own settings on ``--split test`` it reproduces the test metrics in ``meta.json``.

``--ensemble RUN2 [RUN3 ...]`` decodes the mixture of the runs' models instead (a
:class:`~rnnkit.models.Seq2SeqEnsemble`: the mean of their next-token probabilities at every step), for runs
trained separately on the same data (identical vocabularies) with the same architecture; the first run's
configuration decides the data and decoding. What ``model.ensemble: N`` would give, from N finished runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402


def parse_setting(text: str) -> tuple[int, float]:
    try:
        beam, penalty = text.split(":")
        setting = int(beam), float(penalty)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BEAM:LENGTH_PENALTY like 5:0.6, got {text!r}") from None
    if setting[0] < 1:
        raise argparse.ArgumentTypeError(f"the beam size must be at least 1, got {text!r}")
    return setting


def combine(runs: list, names: list[Path]):
    """The runs' models as one :class:`Seq2SeqEnsemble` (the first run's member configuration); a run with other
    vocabularies or another architecture is an :class:`RnnkitError` naming it."""
    from rnnkit.errors import RnnkitError
    from rnnkit.models import Seq2Seq, Seq2SeqEnsemble

    first = runs[0]
    for run, name in zip(runs, names, strict=True):
        if not isinstance(run.model, Seq2Seq):
            raise RnnkitError(f"{name}: --ensemble takes single seq2seq models, not {run.model.kind!r}")
        for side in ("src_vocab", "tgt_vocab"):
            if getattr(run.task, side).tokens != getattr(first.task, side).tokens:
                raise RnnkitError(f"{name}: its {side.replace('_', ' ')}ulary differs from {names[0]}'s (other data)")
    ensemble = Seq2SeqEnsemble(member=first.model.get_config(), size=len(runs))
    for member, run, name in zip(ensemble.members, runs, names, strict=True):
        try:
            member.load_state_dict(run.model.state_dict())
        except RuntimeError as e:
            reason = str(e).splitlines()[-1].strip()
            raise RnnkitError(f"{name}: another architecture than {names[0]}'s ({reason})") from None
    return ensemble.eval()


def evaluate(task, model, trainer, split: str, beam: int, penalty: float) -> dict[str, float]:
    """``model`` decoded on ``split`` of a prepared seq2seq ``task`` with beam ``beam`` and length penalty
    ``penalty`` (the task's decode settings are set to them)."""
    task.config.decode.beam_size, task.config.decode.length_penalty = beam, penalty
    task.splits["test"] = task.splits[split]  # the test pass decodes with decode.beam_size; validation is greedy
    return trainer.evaluate(model, task.trainer_task(), "test")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished seq2seq run folder")
    p.add_argument("--split", choices=("validation", "test"), default="validation")
    p.add_argument("--settings", nargs="+", type=parse_setting, default=[(1, 0.0), (5, 0.0)],
                   metavar="BEAM:PENALTY", help="decoding settings (default 1:0 5:0)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="one JSON object per setting instead of a table")
    p.add_argument("--ensemble", nargs="+", type=Path, default=[], metavar="RUN",
                   help="more finished runs (same data and architecture): decode the mixture of all")  # fmt: skip
    args = p.parse_args(argv)
    from rnnkit.errors import RnnkitError
    from rnnkit.tasks.runner import load_run, prepared_task
    from rnnkit.training import Trainer

    names = [args.run, *args.ensemble]
    try:
        runs = [load_run(name) for name in names]
        for run, name in zip(runs, names, strict=True):
            if run.config.task != "seq2seq":
                raise RnnkitError(f"{name} is a {run.config.task!r} run, not seq2seq")
        model = combine(runs, names) if args.ensemble else None
    except RnnkitError as e:  # a missing, unfinished or damaged run folder: one line, like the CLI
        print(f"decode.py: error: {e}", file=sys.stderr)
        return e.exit_code
    run = runs[0]
    task = prepared_task(run, run.config.model_copy(deep=True))  # read the data once, with the run's vocabularies
    trainer = Trainer(run.config.train, quiet=True)
    model = (model or run.model).to(trainer.device)
    if not args.json:
        print(f"machine: {machine()}")
        print(f"run: {' + '.join(map(str, names))}, split: {args.split}")
        print("| beam | length penalty | WER | PER |\n|---|---|---|---|")
    for beam, penalty in args.settings:
        m = evaluate(task, model, trainer, args.split, beam, penalty)
        if args.json:
            print(json.dumps({"beam": beam, "length_penalty": penalty, **m}))
        else:
            print(f"| {beam} | {penalty:g} | {100 * m['wer']:.2f}% | {100 * m['per']:.2f}% |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
