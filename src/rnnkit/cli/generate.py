"""``rnnkit generate``: continue prompts with a language model, caption images, or sample from scratch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import json_safe, json_text, make_parser, positive_int

EPILOG = """\
examples:
  rnnkit generate runs/char-lm "ROMEO:" --max-tokens 200 --temperature 0.7
  rnnkit generate runs/ptb-lm "the company said" --beam 5 --num 3      # the 3 best of a beam of 5
  rnnkit generate runs/char-lm --num 4 --top-p 0.9 --seed 1            # no prompt: from scratch
  rnnkit generate runs/captions photo1.png photo2.png --format text    # captioning: image files
  rnnkit generate runs/char-lm --file prompts.txt --out samples/       # also writes samples/generated.jsonl

Unset options keep the run's own settings (its config's generate/decode section).
"""


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "generate",
        help="generate with a trained run folder (language models, captioning, ...)",
        description="Load a run folder and generate: continue each prompt (language models), caption each image "
        "file (captioning), or sample from scratch when no prompt is given.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run folder")
    p.add_argument(
        "prompts", nargs="*", default=[], metavar="PROMPT", help="prompts (text, or image files for captioning)"
    )
    p.add_argument("--file", type=Path, default=None, help="read prompts from this file, one per line ('-': stdin)")
    p.add_argument("--max-tokens", type=positive_int, default=None, help="tokens generated per sample")
    p.add_argument("--temperature", type=float, default=None, help="softmax temperature (> 0) for sampling")
    p.add_argument("--top-k", type=_nonnegative_int, default=None, help="sample among the k most likely (0: all)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--beam", type=positive_int, default=None, help="beam search of this width instead of sampling")
    p.add_argument("--num", type=positive_int, default=1, help="samples per prompt (with --beam: the N best)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--out", type=Path, default=None, help="folder for generated files and generated.jsonl")
    p.add_argument("--format", choices=["json", "text"], default="json", help="output format (default: json lines)")
    p.set_defaults(run=run)
    return p


def as_text(row: dict) -> str:
    """One sample as a person reads it: the prompt and its continuation, an image and its caption, ..."""
    if "continuation" in row:
        return row.get("prompt", "") + row["continuation"]
    if "caption" in row:
        return f"{row['image']}\t{row['caption']}"
    if "files" in row:
        return "\n".join(str(f) for f in row["files"])
    return json_text(row)


def run(args: argparse.Namespace) -> int:
    from rnnkit.config import validate
    from rnnkit.fileio import atomic_write_jsonl
    from rnnkit.tasks.base import GenerateOptions
    from rnnkit.tasks.runner import generate

    from .predict import read_lines

    prompts = list(args.prompts)
    if args.file is not None:
        if str(args.file) == "-":
            prompts += [line for line in sys.stdin.read().splitlines() if line.strip()]
        else:
            prompts += read_lines(args.file)
    options = validate(
        GenerateOptions,
        {
            "max_tokens": args.max_tokens,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "beam_size": args.beam,
            "num_samples": args.num,
            "seed": args.seed,
        },
        "generate options",
    )
    rows = json_safe(generate(args.run_dir, prompts, options, out_dir=args.out))  # NaN/infinity as null
    if args.out is not None:
        atomic_write_jsonl(args.out / "generated.jsonl", rows)
    for i, r in enumerate(rows):
        if args.format == "json":
            print(json_text(r))
        else:
            print(("\n" if i else "") + as_text(r))
    return 0
