"""Text classification (many-to-one): sentiment, spam, topic. The ``sentiment`` recipe and quickstart.

Data: a registry dataset (``data.dataset``, e.g. ``rotten-tomatoes``) or the user's ``--data FILE``:
a CSV with a header or a JSONL file, one example per row, with a text and a label column
(``data.text_column`` / ``data.label_column``). A user file is split like the registry datasets:
``h(text) % 10 == 0`` test, ``== 1`` validation, the rest train. ``--data FOLDER`` reads the IMDB
``aclImdb/`` layout (``train|test/pos|neg/<id>_<rating>.txt``; the folder itself or one that holds
``aclImdb/``): the official train/test split, validation = the train reviews with ``h(text) % 10 == 1``.

Model: :class:`~rnnkit.models.Classifier` over a word vocabulary (``tokenizers``, trained on the train
split only and saved as ``tokenizer.json`` in the run), or, with ``model.pretrained_embeddings`` (e.g.
``minilm-wordpiece``), over that dataset's WordPiece pieces with its input vectors as the initial embedding
matrix (``model.freeze_embeddings`` keeps them fixed, ``model.embedding_lr_scale`` trains them slower;
``model.trim_embeddings`` keeps only the pieces seen in train). The run's ``tokenizer.json`` and
``model.safetensors`` hold everything ``predict`` needs; the cache is read only when training.
Ensembles: ``model.ensemble: N`` trains N classifiers side by side on the same batches, each from its own
random initialisation, and predicts with the mean of their class probabilities
(:class:`~rnnkit.models.ClassifierEnsemble`; the training loss is the mean of the members' own losses). Over
frozen pretrained embeddings the members read one shared table, so the run folder (and an exported graph) holds
it once.

Metrics: accuracy, macro-F1, loss; plots: the confusion matrix. ``predict`` takes raw texts.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from tokenizers import Tokenizer

from ..config import StrictModel
from ..data import registry
from ..data.text import (
    PAD,
    PAD_ID,
    UNK,
    BucketBatchSampler,
    encode_texts,
    load_tokenizer,
    load_wordpiece,
    pad_collate,
    train_word_tokenizer,
    trim_wordpiece,
)
from ..data.text import save_tokenizer as _save_tokenizer
from ..data.textfile import reading
from ..errors import RnnkitError
from ..models import Classifier, ClassifierEnsemble
from ..models.base import eval_mode
from ..models.encoder import CellName
from ..training import Task
from .base import RecipeConfig, StateFile
from .classification import ClassificationTask
from .common import classification_task, encoder_args, task_spec

log = logging.getLogger("rnnkit")


class TextDataConfig(StrictModel):
    dataset: str | None = Field(None, description="a registry dataset; ignored when --data is given")
    text_column: str = "text"
    label_column: str = "label"
    min_frequency: int = Field(2, ge=1, description="word vocabulary: rarer train words become [UNK]")
    max_vocab: int | None = Field(None, ge=3)
    max_length: int | None = Field(None, ge=1, description="tokens kept per text")
    bucket_batches: int = Field(50, ge=1, description="batches per length-sorting chunk")
    replace_br: bool = Field(False, description="'<br />' tags (IMDB reviews) become spaces before tokenizing")


class TextModelConfig(StrictModel):
    cell: CellName = "lstm"
    embed_dim: int | None = Field(None, gt=0, description="embedding width; null: 128, or the pretrained vectors'")
    pretrained_embeddings: str | None = Field(
        None, description="an embeddings dataset (minilm-wordpiece): its WordPiece tokenizer and input vectors"
    )
    freeze_embeddings: bool = Field(False, description="pretrained vectors stay fixed")
    embedding_lr_scale: float = Field(1.0, gt=0, description="pretrained vectors train at lr times this")
    trim_embeddings: bool = Field(True, description="keep only the pretrained rows of pieces seen in train")
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = True
    dropout: float = Field(0.3, ge=0, lt=1, description="on embeddings (locked), between layers, on pooled features")
    pooling: Literal["last", "mean", "max", "attention"] = "max"
    head_hidden: list[int] = Field(default_factory=list)
    ensemble: int = Field(1, ge=1, le=64, description="classifiers trained side by side, probabilities averaged")


class TextClassificationConfig(RecipeConfig):
    task: Literal["text-classification"] = "text-classification"
    data: TextDataConfig = Field(default_factory=TextDataConfig)
    model: TextModelConfig = Field(default_factory=TextModelConfig)

    @model_validator(mode="after")
    def _check(self):
        m = self.model
        if m.pretrained_embeddings is None and (m.freeze_embeddings or m.embedding_lr_scale != 1.0):
            raise ValueError("model.freeze_embeddings and model.embedding_lr_scale need model.pretrained_embeddings")
        return self


DEFAULT_EMBED_DIM = 128
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def load_pretrained_embeddings(name: str, train_texts: list[str], trim: bool) -> tuple[Tokenizer, torch.Tensor]:
    """The WordPiece tokenizer and input-embedding matrix (V, E) of embeddings dataset ``name`` (fetched and
    cached on first use; read with ``safetensors``, never pickle). With ``trim``, both keep only the pieces
    of ``train_texts`` (+ ``[PAD]`` = 0, ``[UNK]`` = 1)."""
    from safetensors import SafetensorError, safe_open

    paths = registry.embedding_paths(name)
    tokenizer = load_wordpiece(paths["tokenizer"])
    where = str(paths["embeddings"])
    try:
        with safe_open(where, framework="pt") as f:
            keys = list(f.keys())
            key = next((k for k in ("weight", "embeddings.word_embeddings.weight") if k in keys), None)
            if key is None:
                raise RnnkitError(
                    f"no tensor 'weight' or 'embeddings.word_embeddings.weight' (has {keys[:5]})", where=where
                )
            weight = f.get_tensor(key).float()
    except (SafetensorError, OSError) as e:
        raise RnnkitError(f"cannot read safetensors: {e}", where=where) from None
    vocab = tokenizer.get_vocab()
    if weight.dim() != 2 or weight.shape[0] <= max(vocab.values()):
        raise RnnkitError(
            f"the matrix {tuple(weight.shape)} has no row for every one of {len(vocab)} pieces", where=where
        )
    if trim:
        seen = {i for ids in encode_texts(tokenizer, train_texts) for i in ids}
        tokenizer, rows = trim_wordpiece(tokenizer, seen)
        weight = weight[rows].clone()
    elif tokenizer.token_to_id(PAD) != PAD_ID:
        raise RnnkitError(
            f"{PAD} has id {tokenizer.token_to_id(PAD)}, not {PAD_ID}; set model.trim_embeddings", where=where
        )
    return tokenizer, weight


def _members(model: Classifier | ClassifierEnsemble) -> list[Classifier]:
    """An ensemble's members (also through the int8 stand-in, which forwards attributes), or the model itself."""
    members = getattr(model, "members", None)
    return list(members) if members is not None else [model]


