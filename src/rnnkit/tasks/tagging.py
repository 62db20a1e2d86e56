"""Sequence tagging (many-to-many, aligned): part-of-speech tags, named entities, chunks — one tag per token.

Data: a registry dataset (``data.dataset: brown-pos``: the Brown corpus with its document split,
docs/datasets.md) or the user's ``--data`` (which wins when both are given) in one of three formats
(``data.format``; ``auto`` picks by the file):

* ``conll`` — one token per line in columns separated by tabs (or, in a file without tabs, by spaces),
  a blank line between sentences; ``data.token_column`` (default 0) and ``data.tag_column`` (default
  -1, the last) pick the columns, every line has the same number of columns, and ``-DOCSTART-``
  lines (CoNLL-2003) are skipped;
* ``conllu`` — CoNLL-U: 10 tab-separated columns, token = FORM (column 1), tag = UPOS (column 3;
  ``data.tag_column: 4`` for XPOS); multiword-token ranges (``1-2``) and empty nodes (``1.1``) are skipped;
* ``wordtag`` — NLTK/Brown style: one sentence per line, ``word/tag`` tokens separated by whitespace
  (the tag is after the last ``/``).

``#`` lines are comments: in the column formats only before a sentence's first token (a ``#`` token
inside a sentence is data), in ``wordtag`` when the line's first field has no ``/``. ``auto`` reads
``.conllu`` files and 10-column lines starting with a word index as CoNLL-U, lines whose every
field holds a ``/`` as ``wordtag``, and anything else as ``conll``. Malformed lines are reported as
``file:line``.

Splits: a single file is split like the registry data, ``h(" ".join(tokens)) % 10 == 0`` test,
``== 1`` validation, the rest train; a folder holding one train, one dev/validation and one test file
(:func:`rnnkit.data.textfile.split_files`) is used as given. Words (optionally lowercased) seen at
least ``data.min_frequency`` times in train form the vocabulary (``vocab.json``); the rest read as
``<unk>``.

Tag sets: ``data.tagset: full`` trains on the data's own tags; ``universal`` maps Brown tags to the 12
universal tags of Petrov et al. (:mod:`rnnkit.data.tagsets`; a tag that is not a Brown tag is an error
naming its file and line). The model's tags are the train split's. In a user's files a tag found only
in validation/test is an error naming its file and line. A registry dataset instead keeps going: the
full Brown tags hold a few compound tags seen only in validation/test (23 and 11 tokens), so the tag
list gets one more entry, ``<unk-tag>``, that these tokens are read as. It is never a training target,
and a token whose gold tag is ``<unk-tag>`` always counts as an error (whatever is predicted), so the
accuracy is over every token of the split, as the perceptron baseline's is. A run that has
``<unk-tag>`` reads unseen tags in other data (``rnnkit evaluate --data``) the same way.

Model: :class:`~rnnkit.models.Tagger` (BiLSTM, optional CRF with ``model.crf``). Metrics: token
accuracy and loss (per token); when the model is trained on full tags that are all Brown tags
(``brown-pos``'s are), also ``universal_accuracy``: the predictions and the gold tags both mapped to the
universal tags (a gold tag unseen in train is mapped from its own Brown tag, so it can be right there).

Entity tags (NER, chunking): when every train tag is ``O`` or ``P-TYPE`` (``B-PER``, ``I-PER``, ...), the
tagging scheme (IOB1, IOB2, IOE1, IOE2, IOBES, BILOU) is detected from the train sentences
(:func:`rnnkit.metrics.sequence.detect_scheme`) and the metrics add ``entity_precision``, ``entity_recall``
and ``entity_f1``: seqeval's strict, micro-averaged scores under that scheme (an entity counts only with its
type, start and end right), from additive counts, so they equal seqeval's on the whole split. With
``model.crf`` the CRF's Viterbi is constrained to the scheme: it never decodes ``I-PER`` after ``O`` or
after ``B-LOC`` (:func:`rnnkit.models.crf.allowed_transitions`). ``data.metric`` picks the validation
metric that chooses the best epoch and drives early stopping (it sets ``train.monitor`` and
``train.monitor_mode``); ``meta.json`` records the scheme (``task_state.tag_scheme``) and the metrics
(``task_state.metric_set``).
Predictions: ``predictions.jsonl`` on the test split; a confusion matrix for up to 20 tags. ``predict``
reads a whitespace-tokenized sentence and answers ``{"tokens": [...], "tags": [...]}``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from ..config import StrictModel
from ..data import registry
from ..data.registry import SPLITS, split_by_hash
from ..data.tagsets import UNIVERSAL_TAGS, brown_to_universal
from ..data.text import BucketBatchSampler, pad_ids
from ..data.textfile import check_encoding, read_lines, split_files
from ..data.vocab import Vocabulary
from ..errors import RnnkitError
from ..fileio import atomic_write_jsonl
from ..layers import lengths_to_mask
from ..metrics.sequence import Scheme, detect_scheme, entity_scores_from_statistics, entity_statistics, scheme_of_labels
from ..models import Tagger
from ..models.encoder import CellName
from ..training import Task
from .base import RecipeConfig, StateFile, TaskKind
from .common import check_task_dataset, confusion_matrix, encoder_args, task_datasets

log = logging.getLogger("rnnkit")

Format = Literal["conll", "conllu", "wordtag"]
#: CoNLL-U's FORM and UPOS columns
CONLLU_COLUMNS = (1, 3)
_CONLLU_ID = re.compile(r"\d+([-.]\d+)?$")
#: the most tags the confusion-matrix plot shows (beyond that it is unreadable)
MAX_PLOT_TAGS = 20
#: what a registry dataset's validation/test tag unseen in train reads as (module docstring)
UNK_TAG = "<unk-tag>"
#: the metrics ``data.metric`` may choose (the first is minimised, the others maximised)
TaggingMetric = Literal["loss", "accuracy", "universal_accuracy", "entity_precision", "entity_recall", "entity_f1"]
ENTITY_METRICS = ("entity_precision", "entity_recall", "entity_f1")


class TaggingDataConfig(StrictModel):
    dataset: str | None = Field(None, description="registry dataset: brown-pos; ignored when --data is given")
    tagset: Literal["full", "universal"] = Field(
        "full", description="full: the data's tags; universal: Brown tags mapped to the 12 universal tags"
    )
    format: Literal["auto", "conll", "conllu", "wordtag"] = Field("auto", description="see the module docstring")
    token_column: int | None = Field(None, description="conll: default 0; conllu: default 1 (FORM)")
    tag_column: int | None = Field(None, description="conll: default -1 (the last); conllu: default 3 (UPOS)")
    encoding: str = Field("utf-8", description="of the data files (Brown is latin-1)")
    lowercase: bool = Field(False, description="lowercase words before the vocabulary lookup")
    min_frequency: int = Field(2, ge=1, description="rarer train words become <unk>")
    max_vocab: int | None = Field(None, ge=3, description="keep the most frequent words (specials included)")
    bucket_batches: int = Field(50, ge=1, description="batches per length-sorting chunk")
    max_word_chars: int = Field(
        20, ge=2, description="character features: longer words keep their first and last max/2 characters"
    )
    metric: TaggingMetric | None = Field(
        None,
        description="validation metric for the best epoch and early stopping (sets train.monitor and "
        "monitor_mode); null: train.monitor as given",
    )

    _encoding = field_validator("encoding")(check_encoding)

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        return check_task_dataset(v, "tagging")


class TaggingModelConfig(StrictModel):
    cell: CellName = "lstm"
    embed_dim: int = Field(100, gt=0)
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = True
    dropout: float = Field(0.3, ge=0, lt=1, description="on embeddings (locked), between layers, before the output")
    crf: bool = Field(False, description="score whole tag sequences with a linear-chain CRF (Viterbi decoding)")
    char_features: Literal["none", "cnn", "lstm"] = Field(
        "none", description="a vector per word from its characters (CNN or BiLSTM), joined to its embedding"
    )
    char_embed_dim: int = Field(32, gt=0, description="character embedding size")
    char_hidden: int = Field(64, gt=0, description="character CNN filters, or BiLSTM units per direction")


class TaggingConfig(RecipeConfig):
    task: Literal["tagging"] = "tagging"
    data: TaggingDataConfig = Field(default_factory=TaggingDataConfig)
    model: TaggingModelConfig = Field(default_factory=TaggingModelConfig)

    @model_validator(mode="after")
    def _monitor_metric(self) -> TaggingConfig:
        """``data.metric`` becomes the trainer's monitored metric (loss is minimised, the others maximised)."""
        metric = self.data.metric
        if metric is not None:
            mode = "min" if metric == "loss" else "max"
            if self.train.monitor != metric:
                self.train.monitor = metric
            if self.train.monitor_mode != mode:
                self.train.monitor_mode = mode
        return self


