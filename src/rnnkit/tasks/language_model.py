"""Language modelling (many-to-many, aligned): predict the next word or character; generate continuations.

Data: the user's ``--data``, a plain text file (``data.encoding``, UTF-8 by default), read at
``data.level``:

* ``word`` — whitespace-separated tokens, and ``<eos>`` at the end of every non-blank line (as in
  Mikolov's PTB); the vocabulary is the train split's tokens seen at least ``data.min_frequency``
  times (default 2), the rest read as ``<unk>`` (a corpus that already holds ``<unk>``, like PTB,
  keeps it: set ``data.min_frequency=1`` there to keep its whole vocabulary);
* ``char`` — every character, line ends included as ``\\n`` (``min_frequency`` default 1).

Splits keep the text's order (like the ``shakespeare`` rule in DATASETS.md): of the file's ``n``
lines (blank ones included), the first ``floor(0.9 n)`` are train, the lines up to ``floor(0.95 n)``
validation, the rest test. A folder holding one train, one valid/dev and one test file
(:func:`rnnkit.data.textfile.split_files`, e.g. ``ptb.train.txt``) is used as given.

Training is truncated BPTT over :class:`~rnnkit.data.bptt.BPTTStream`: each split is one token
stream (after a boundary token, ``<eos>`` or ``\\n``, so its first token is predicted too) cut into
``train.batch_size`` contiguous rows and windows of ``data.bptt`` steps. The trainer carries the
model's state from window to window (reset at each epoch's start); evaluation carries it the same
way, so every token of a split is scored exactly once, with all the context before it in its row.

Model: :class:`~rnnkit.models.LanguageModel` (``model.tie_weights`` shares the embedding with the
output layer, adding a projection to ``embed_dim`` when ``hidden_size`` differs). Metrics from summed
token log-likelihoods: ``loss`` (nats per token), ``perplexity`` = exp(loss), and for characters
``bpc`` (bits per character). ``predict`` continues prompts by sampling (``generate`` section,
seeded: the same prompt gives the same text; ``temperature: 0`` is greedy). Predictions:
``predictions.jsonl`` with continuations of ``generate.test_prompts`` prompts cut from test lines,
beside the text that really followed.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from ..data.bptt import BPTTStream
from ..data.registry import SPLITS
from ..data.text import PAD_ID
from ..data.textfile import check_encoding, read_lines, split_files
from ..data.vocab import EOS, PAD, UNK, Vocabulary
from ..decoding import sample
from ..errors import RnnkitError
from ..fileio import atomic_write_jsonl
from ..models import LanguageModel
from ..models.base import eval_mode
from ..models.encoder import CellName
from ..training import Task
from .base import RecipeConfig, TaskKind
from .common import encoder_args, masked_cross_entropy

log = logging.getLogger("rnnkit")

#: the fractions of lines that end the train and the validation split
SPLIT_AT = (0.90, 0.95)
#: a test prompt is at most this many words / characters of a test line (about half of it)
PROMPT_WORDS, PROMPT_CHARS = 10, 40


class LMDataConfig(StrictModel):
    level: Literal["word", "char"] = Field("word", description="tokens: whitespace words (+ <eos>) or characters")
    min_frequency: int = Field(2, ge=1, description="rarer train tokens become <unk> (default: word 2, char 1)")
    max_vocab: int | None = Field(None, ge=4, description="keep the most frequent tokens (specials included)")
    bptt: int = Field(35, ge=1, description="steps per truncated-BPTT window; the state carries across windows")
    encoding: str = Field("utf-8", description="of the text file")

    _encoding = field_validator("encoding")(check_encoding)

    @model_validator(mode="before")
    @classmethod
    def _level_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("min_frequency") is None:
            return {**data, "min_frequency": 1 if data.get("level") == "char" else 2}
        return data


class LMModelConfig(StrictModel):
    cell: CellName = "lstm"
    embed_dim: int = Field(256, gt=0)
    hidden_size: int = Field(256, gt=0)
    num_layers: int = Field(2, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1, description="on embeddings (locked), between layers, on outputs")
    tie_weights: bool = Field(False, description="the output layer reuses the embedding matrix")


class GenerateConfig(StrictModel):
    max_tokens: int = Field(100, ge=1, description="tokens generated per prompt")
    temperature: float = Field(0.8, ge=0, description="0: greedy; below 1: safer; above 1: more varied")
    top_k: int | None = Field(None, ge=1, description="sample among the k most likely tokens only")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling")
    seed: int = Field(0, description="the same seed and prompt give the same continuation")
    stop_at_line_end: bool = Field(False, description="stop at <eos> (word) or a line end (char)")
    test_prompts: int = Field(3, ge=0, description="continuations of test prompts written to predictions.jsonl")


class LanguageModelTaskConfig(RecipeConfig):
    task: Literal["language-model"] = "language-model"
    data: LMDataConfig = Field(default_factory=LMDataConfig)
    model: LMModelConfig = Field(default_factory=LMModelConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)


# -- text -> tokens -----------------------------------------------------------------------------------
def boundary_token(level: str) -> str:
    """What precedes a stream or a prompt: the line end the text starts after."""
    return EOS if level == "word" else "\n"


def line_tokens(line: str, level: str) -> list[str]:
    if level == "char":
        return [*line, "\n"]
    words = line.split()
    return [*words, EOS] if words else []


def split_lines(lines: list[str]) -> dict[str, list[str]]:
    """First 90% of the lines train, next 5% validation, last 5% test (module docstring)."""
    n = len(lines)
    a, b = (int(n * f) for f in SPLIT_AT)
    return {"train": lines[:a], "validation": lines[a:b], "test": lines[b:]}


def detokenize(tokens: list[str], level: str) -> str:
    if level == "char":
        return "".join("\ufffd" if t in (PAD, UNK) else t for t in tokens)
    out = ""
    for t in tokens:
        if t == EOS:
            out += "\n"
        else:
            out += ("" if not out or out.endswith("\n") else " ") + t
    return out


# -- the task -----------------------------------------------------------------------------------------
class LanguageModelTask(TaskKind):
    name = "language-model"
    config_class = LanguageModelTaskConfig
    input_help = "prompts to continue"

    def _load_lines(self) -> tuple[dict[str, list[str]], dict[str, Any]]:
        d = self.config.data
        if self.data_path is None:
            raise RnnkitError("no data: give --data FILE (plain text) or a FOLDER with train/valid/test files")
        path = self.data_path
        if path.is_dir():
            files = split_files(path)
            lines = {s: read_lines(files[s], d.encoding) for s in SPLITS}
            info: dict[str, Any] = {"source": str(path), "files": {s: files[s].name for s in SPLITS}}
        else:
            lines = split_lines(read_lines(path, d.encoding))
            info = {"source": str(path), "split": "lines in order: first 90% train, next 5% validation, last 5% test"}
        for s in SPLITS:
            if not any(line_tokens(line, d.level) for line in lines[s]):
                where = str(path / info["files"][s]) if path.is_dir() else str(path)
                n = sum(len(v) for v in lines.values())
                hint = "" if path.is_dir() else f" (the file has {n} lines; the 90/5/5 split by lines needs 20 or more)"
                raise RnnkitError(f"the {s} split has no text{hint}", where=where)
        info["lines"] = {s: len(lines[s]) for s in SPLITS}
        return lines, info

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        d = self.config.data
        lines, info = self._load_lines()
        tokens = {s: [t for line in lines[s] for t in line_tokens(line, d.level)] for s in SPLITS}
        if not reuse:
            specials = (PAD, UNK, boundary_token(d.level))
            self.vocab = Vocabulary.build(
                [tokens["train"]], specials=specials, min_frequency=d.min_frequency, max_size=d.max_vocab
            )
            self.vocab.save(run_dir / "vocab.json")
        start = self.vocab.encode([boundary_token(d.level)])
        rows = self.config.train.batch_size
        self.streams = {}
        for s in SPLITS:
            ids = torch.tensor(start + self.vocab.encode(tokens[s]), dtype=torch.long)
            self.streams[s] = BPTTStream(ids, rows=rows, bptt=d.bptt)
        unk = self.vocab.unk_id
        info.update(
            level=d.level,
            tokens={s: self.streams[s].num_tokens for s in SPLITS},
            unk_rate={
                s: round(float((self.streams[s].targets == unk).sum()) / self.streams[s].num_tokens, 6) for s in SPLITS
            },
            vocabulary=len(self.vocab),
        )
        self.test_lines = lines["test"]
        log.info(
            "data %s (%s level): tokens %s, vocabulary %d", info["source"], d.level, info["tokens"], len(self.vocab)
        )
        return info

    def state(self) -> dict[str, Any]:
        return {"vocab": "vocab.json"}

    @classmethod
    def from_run(cls, config, run_dir, state):
        task = cls(config)
        task.vocab = Vocabulary.load(run_dir / state["vocab"])
        return task

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        m = self.config.model
        encoder = encoder_args(m, len(self.vocab))
        # tying needs the decoder's input to be embed_dim wide: project the top hidden state when it is not
        proj = m.embed_dim if m.tie_weights and m.hidden_size != m.embed_dim else None
        return LanguageModel(encoder=encoder, tie_weights=m.tie_weights, proj_size=proj, dropout=m.dropout)

    def trainer_task(self) -> Task:
        level = self.config.data.level
        held: dict[str, Any] = {"state": None}  # evaluation's carried state (the trainer carries training's)

        def train_step(model, b, carry):
            logits, state = model(b["x"], b.get("lengths"), state=carry)
            nll, n = token_nll(logits, b, "mean")
            return nll, state, n

        def eval_step(model, b):
            state = None if b["window"] == 0 else held["state"]
            logits, held["state"] = model(b["x"], b.get("lengths"), state=state)
            nll, n = token_nll(logits, b, "sum")
            return {"nll_sum": float(nll), "tokens": float(n)}

        def finalize(s):
            return lm_metrics(s["nll_sum"], s["tokens"], level)

        return Task(
            batches=lambda split, epoch: iter(self.streams[split]),
            train_step=train_step,
            eval_step=eval_step,
            finalize=finalize,
            num_batches=lambda split: len(self.streams[split]),
        )

    # -- outputs ------------------------------------------------------------------------------------
    def _prompt_ids(self, prompt: str) -> list[int]:
        level = self.config.data.level
        tokens = list(prompt) if level == "char" else prompt.split()
        return self.vocab.encode([boundary_token(level), *tokens])

    @torch.no_grad()
    def generate(self, model: LanguageModel, prompt: str) -> str:
        """A continuation of ``prompt`` (module docstring); the same prompt and seed give the same text."""
        level = self.config.data.level
        device = next(model.parameters()).device
        with eval_mode(model):
            last, state = model.prime(torch.tensor([self._prompt_ids(prompt)], device=device))
            tokens = self._sample(model, last, state)
        return detokenize(self.vocab.decode(tokens), level)

    def _sample(self, model: LanguageModel, last: torch.Tensor, state) -> list[int]:
        g = self.config.generate
        device = last.device
        never = torch.tensor([PAD_ID], device=device)

        def step(tokens, state):
            logits, state = model.step(tokens, state)
            return logits.index_fill(1, never, float("-inf")), state  # padding is not text

        # without a stop token, stop on the (never sampled) padding id: only max_tokens ends the text
        eos = self.vocab.index[boundary_token(self.config.data.level)] if g.stop_at_line_end else PAD_ID
        generator = torch.Generator(device=device).manual_seed(g.seed)
        result = sample(
            step,
            state,
            bos=last,
            eos=eos,
            max_len=g.max_tokens,
            temperature=g.temperature,
            top_k=g.top_k,
            top_p=g.top_p,
            generator=generator,
        )
        return result.sequences[0]

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        return [{"prompt": p, "continuation": self.generate(model, p)} for p in inputs]

    def test_prompts(self) -> list[tuple[str, str]]:
        """``generate.test_prompts`` (prompt, what followed) pairs cut from test lines spread over the split."""
        level = self.config.data.level
        long_enough = (lambda line: len(line) >= 2) if level == "char" else (lambda line: len(line.split()) >= 2)
        lines = [line for line in self.test_lines if long_enough(line)]
        k = min(self.config.generate.test_prompts, len(lines))
        out = []
        for i in range(k):
            line = lines[i * len(lines) // k]
            if level == "char":
                cut = min(PROMPT_CHARS, len(line) // 2)
                out.append((line[:cut], line[cut:]))
            else:
                words = line.split()
                cut = min(PROMPT_WORDS, len(words) // 2)
                out.append((" ".join(words[:cut]), " ".join(words[cut:])))
        return out

    def write_predictions(self, model, run_dir) -> None:
        rows = [
            {"prompt": p, "continuation": self.generate(model, p), "reference": ref} for p, ref in self.test_prompts()
        ]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)


def token_nll(logits: torch.Tensor, b: dict, reduction: str) -> tuple[torch.Tensor, int]:
    """Cross-entropy of the window's real steps (``lengths`` when the rows are ragged) and their count."""
    y, lengths = b["y"], b.get("lengths")
    if lengths is None:
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction=reduction), y.numel()
    return masked_cross_entropy(logits, y, lengths, reduction)


def lm_metrics(nll_sum: float, tokens: float, level: str) -> dict[str, float]:
    """Per-token loss (nats), perplexity and, for characters, bits per character."""
    loss = nll_sum / max(tokens, 1.0)
    out = {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}
    if level == "char":
        out["bpc"] = loss / math.log(2)
    return out