def _embeddings(model: Classifier | ClassifierEnsemble) -> list[torch.nn.Embedding]:
    """The distinct token embedding tables of the members (one when they share it)."""
    return list({id(e): e for e in (m.encoder.embedding for m in _members(model))}.values())


def _pooling(model: Classifier | ClassifierEnsemble) -> str:
    return _members(model)[0].config.pooling


def read_text_file(path: Path, text_column: str, label_column: str) -> list[dict[str, str]]:
    """CSV (with a header) or JSONL -> ``[{"text", "label"}]``; errors name the file, line and field."""
    rows: list[dict[str, str]] = []
    with reading(path), open(path, encoding="utf-8", newline="") as f:
        if path.suffix.lower() in (".jsonl", ".json"):
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RnnkitError(f"invalid JSON ({e.msg})", where=f"{path}:{n}") from None
                except RecursionError:
                    raise RnnkitError("invalid JSON (nested too deeply)", where=f"{path}:{n}") from None
                if not isinstance(obj, dict):
                    raise RnnkitError("expected a JSON object per line", where=f"{path}:{n}")
                rows.append(_record(obj, text_column, label_column, f"{path}:{n}"))
        else:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for col in (text_column, label_column):
                if col not in header:
                    raise RnnkitError(f"no column {col!r} in the header (columns: {header})", where=f"{path}:1")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row:
                    raise RnnkitError(f"more fields than the header's {len(header)}", where=where)
                rows.append(_record(row, text_column, label_column, where))
    if not rows:
        raise RnnkitError("no examples found", where=str(path))
    return rows


ACLIMDB_PARTS = ("train", "test")
ACLIMDB_LABELS = ("neg", "pos")
_ACLIMDB_NAME = re.compile(r"(\d+)_(\d+)\.txt")


def _aclimdb_root(folder: Path) -> Path:
    if not (folder / "train").is_dir() and (folder / "aclImdb").is_dir():
        return folder / "aclImdb"
    return folder