# -- reading ------------------------------------------------------------------------------------------
@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    path: str
    lines: list[int]  # the file line of each token


def detect_format(path: Path, lines: list[str]) -> Format:
    """``auto``: the format the file looks like (module docstring)."""
    if path.suffix.lower() == ".conllu":
        return "conllu"
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) == 10 and _CONLLU_ID.match(fields[0]):
            return "conllu"
        if all(_word_tag(f) for f in line.split()):
            return "wordtag"
        return "conll"
    return "conll"


def read_tagged(
    path: Path,
    format: Literal["auto", "conll", "conllu", "wordtag"] = "auto",
    token_column: int | None = None,
    tag_column: int | None = None,
    encoding: str = "utf-8",
) -> tuple[list[Sentence], Format]:
    """Sentences of tokens and tags from one file; errors name the file and line.

    In ``conll`` a line whose first field is ``-DOCSTART-`` is CoNLL-2003's document marker, not a token: it
    ends the sentence before it and is dropped (so a token spelled ``-DOCSTART-`` cannot be read from conll).
    """
    lines = read_lines(path, encoding)
    fmt: Format = detect_format(path, lines) if format == "auto" else format
    if fmt == "wordtag":
        if token_column is not None or tag_column is not None:
            raise RnnkitError(
                "data.token_column/tag_column apply to conll and conllu files, not word/tag lines", where=str(path)
            )
        sentences = _read_wordtag(path, lines)
    else:
        default_token, default_tag = CONLLU_COLUMNS if fmt == "conllu" else (0, -1)
        token_column = default_token if token_column is None else token_column
        tag_column = default_tag if tag_column is None else tag_column
        sentences = _read_columns(path, lines, fmt, token_column, tag_column)
    if not sentences:
        raise RnnkitError(f"no tagged sentences found (read as {fmt})", where=str(path))
    return sentences, fmt


