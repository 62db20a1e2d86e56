"""Small pieces several task kinds share: the encoder's arguments, masked token losses, classification
counts, and the specials, reference batches and search of the tasks that generate (seq2seq, captioning)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.vocab import BOS, EOS, PAD, UNK, Vocabulary
from ..decoding import SearchResult, beam_search, greedy
from ..layers import lengths_to_mask

# the additive confusion sums and their metrics are the models' own (fitting.py), shared by the task kinds
from ..models.fitting import class_metrics as classification_metrics
from ..models.fitting import class_stats as confusion_stats
from .base import StateFile

#: image file suffixes the image tasks read (the page's file picker offers them)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")

#: the vocabulary specials of the tasks that generate, with ids 0, 1, 2, 3
SPECIALS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIALS))


#: the state of tasks whose only preprocessing state is ``self.vocab``, saved as ``vocab.json`` in the run
VOCAB_STATE = {"vocab": StateFile("vocab", "vocab.json", Vocabulary.load)}


def task_datasets(task: str) -> list[str]:
    """The registry datasets (with splits) that declare they feed task kind ``task`` (``DatasetSpec.tasks``)."""
    from ..data import registry

    return [name for name, spec in registry.REGISTRY.items() if task in spec.tasks and spec.kind == "splits"]


def check_task_dataset(name: str | None, task: str) -> str | None:
    """``name`` (a config's ``data.dataset``) when the registry dataset declares it feeds ``task``, else a
    ``ValueError`` (a config validator's error) naming those that do."""
    known = task_datasets(task)
    if name is not None and name not in known:
        raise ValueError(f"{task} datasets are {', '.join(known)}, not {name!r}")
    return name


def task_spec(name: str, task: str):
    """The registry entry of dataset ``name`` when it declares it feeds ``task``, else a one-line error (before
    any data is read)."""
    from ..data import registry
    from ..errors import RnnkitError

    spec = registry.get_spec(name)
    if task not in spec.tasks:
        known = ", ".join(task_datasets(task))
        raise RnnkitError(f"data.dataset={name!r} is a {spec.task} dataset, not one for {task} (known: {known})")
    return spec


def encoder_args(m: Any, vocab_size: int, **extra: Any) -> dict[str, Any]:
    """The token encoder's arguments from a task's ``model`` section (``embed_dim``, ``cell``, ``hidden_size``,
    ``num_layers``, ``dropout``); dropout acts between layers only when there are several. ``extra``:
    what only some tasks set (``bidirectional``, ``padding_idx``)."""
    return dict(
        vocab_size=vocab_size,
        embed_dim=m.embed_dim,
        cell=m.cell,
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        dropout=m.dropout if m.num_layers > 1 else 0.0,
        embed_dropout=m.dropout,
        **extra,
    )


def masked_cross_entropy(
    logits: Tensor, target: Tensor, lengths: Tensor, reduction: str = "mean", label_smoothing: float = 0.0
) -> tuple[Tensor, int]:
    """Cross-entropy (in float32) of logits (B, T, V) against target (B, T) over each row's first ``lengths``
    steps, and the number of those steps. ``label_smoothing`` mixes the one-hot target with the uniform
    distribution (Szegedy et al. 2016), as :func:`torch.nn.functional.cross_entropy` does."""
    mask = lengths_to_mask(lengths, target.shape[1])  # (B, T)
    loss = F.cross_entropy(logits[mask].float(), target[mask], reduction=reduction, label_smoothing=label_smoothing)
    return loss, int(mask.sum())


# -- classification -------------------------------------------------------------------------------------
def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> Tensor:
    """Example order for one pass: a permutation fixed by ``(seed, epoch)`` when shuffling (so a resumed run
    sees the same batches), else ``0..n-1``."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool):
    """Index tensors of the batches of one pass over ``n`` examples, in :func:`epoch_order`."""
    order = epoch_order(n, seed, epoch, shuffle)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def classification_task(batches, num_classes: int, num_examples, batch_size: int):
    """The trainer's view of a classifier task: batches hold ``x``, ``y`` and, for sequences, ``lengths``;
    the loss comes from the model, evaluation sums confusion counts (accuracy / macro-F1 / loss)."""
    from ..training import Task

    K = num_classes

    def inputs(b):
        return (b["x"], b["lengths"]) if "lengths" in b else (b["x"],)

    def train_step(model, b, carry):
        return model.loss(*inputs(b), b["y"]), None, len(b["y"])

    def eval_step(model, b):
        return confusion_stats(model(*inputs(b)), b["y"], K)

    return Task(
        batches=batches,
        train_step=train_step,
        eval_step=eval_step,
        finalize=lambda s: classification_metrics(s, K),
        num_batches=lambda split: -(-num_examples(split) // batch_size),
    )


def confusion_matrix(pairs: Iterable[tuple[int, int]], K: int) -> list[list[int]]:
    """Counts ``cm[true][predicted]`` of ``(true, predicted)`` pairs (for the confusion-matrix plot)."""
    cm = [[0] * K for _ in range(K)]
    for y, p in pairs:
        cm[y][p] += 1
    return cm


def label_probabilities(p: list[float], labels: list[str]) -> dict[str, Any]:
    """One example's class probabilities -> ``{"label", "probability", "probabilities"}`` (rounded)."""
    best = max(range(len(p)), key=p.__getitem__)
    return {
        "label": labels[best],
        "probability": round(p[best], 6),
        "probabilities": {lab: round(v, 6) for lab, v in zip(labels, p, strict=True)},
    }


# -- generation -----------------------------------------------------------------------------------------
def search(step, state: Any, beam_size: int, max_len: int, length_penalty: float) -> SearchResult:
    """Greedy (``beam_size == 1``) or beam search from ``<bos>`` until ``<eos>`` or ``max_len`` tokens."""
    if beam_size == 1:
        return greedy(step, state, BOS_ID, EOS_ID, max_len)
    return beam_search(step, state, BOS_ID, EOS_ID, beam_size, max_len, length_penalty=length_penalty)


def pad_references(refs: list[list[list[int]]]) -> tuple[Tensor, Tensor]:
    """Each example's references (id lists) -> ids (B, R, T) padded with ``<pad>`` and lengths (B, R), where R
    is the most references an example has and a length 0 means "no such reference"."""
    R, T = max(len(rs) for rs in refs), max(len(ids) for rs in refs for ids in rs)
    out = torch.full((len(refs), R, T), PAD_ID, dtype=torch.long)
    lengths = torch.zeros(len(refs), R, dtype=torch.long)
    for b, rs in enumerate(refs):
        for r, ids in enumerate(rs):
            out[b, r, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            lengths[b, r] = len(ids)
    return out, lengths


def unpad_references(refs: Tensor, lengths: Tensor, drop_last: int = 0) -> list[list[list[int]]]:
    """The inverse of :func:`pad_references`, each reference cut ``drop_last`` ids short (1: without its ``<eos>``)."""
    return [
        [ids[: n - drop_last] for ids, n in zip(rs, ns, strict=True) if n > 0]
        for rs, ns in zip(refs.tolist(), lengths.tolist(), strict=True)
    ]