def read_aclimdb(folder: Path) -> dict[str, list[dict[str, str]]]:
    """The IMDB ``aclImdb/`` folder (or a folder holding it) -> ``{"train", "validation", "test"}`` of
    ``{"text", "label"}`` with labels ``neg``/``pos``. ``train/unsup`` and other files are ignored.

    Official train/test; validation = the train reviews with ``h(text) % 10 == 1`` (docs/datasets.md).
    Files are read in ``(id, rating)`` order (``<id>_<rating>.txt``), so the splits do not depend on the
    file system.
    """
    root = _aclimdb_root(folder)
    splits: dict[str, list[dict[str, str]]] = {s: [] for s in registry.SPLITS}
    for part in ACLIMDB_PARTS:
        for label in ACLIMDB_LABELS:
            sub = root / part / label
            if not sub.is_dir():
                raise RnnkitError(
                    f"no folder {part}/{label}: expected the aclImdb layout train|test/pos|neg/<id>_<rating>.txt",
                    where=str(root),
                )
            files = [f for f in sub.iterdir() if f.suffix == ".txt" and not f.name.startswith(".") and f.is_file()]
            if not files:
                raise RnnkitError("no <id>_<rating>.txt reviews", where=str(sub))
            files.sort(
                key=lambda f: (0, *map(int, m.groups())) if (m := _ACLIMDB_NAME.fullmatch(f.name)) else (1, f.name)
            )
            for f in files:
                with reading(f):
                    text = f.read_text(encoding="utf-8")
                if not text.strip():
                    raise RnnkitError("empty review", where=str(f))
                record = {"text": text, "label": label}
                if part == "test":
                    splits["test"].append(record)
                else:
                    splits["validation" if registry.text_hash(text) % 10 == 1 else "train"].append(record)
    return splits


def _record(obj: dict, text_column: str, label_column: str, where: str) -> dict[str, str]:
    text, label = obj.get(text_column), obj.get(label_column)
    if text is None or label is None:
        missing = text_column if text is None else label_column
        raise RnnkitError(f"missing field {missing!r}", where=where)
    text, label = str(text), str(label).strip()
    if not text.strip():
        raise RnnkitError(f"empty {text_column!r}", where=where)
    if not label:
        raise RnnkitError(f"empty {label_column!r}", where=where)
    return {"text": text, "label": label}