def _word_tag(field: str) -> tuple[str, str] | None:
    """``"1/2/cd"`` -> ``("1/2", "cd")``: the tag follows the last ``/``; None unless both parts are non-empty."""
    word, _, tag = field.rpartition("/")
    return (word, tag) if word and tag else None


def _read_wordtag(path: Path, lines: list[str]) -> list[Sentence]:
    out, name = [], str(path)
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or (fields[0].startswith("#") and "/" not in fields[0]):
            continue
        pairs = []
        for f in fields:
            pair = _word_tag(f)
            if pair is None:
                raise RnnkitError(f"expected word/tag tokens, got {f[:40]!r}", where=f"{name}:{n}")
            pairs.append(pair)
        out.append(Sentence([w for w, _ in pairs], [t for _, t in pairs], name, [n] * len(pairs)))
    return out


def _read_columns(path: Path, lines: list[str], fmt: Format, token_column: int, tag_column: int) -> list[Sentence]:
    out, name = [], str(path)
    tokens: list[str] = []
    tags: list[str] = []
    where: list[int] = []
    width: tuple[int, int] | None = None  # (columns, first line) of the file's first token line

    def close() -> None:
        if tokens:
            out.append(Sentence(list(tokens), list(tags), name, list(where)))
            tokens.clear()
            tags.clear()
            where.clear()

    for n, line in enumerate(lines, 1):
        if not line.strip():
            close()
            continue
        if not tokens and line.lstrip().startswith("#"):
            continue  # a comment (before a sentence's first token)
        if fmt == "conllu":
            fields = line.split("\t")
            if len(fields) != 10:
                raise RnnkitError(
                    f"CoNLL-U lines have 10 tab-separated columns, found {len(fields)}", where=f"{name}:{n}"
                )
            if "-" in fields[0] or "." in fields[0]:
                continue  # a multiword-token range or an empty node: not a tagged word
        else:
            fields = [f.strip() for f in line.split("\t")] if "\t" in line else line.split()
            if fields[0] == "-DOCSTART-":  # CoNLL-2003 document separators
                close()
                continue
            if width is None:
                width = (len(fields), n)
            elif len(fields) != width[0]:
                raise RnnkitError(
                    f"expected {width[0]} columns like line {width[1]}, found {len(fields)}", where=f"{name}:{n}"
                )
            if len(fields) < 2:
                raise RnnkitError("expected a token and a tag column, found 1 column", where=f"{name}:{n}")
        k = len(fields)
        missing = [c for c in (token_column, tag_column) if not -k <= c < k]
        if missing:
            raise RnnkitError(
                f"no column {missing[0]} (the line has {k}); set data.token_column/tag_column", where=f"{name}:{n}"
            )
        if token_column % k == tag_column % k:
            raise RnnkitError(
                f"data.token_column and data.tag_column name the same column ({token_column % k})", where=f"{name}:{n}"
            )
        token, tag = fields[token_column], fields[tag_column]
        if not token or not tag or (fmt == "conllu" and tag == "_"):
            column, what = (token_column, "token") if not token else (tag_column, "tag")
            raise RnnkitError(f"empty {what} in column {column}", where=f"{name}:{n}")
        tokens.append(token)
        tags.append(tag)
        where.append(n)
    close()
    return out


