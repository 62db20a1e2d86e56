"""Text classification (many-to-one): sentiment, spam, topic. The ``sentiment`` recipe and quickstart.

Data: a registry dataset (``data.dataset``, e.g. ``rotten-tomatoes``) or the user's ``--data FILE``:
a CSV with a header or a JSONL file, one example per row, with a text and a label column
(``data.text_column`` / ``data.label_column``). A user file is split like the registry datasets:
``h(text) % 10 == 0`` test, ``== 1`` validation, the rest train.

Model: :class:`~rnnkit.models.Classifier` over a word vocabulary (``tokenizers``, trained on the train
split only and saved as ``tokenizer.json`` in the run). Metrics: accuracy, macro-F1, loss; plots: the
confusion matrix. ``predict`` takes raw texts.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ..config import StrictModel
from ..data import registry
from ..data.text import BucketBatchSampler, encode_texts, load_tokenizer, pad_collate, train_word_tokenizer
from ..data.text import save_tokenizer as _save_tokenizer
from ..data.textfile import reading
from ..errors import RnnkitError
from ..fileio import atomic_write_jsonl
from ..models import Classifier
from ..training import Task
from .base import RecipeConfig, TaskKind
from .common import classification_metrics, confusion_matrix, confusion_stats, encoder_args, label_probabilities

log = logging.getLogger("rnnkit")


class TextDataConfig(StrictModel):
    dataset: str | None = Field(None, description="a registry dataset; ignored when --data is given")
    text_column: str = "text"
    label_column: str = "label"
    min_frequency: int = Field(2, ge=1, description="rarer train words become [UNK]")
    max_vocab: int | None = Field(None, ge=3)
    max_length: int | None = Field(None, ge=1, description="tokens kept per text")
    bucket_batches: int = Field(50, ge=1, description="batches per length-sorting chunk")


class TextModelConfig(StrictModel):
    cell: Literal["lstm", "gru", "rnn_tanh", "rnn_relu", "ln_lstm", "ln_gru", "min_gru", "min_lstm"] = "lstm"
    embed_dim: int = Field(128, gt=0)
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = True
    dropout: float = Field(0.3, ge=0, lt=1, description="on embeddings (locked), between layers, on pooled features")
    pooling: Literal["last", "mean", "max", "attention"] = "max"
    head_hidden: list[int] = Field(default_factory=list)


class TextClassificationConfig(RecipeConfig):
    task: Literal["text-classification"] = "text-classification"
    data: TextDataConfig = Field(default_factory=TextDataConfig)
    model: TextModelConfig = Field(default_factory=TextModelConfig)


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


class TextClassification(TaskKind):
    name = "text-classification"
    config_class = TextClassificationConfig
    input_help = "texts to classify"

    # -- data ---------------------------------------------------------------------------------------
    def _load_splits(self, known_labels: list[str] | None = None):
        d = self.config.data
        if self.data_path is not None:
            records = read_text_file(self.data_path, d.text_column, d.label_column)
            splits = registry.split_by_hash(records)
            info = {"source": str(self.data_path)}
            labels = sorted({r["label"] for r in splits["train"]})
        elif d.dataset is not None:
            spec = registry.get_spec(d.dataset)
            splits = registry.load_splits(spec.name)
            info = {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "license": spec.license}
            labels = list(spec.labels) if spec.labels else sorted({r["label"] for r in splits["train"]})
        else:
            raise RnnkitError("no data: give --data FILE (CSV or JSONL with text,label) or set data.dataset")
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
        if not reuse:
            self.labels = labels
            self.tokenizer = train_word_tokenizer(
                (r["text"] for r in splits["train"]), min_frequency=d.min_frequency, max_vocab=d.max_vocab
            )
            _save_tokenizer(self.tokenizer, run_dir / "tokenizer.json")
        index = {name: i for i, name in enumerate(self.labels)}
        self.splits = {
            s: {
                "texts": [r["text"] for r in rows],
                "ids": encode_texts(self.tokenizer, [r["text"] for r in rows], max_length=d.max_length),
                "labels": [index[r["label"]] for r in rows],
            }
            for s, rows in splits.items()
        }
        log.info("data %s: %s, labels %s, vocabulary %d", info["source"], info["sizes"], self.labels,
                 self.tokenizer.get_vocab_size())  # fmt: skip
        return info

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "tokenizer": "tokenizer.json", "max_length": self.config.data.max_length}

    @classmethod
    def from_run(cls, config, run_dir, state):
        task = cls(config)
        task.labels = state["labels"]
        task.tokenizer = load_tokenizer(run_dir / state["tokenizer"])
        return task

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> Classifier:
        m = self.config.model
        return Classifier(
            encoder=encoder_args(m, self.tokenizer.get_vocab_size(), bidirectional=m.bidirectional),
            num_classes=len(self.labels),
            pooling=m.pooling,
            head_hidden=m.head_hidden,
            dropout=m.dropout,
        )

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
        K = len(self.labels)

        def train_step(model, b, carry):
            return model.loss(b["x"], b["lengths"], b["y"]), None, len(b["y"])

        def eval_step(model, b):
            return confusion_stats(model(b["x"], b["lengths"]), b["y"], K)

        bs = self.config.train.batch_size
        return Task(
            batches=self._batches,
            train_step=train_step,
            eval_step=eval_step,
            finalize=lambda s: classification_metrics(s, K),
            num_batches=lambda split: -(-len(self.splits[split]["ids"]) // bs),
        )

    # -- outputs ------------------------------------------------------------------------------------
    def _probabilities(self, model: Classifier, ids: list[list[int]]) -> torch.Tensor:
        device = next(model.parameters()).device
        out = torch.empty(len(ids), len(self.labels))
        sampler = BucketBatchSampler([len(x) for x in ids], 256, shuffle=False)
        for idx in sampler:
            x, lengths, _ = pad_collate([(ids[i], 0) for i in idx])
            out[torch.tensor(idx)] = model.predict(x.to(device), lengths.to(device)).float().cpu()
        return out

    def write_predictions(self, model, run_dir) -> None:
        data = self.splits["test"]
        probs = self._probabilities(model, data["ids"])
        conf, pred = probs.max(-1)
        rows = [
            {"text": t, "label": self.labels[y], "predicted": self.labels[p], "probability": round(c, 6)}
            for t, y, p, c in zip(data["texts"], data["labels"], pred.tolist(), conf.tolist(), strict=True)
        ]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def plots(self, model, run_dir, metrics) -> list[Path]:
        from ..plots import confusion_matrix_plot

        pred = self._probabilities(model, self.splits["test"]["ids"]).argmax(-1).tolist()
        cm = confusion_matrix(zip(self.splits["test"]["labels"], pred, strict=True), len(self.labels))
        return [confusion_matrix_plot(cm, self.labels, run_dir / "plots" / "confusion_matrix.png")]

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        ids = encode_texts(self.tokenizer, inputs, max_length=self.state_max_length())
        probs = self._probabilities(model, ids).tolist()
        return [{"text": text} | label_probabilities(p, self.labels) for text, p in zip(inputs, probs, strict=True)]

    def state_max_length(self) -> int | None:
        return self.config.data.max_length