class TextClassification(ClassificationTask):
    name = "text-classification"
    config_class = TextClassificationConfig
    input_help = "texts to classify"
    inputs = "text"
    view = "classify-text"
    saliency = True
    state_keys = ("labels",)
    state_files = {"tokenizer": StateFile("tokenizer", "tokenizer.json", load_tokenizer)}
    #: the pretrained embedding matrix while training (None otherwise; a run's weights hold it)
    pretrained: torch.Tensor | None = None

    # -- data ---------------------------------------------------------------------------------------
    def _load_splits(self, known_labels: list[str] | None = None):
        d = self.config.data
        if self.data_path is not None and self.data_path.is_dir():
            splits = read_aclimdb(self.data_path)
            info = {"source": str(self.data_path), "format": "aclImdb", "split": "official; validation from train"}
            labels = list(ACLIMDB_LABELS)
        elif self.data_path is not None:
            records = read_text_file(self.data_path, d.text_column, d.label_column)
            splits = registry.split_by_hash(records)
            info = {"source": str(self.data_path)}
            labels = sorted({r["label"] for r in splits["train"]})
        elif d.dataset is not None:
            spec = task_spec(d.dataset, self.name)
            splits = registry.load_splits(spec.name)
            info = {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "license": spec.license}
            labels = list(spec.labels) if spec.labels else sorted({r["label"] for r in splits["train"]})
        else:
            raise RnnkitError(
                "no data: give --data FILE (CSV or JSONL with text,label) or an aclImdb/ folder, or set data.dataset"
            )
        for s in registry.SPLITS:
            if not splits[s]:
                raise RnnkitError(f"the {s} split is empty (need more examples)", where=info["source"])
        labels = known_labels or labels
        unseen = {r["label"] for s in registry.SPLITS for r in splits[s]} - set(labels)
        if unseen:
            what = "the model was not trained on" if known_labels else "appear only outside the train split"
            raise RnnkitError(f"labels {sorted(unseen)} {what}", where=info["source"])
        if len(labels) < 2:
            raise RnnkitError(f"need at least 2 labels, found {labels}", where=info["source"])
        info["sizes"] = {s: len(splits[s]) for s in registry.SPLITS}
        return splits, info, labels

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        splits, info, labels = self._load_splits(known_labels=self.labels if reuse else None)
        d = self.config.data
        m = self.config.model
        if not reuse:
            self.labels = labels
            train_texts = self._clean([r["text"] for r in splits["train"]])
            if m.pretrained_embeddings is not None:
                self.tokenizer, self.pretrained = load_pretrained_embeddings(
                    m.pretrained_embeddings, train_texts, trim=m.trim_embeddings
                )
                info["embeddings"] = m.pretrained_embeddings
                log.info("embeddings %s: %d x %d", m.pretrained_embeddings, *self.pretrained.shape)
            else:
                self.tokenizer = train_word_tokenizer(train_texts, min_frequency=d.min_frequency, max_vocab=d.max_vocab)
            _save_tokenizer(self.tokenizer, run_dir / "tokenizer.json")
        index = {name: i for i, name in enumerate(self.labels)}
        self.splits = {
            s: {
                "texts": [r["text"] for r in rows],
                "ids": self._encode([r["text"] for r in rows]),
                "labels": [index[r["label"]] for r in rows],
            }
            for s, rows in splits.items()
        }
        log.info("data %s: %s, labels %s, vocabulary %d", info["source"], info["sizes"], self.labels,
                 self.tokenizer.get_vocab_size())  # fmt: skip
        return info

    def _clean(self, texts: list[str]) -> list[str]:
        return [_BR.sub(" ", t) for t in texts] if self.config.data.replace_br else texts

    def _encode(self, texts: list[str]) -> list[list[int]]:
        unk = self.tokenizer.token_to_id(UNK)
        return encode_texts(self.tokenizer, self._clean(texts), max_length=self.config.data.max_length, unk_id=unk)

    def recorded_state(self) -> dict[str, Any]:
        return {"max_length": self.config.data.max_length}

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> Classifier | ClassifierEnsemble:
        m = self.config.model
        pretrained = self.pretrained
        encoder = encoder_args(m, self.tokenizer.get_vocab_size(), bidirectional=m.bidirectional)
        encoder["embed_dim"] = m.embed_dim or DEFAULT_EMBED_DIM
        if pretrained is not None:
            if m.embed_dim is not None and m.embed_dim != pretrained.shape[1]:
                raise RnnkitError(
                    f"model.embed_dim={m.embed_dim}, but {m.pretrained_embeddings} vectors have "
                    f"{pretrained.shape[1]} dimensions (leave embed_dim unset)"
                )
            encoder["embed_dim"] = pretrained.shape[1]
        member = dict(
            encoder=encoder,
            num_classes=len(self.labels),
            pooling=m.pooling,
            head_hidden=m.head_hidden,
            dropout=m.dropout,
        )
        if m.ensemble > 1:
            frozen = pretrained is not None and m.freeze_embeddings
            model: Classifier | ClassifierEnsemble = ClassifierEnsemble(
                member=member, size=m.ensemble, share_embedding=frozen
            )
        else:
            model = Classifier(member)
        if pretrained is not None:
            for embedding in _embeddings(model):
                weight = embedding.weight
                with torch.no_grad():
                    weight.copy_(pretrained)
                    weight[PAD_ID].zero_()  # the padding row, as nn.Embedding keeps it
                if m.freeze_embeddings:
                    weight.requires_grad_(False)
                elif m.embedding_lr_scale != 1.0:
                    weight.lr_scale = m.embedding_lr_scale  # read by the trainer's optimizer
        return model

    def _batches(self, split: str, epoch: int):
        data = self.splits[split]
        train = split == "train"
        sampler = BucketBatchSampler(
            [len(x) for x in data["ids"]],
            self.config.train.batch_size,
            shuffle=train,
            seed=self.config.train.seed,
            bucket_batches=self.config.data.bucket_batches,
        )
        sampler.set_epoch(epoch)
        for idx in sampler:
            ids, lengths, labels = pad_collate([(data["ids"][i], data["labels"][i]) for i in idx])
            yield {"x": ids, "lengths": lengths, "y": labels, "index": torch.tensor(idx)}

    def trainer_task(self) -> Task:
        n = lambda split: len(self.splits[split]["ids"])  # noqa: E731
        return classification_task(self._batches, len(self.labels), n, self.config.train.batch_size)

    # -- outputs ------------------------------------------------------------------------------------
    def probability_batches(self, model: Classifier, ids: list[list[int]]):
        device = next(model.parameters()).device
        for idx in BucketBatchSampler([len(x) for x in ids], 256, shuffle=False):
            x, lengths, _ = pad_collate([(ids[i], 0) for i in idx])
            yield idx, model.predict(x.to(device), lengths.to(device)).float().cpu()

    def held_out_inputs(self) -> list[list[int]]:
        return self.splits["test"]["ids"]

    def held_out_targets(self) -> list[int]:
        return self.splits["test"]["labels"]

    def prediction_fields(self):
        return ({"text": t} for t in self.splits["test"]["texts"])

    def highlight(self, model) -> Literal["attention", "saliency"]:
        return "attention" if _pooling(model) == "attention" else "saliency"

    def predict(self, model, inputs: list[str], *, saliency: bool = False) -> list[dict[str, Any]]:
        """``text``, ``label``, ``probability``, ``probabilities`` per text; and, to show which words mattered:

        - with ``model.pooling: attention``, ``tokens``, ``offsets`` and ``attention``: the tokens the model
          read (as written in the text), their ``[start, end)`` character offsets and the pooling's weight on
          each (summing to 1);
        - with ``saliency``, ``tokens``, ``offsets`` and ``saliency``: gradient x input per token, the summed
          product of the embedding and the gradient of the predicted label's log-probability with respect
          to it (positive: the token speaks for the predicted label, negative: against it).
        """
        ids = self._encode(inputs)
        out = [{"text": text} | r for text, r in zip(inputs, self.predicted(model, ids, len(ids)), strict=True)]
        attention = _pooling(model) == "attention"
        if attention or saliency:
            for row, (tokens, offsets) in zip(out, self._token_spans(inputs), strict=True):
                row["tokens"], row["offsets"] = tokens, offsets
        if attention:
            for row, weights in zip(out, self._attention_weights(model, ids), strict=True):
                row["attention"] = weights
        if saliency:
            predicted = [self.labels.index(row["label"]) for row in out]
            for row, scores in zip(out, self._saliency(model, ids, predicted), strict=True):
                row["saliency"] = scores
        return out

    def _token_spans(self, texts: list[str]) -> list[tuple[list[str], list[list[int]]]]:
        """Per text, the tokens :meth:`_encode` gives (as written in the cleaned text) and their offsets."""
        cleaned = self._clean(texts)
        n = self.config.data.max_length
        out = []
        for text, enc in zip(cleaned, self.tokenizer.encode_batch(cleaned, add_special_tokens=False), strict=True):
            offsets = [list(o) for o in enc.offsets[:n]] if n is not None else [list(o) for o in enc.offsets]
            if not offsets:  # _encode reads a text without tokens as [UNK]
                out.append(([UNK], [[0, 0]]))
            else:
                out.append(([text[a:b] for a, b in offsets], offsets))
        return out

    @staticmethod
    def _batched(model: Classifier, ids: list[list[int]], fn) -> list[list[float]]:
        """``fn(x, lengths, idx) -> (B, T)`` over length-sorted batches; each row cut to its length, in order."""
        device = next(model.parameters()).device
        out: list[Any] = [None] * len(ids)
        for idx in BucketBatchSampler([len(x) for x in ids], 64, shuffle=False):
            x, lengths, _ = pad_collate([(ids[i], 0) for i in idx])
            rows = fn(x.to(device), lengths.to(device), idx).float().cpu().tolist()
            for i, row in zip(idx, rows, strict=True):
                out[i] = [round(v, 6) for v in row[: len(ids[i])]]
        return out

    def _attention_weights(self, model: Classifier, ids: list[list[int]]) -> list[list[float]]:
        def weights(x, lengths, idx):
            with torch.no_grad(), eval_mode(model):
                return model.forward_with_weights(x, lengths)[1]

        return self._batched(model, ids, weights)

    def _saliency(self, model: Classifier | ClassifierEnsemble, ids: list[list[int]], targets: list[int]):
        tables = _embeddings(model)

        def scores(x, lengths, idx):
            captured: list[torch.Tensor] = []  # one embedded input per member (a shared table: one per call)

            def hook(module, args, output):  # the embedded input becomes a leaf to differentiate against
                leaf = output.detach().requires_grad_(True)
                captured.append(leaf)
                return leaf

            handles = [table.register_forward_hook(hook) for table in tables]
            try:  # cuDNN's RNN backward runs in training mode only
                with torch.enable_grad(), eval_mode(model), torch.backends.cudnn.flags(enabled=False):
                    logp = model(x, lengths).float().log_softmax(-1)
                    y = torch.tensor([targets[i] for i in idx], device=logp.device)
                    grads = torch.autograd.grad(logp.gather(1, y[:, None]).sum(), captured)
            finally:
                for handle in handles:
                    handle.remove()
            # gradient x input of the whole model: the sum over the members' embedded inputs
            return sum((g * leaf.detach()).sum(-1) for g, leaf in zip(grads, captured, strict=True))

        return self._batched(model, ids, scores)