# -- the task -----------------------------------------------------------------------------------------
class Tagging(TaskKind):
    name = "tagging"
    config_class = TaggingConfig
    input_help = "sentences to tag (tokens separated by spaces)"
    inputs = "text"
    view = "tag"
    state_keys = ("tags", "tag_scheme")
    state_files = {
        "vocab": StateFile("vocab", "vocab.json", Vocabulary.load),
        "chars": StateFile("char_vocab", "chars.json", Vocabulary.load, optional=True),
    }
    #: with ``model.char_features``: the characters of the train words (``chars.json`` in the run)
    char_vocab: Vocabulary | None = None
    #: the entity tagging scheme of the train tags, or None (not entity tags: no entity metrics)
    tag_scheme: Scheme | None = None

    @classmethod
    def from_run(cls, config: RecipeConfig, run_dir: Path, state: dict[str, Any]) -> TaskKind:
        if "tag_scheme" not in state:  # a run from before schemes were detected: read them off the tag list
            state = {**state, "tag_scheme": scheme_of_labels(t for t in state["tags"] if t != UNK_TAG)}
        return super().from_run(config, run_dir, state)

    def recorded_state(self) -> dict[str, Any]:
        return {"metric_set": self.metric_set()}

    def metric_set(self) -> dict[str, Any]:
        """The metrics this run reports and the one that picks its best epoch (``meta.json``'s record)."""
        names = ["loss", "accuracy"]
        if self.universal_of is not None:
            names.append("universal_accuracy")
        if self.tag_scheme is not None:
            names += ENTITY_METRICS
        t = self.config.train
        return {"reported": names, "validation": t.monitor, "mode": t.monitor_mode, "scheme": self.tag_scheme,
                "entity_mode": "seqeval strict, micro-averaged" if self.tag_scheme else None}  # fmt: skip

    def _read(self, path: Path) -> tuple[list[Sentence], Format]:
        d = self.config.data
        return read_tagged(path, d.format, d.token_column, d.tag_column, d.encoding)

    def _read_sources(self) -> tuple[dict[str, list[Sentence]], dict[str, Any]]:
        """The three splits of the user's file/folder or of the registry dataset, as read (tags unmapped)."""
        d = self.config.data
        path = self.data_path
        if path is None and d.dataset is not None:
            spec = registry.get_spec(d.dataset)
            raw = registry.load_splits(spec.name)
            # an error names the split and the record's 1-based position in it
            splits = {
                s: [Sentence(r["tokens"], r["tags"], f"{spec.name} {s}", [i] * len(r["tokens"])) for i, r in
                    enumerate(raw[s], 1)]
                for s in SPLITS
            }  # fmt: skip
            info = {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "license": spec.license,
                    "split": spec.split_rule, "format": "wordtag"}  # fmt: skip
            return splits, info
        if path is None:
            raise RnnkitError(
                "no data: give --data FILE or FOLDER (CoNLL columns, CoNLL-U, or word/tag lines), "
                f"or set data.dataset ({', '.join(task_datasets('tagging'))})"
            )
        if path.is_dir():
            files = split_files(path)
            splits, formats = {}, set()
            for s in SPLITS:
                splits[s], fmt = self._read(files[s])
                formats.add(fmt)
            info: dict[str, Any] = {"source": str(path), "files": {s: files[s].name for s in SPLITS}}
        else:
            sentences, fmt = self._read(path)
            formats = {fmt}
            by_key = split_by_hash([{"text": " ".join(s.tokens), "s": s} for s in sentences])
            splits = {s: [r["s"] for r in rows] for s, rows in by_key.items()}
            info = {"source": str(path)}
        info["format"] = "/".join(sorted(formats))
        return splits, info

    def _load_splits(self, known_tags: list[str] | None = None) -> tuple[dict[str, list[Sentence]], dict, list[str]]:
        splits, info = self._read_sources()
        for s in SPLITS:
            if not splits[s]:
                raise RnnkitError(f"the {s} split is empty (need more sentences)", where=info["source"])
        if self.config.data.tagset == "universal":
            splits = {s: [_to_universal(x) for x in rows] for s, rows in splits.items()}
        tags = list(known_tags) if known_tags else sorted({t for s in splits["train"] for t in s.tags})
        known = set(tags)
        unseen = {
            split: [(sent, tag, line) for sent in splits[split]
                    for tag, line in zip(sent.tags, sent.lines, strict=True) if tag not in known]
            for split in (SPLITS if known_tags else SPLITS[1:])
        }  # fmt: skip
        if any(unseen.values()):
            registry_data = self.data_path is None
            if not known_tags and registry_data:
                tags.append(UNK_TAG)
            elif UNK_TAG not in known:
                sent, tag, line = next(u for rows in unseen.values() for u in rows)
                what = "the model was not trained on" if known_tags else "is not in the train split's tags"
                more = ", ..." if len(tags) > 12 else ""
                raise RnnkitError(
                    f"tag {tag!r} {what} ({len(tags)} tags: {', '.join(tags[:12])}{more})", where=f"{sent.path}:{line}"
                )
            info["unseen_tag_tokens"] = {s: len(rows) for s, rows in unseen.items()}
            log.info("tags unseen in train, read as %s (counted as errors): %s", UNK_TAG, info["unseen_tag_tokens"])
        if len([t for t in tags if t != UNK_TAG]) < 2:
            raise RnnkitError(f"need at least 2 tags, the train split has {tags}", where=info["source"])
        info["sizes"] = {s: len(splits[s]) for s in SPLITS}
        info["tokens"] = {s: sum(len(x.tokens) for x in splits[s]) for s in SPLITS}
        info["tagset"] = self.config.data.tagset
        return splits, info, tags

    def _words(self, tokens: list[str]) -> list[str]:
        return [t.lower() for t in tokens] if self.config.data.lowercase else tokens

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        splits, info, tags = self._load_splits(known_tags=self.tags if reuse else None)
        d = self.config.data
        if not reuse:
            self.tags = tags
            self.tag_scheme = detect_scheme([t for t in x.tags if t != UNK_TAG] for x in splits["train"])
            self.vocab = Vocabulary.build(
                (self._words(s.tokens) for s in splits["train"]), min_frequency=d.min_frequency, max_size=d.max_vocab
            )
            self.vocab.save(run_dir / "vocab.json")
            self.char_vocab = None
            if self.config.model.char_features != "none":  # characters keep their case even with lowercase words
                self.char_vocab = Vocabulary.build(list(w) for x in splits["train"] for w in x.tokens)
                self.char_vocab.save(run_dir / "chars.json")
        index = {t: i for i, t in enumerate(self.tags)}
        unk = index.get(UNK_TAG)  # every tag not in index maps here (_load_splits made sure there is one)
        self.universal_of = universal_table(self.tags) if d.tagset == "full" else None
        self._check_metric()
        if self.tag_scheme is not None:
            log.info("entity tags in the %s scheme: entity precision, recall and F1 reported (seqeval, strict)",
                     self.tag_scheme)  # fmt: skip
        self.splits = {
            s: {
                "tokens": [x.tokens for x in rows],
                "tags": [x.tags for x in rows],
                "ids": [self.vocab.encode(self._words(x.tokens)) for x in rows],
                "char_ids": [self._char_ids(x.tokens) for x in rows] if self.char_vocab is not None else None,
                "tag_ids": [[index.get(t, unk) for t in x.tags] for x in rows],
            }
            for s, rows in splits.items()
        }
        if self.universal_of is not None:
            for data in self.splits.values():
                data["universal_ids"] = [[universal_id(t) for t in tags] for tags in data["tags"]]
        info["vocabulary"] = len(self.vocab)
        info["tags"] = len(self.tags)
        log.info(
            "data %s (%s): sentences %s, vocabulary %d, tags %d",
            info["source"],
            info["format"],
            info["sizes"],
            len(self.vocab),
            len(self.tags),
        )
        return info

    def _check_metric(self) -> None:
        """``data.metric`` must be one this data reports (entity metrics need entity tags)."""
        metric, reported = self.config.data.metric, self.metric_set()["reported"]
        if metric is not None and metric not in reported:
            why = "the tags are not entity tags (O, B-X, I-X, ...)" if metric in ENTITY_METRICS else "not reported here"
            raise RnnkitError(f"data.metric={metric!r}: {why}; choose one of {', '.join(reported)}")

    def _char_ids(self, tokens: list[str]) -> list[list[int]]:
        """Each word's character ids; a word longer than ``data.max_word_chars`` keeps its two ends."""
        n = self.config.data.max_word_chars
        head = n // 2
        return [self.char_vocab.encode(w if len(w) <= n else w[:head] + w[len(w) - (n - head) :]) for w in tokens]

    def restored(self) -> None:
        self.universal_of = universal_table(self.tags) if self.config.data.tagset == "full" else None

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> Tagger:
        m = self.config.model
        encoder = encoder_args(m, len(self.vocab), bidirectional=m.bidirectional)
        chars = None
        if self.char_vocab is not None:
            chars = dict(num_chars=len(self.char_vocab), kind=m.char_features, embed_dim=m.char_embed_dim,
                         hidden_size=m.char_hidden)  # fmt: skip
        names = {}
        if m.crf and self.tag_scheme is not None:  # Viterbi constrained to the scheme's transitions
            names = dict(tag_names=list(self.tags), tag_scheme=self.tag_scheme)
        return Tagger(encoder=encoder, chars=chars, num_tags=len(self.tags), crf=m.crf, dropout=m.dropout, **names)

    def _batches(self, split: str, epoch: int):
        data = self.splits[split]
        sampler = BucketBatchSampler(
            [len(x) for x in data["ids"]],
            self.config.train.batch_size,
            shuffle=split == "train",
            seed=self.config.train.seed,
            bucket_batches=self.config.data.bucket_batches,
        )
        sampler.set_epoch(epoch)
        for idx in sampler:
            x, lengths, y = collate([data["ids"][i] for i in idx], [data["tag_ids"][i] for i in idx])
            batch = {"x": x, "lengths": lengths, "y": y}
            if data["char_ids"] is not None:
                batch["chars"] = collate_chars([data["char_ids"][i] for i in idx])
            if split != "train" and "universal_ids" in data:
                batch["y_universal"] = pad_ids([data["universal_ids"][i] for i in idx], 0)
            yield batch

    def trainer_task(self) -> Task:
        unk = self.tags.index(UNK_TAG) if UNK_TAG in self.tags else None
        table = torch.tensor(self.universal_of) if self.universal_of is not None else None
        scheme = self.tag_scheme
        labels = ["O" if t == UNK_TAG else t for t in self.tags]  # an unseen gold tag is outside every entity

        def train_step(model, b, carry):
            return model.loss(b["x"], b["lengths"], b["y"], b.get("chars")), None, int(b["lengths"].sum())

        def eval_step(model, b):
            x, lengths, y = b["x"], b["lengths"], b["y"]
            emissions = model(x, lengths, b.get("chars"))  # (B, T, K); computed once for the loss and the prediction
            mask = lengths_to_mask(lengths, x.shape[1])
            if model.crf is not None:
                loss_sum = model.crf.nll(emissions, y, mask, reduction="sum")
                pred = model.crf.viterbi(emissions, mask, pad=0)[0]  # padded steps hold a valid index, masked below
            else:
                loss_sum = F.cross_entropy(emissions[mask].float(), y[mask], reduction="sum")
                pred = emissions.argmax(-1)
            correct = (pred == y) & mask
            if unk is not None:
                correct &= y != unk  # an unseen gold tag is an error whatever was predicted
            stats = {"loss_sum": float(loss_sum), "correct": float(correct.sum()), "n": float(mask.sum())}
            if table is not None and "y_universal" in b:
                gold = b["y_universal"]
                right = (table.to(pred.device)[pred] == gold) & (gold >= 0) & mask
                stats["universal_correct"] = float(right.sum())
            if scheme is not None:
                n = lengths.tolist()
                gold = [[labels[i] for i in row[:k]] for row, k in zip(y.tolist(), n, strict=True)]
                found = [[labels[i] for i in row[:k]] for row, k in zip(pred.tolist(), n, strict=True)]
                stats.update(entity_statistics(gold, found, scheme))
            return stats

        def finalize(s):
            n = max(s["n"], 1.0)
            out = {"loss": s["loss_sum"] / n, "accuracy": s["correct"] / n}
            if "universal_correct" in s:
                out["universal_accuracy"] = s["universal_correct"] / n
            if scheme is not None:
                out.update(entity_scores_from_statistics(s))
            return out

        bs = self.config.train.batch_size
        return Task(
            batches=self._batches,
            train_step=train_step,
            eval_step=eval_step,
            finalize=finalize,
            num_batches=lambda split: -(-len(self.splits[split]["ids"]) // bs),
        )

    # -- outputs ------------------------------------------------------------------------------------
    def _tag_ids(self, model: Tagger, sentences: list[list[str]]) -> list[list[int]]:
        """The model's tag ids for each sentence (a list of tokens), batched by length."""
        device = next(model.parameters()).device
        ids = [self.vocab.encode(self._words(t)) for t in sentences]
        out: list[list[int]] = [[] for _ in ids]
        nonempty = [i for i, x in enumerate(ids) if x]
        sampler = BucketBatchSampler([len(ids[i]) for i in nonempty], 256, shuffle=False)
        for batch in sampler:
            idx = [nonempty[j] for j in batch]
            x, lengths, _ = collate([ids[i] for i in idx])
            chars = None
            if self.char_vocab is not None:
                chars = collate_chars([self._char_ids(sentences[i]) for i in idx]).to(device)
            pred = model.predict(x.to(device), lengths.to(device), chars).cpu().tolist()
            for i, row, n in zip(idx, pred, lengths.tolist(), strict=True):
                out[i] = row[:n]
        return out

    def write_predictions(self, model, run_dir) -> None:
        data = self.splits["test"]
        pred = self._tag_ids(model, data["tokens"])
        rows = [
            {"tokens": tokens, "tags": tags, "predicted": [self.tags[t] for t in p]}
            for tokens, tags, p in zip(data["tokens"], data["tags"], pred, strict=True)
        ]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def plots(self, model, run_dir, metrics) -> list[Path]:
        K = len(self.tags)
        if K > MAX_PLOT_TAGS:
            return []
        from ..plots import confusion_matrix_plot

        data = self.splits["test"]
        sentences = zip(data["tag_ids"], self._tag_ids(model, data["tokens"]), strict=True)
        cm = confusion_matrix((pair for gold, pred in sentences for pair in zip(gold, pred, strict=True)), K)
        return [confusion_matrix_plot(cm, self.tags, run_dir / "plots" / "confusion_matrix.png")]

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        tokens = [text.split() for text in inputs]
        pred = self._tag_ids(model, tokens)
        return [{"tokens": t, "tags": [self.tags[i] for i in p]} for t, p in zip(tokens, pred, strict=True)]


def _to_universal(sent: Sentence) -> Sentence:
    """The sentence with its Brown tags mapped to universal tags; a tag that is not Brown's names its line."""
    out = []
    for tag, line in zip(sent.tags, sent.lines, strict=True):
        try:
            out.append(brown_to_universal(tag))
        except KeyError:
            raise RnnkitError(
                f"tag {tag!r} is not a Brown tag (data.tagset=universal maps Brown tags; use data.tagset=full)",
                where=f"{sent.path}:{line}",
            ) from None
    return Sentence(sent.tokens, out, sent.path, sent.lines)


def universal_id(tag: str) -> int:
    """A Brown tag's index in :data:`UNIVERSAL_TAGS`, or -1 when it is not a Brown tag."""
    try:
        return UNIVERSAL_TAGS.index(brown_to_universal(tag))
    except KeyError:
        return -1


def universal_table(tags: list[str]) -> list[int] | None:
    """Model tag index -> universal tag index (``<unk-tag>`` -> -2, never right), or None unless every
    tag is a Brown tag (then there is no universal accuracy to report)."""
    table = [-2 if t == UNK_TAG else universal_id(t) for t in tags]
    return None if -1 in table else table


def collate_chars(words: list[list[list[int]]]) -> torch.Tensor:
    """Sentences of words of character ids -> (B, T, W) long, 0 past each word's and sentence's end."""
    B = len(words)
    T = max((len(s) for s in words), default=0)
    W = max((len(w) for s in words for w in s), default=0)
    out = np.zeros((B, T, W), dtype=np.int64)
    for b, sentence in enumerate(words):
        for t, w in enumerate(sentence):
            out[b, t, : len(w)] = w
    return torch.from_numpy(out)


def collate(ids: list[list[int]], tags: list[list[int]] | None = None):
    """Sentences -> ids (B, T) padded with ``PAD_ID``, lengths (B,), tags (B, T) padded with 0 (or None)."""
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    return pad_ids(ids), lengths, pad_ids(tags, 0) if tags is not None else None
