"""``fit`` / ``evaluate`` / ``predict`` on in-memory data for every model, on the one :class:`~rnnkit.training.Trainer`.

Each model kind has an *adapter* here that turns the data people have into padded tensors and says how a batch
is scored; the training loop itself is the trainer's (seeding, optimizer and schedule, gradient clipping, the
non-finite policy, early stopping, callbacks, checkpoints with ``run_dir``, progress).

Inputs (``x``), in the forms people have:

* sequences: a list of variable-length NumPy arrays / tensors / lists, each ``(T_i,)`` token ids or
  ``(T_i, F)`` features (``(T_i,)`` is accepted when ``F`` is 1); or one padded array ``(N, T)`` / ``(N, T, F)``
  with ``lengths`` ``(N,)`` (no ``lengths``: every row is full length);
* vectors / images (``MLP``): ``(N, input_size)`` or ``(N, *input_shape)``;
* conditions (``ConditionalGenerator``): class ids ``(N,)``, vectors ``(N, cond_size)`` or images ``(N, C, H, W)``;
* windows (``Forecaster``): ``(N, W)`` or ``(N, W, 1 + C)``; :func:`sliding_windows` cuts them from a series.

Targets (``y``): class labels as ints or as any other hashable values such as strings (then a label map,
``model.labels``, is kept on the model, saved with it and used by ``predict_labels``); per-step labels (Tagger);
per-step values (StepRegressor); token-id sequences (Seq2Seq, ConditionalGenerator: ids 0-3 are reserved for
``<pad>``, ``<unk>``, ``<bos>``, ``<eos>``, so a vocabulary's own tokens start at :data:`FIRST_TOKEN_ID`);
``(N, horizon)`` future values (Forecaster). A language model needs no ``y``: it learns each sequence's next tokens.

Wrong shapes are one-line ``ValueError``\\ s that name the argument and the shape expected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor

from ..config import format_validation_error
from ..layers import lengths_to_mask
from .base import eval_mode

if TYPE_CHECKING:
    from .base import Model

#: the reserved ids of the token sequences ``fit`` builds targets from (the same as the tasks' vocabularies)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
#: the first id free for a vocabulary's own tokens in Seq2Seq / ConditionalGenerator targets
FIRST_TOKEN_ID = 4

FIT_DEFAULTS = {"epochs": 10, "batch_size": 32}


# -- converting what people have ------------------------------------------------------------------------
def _is_array(v: Any) -> bool:
    return isinstance(v, (Tensor, np.ndarray))


def _as_tensor(v: Any, name: str, what: str) -> Tensor:
    """A tensor from a tensor, an array or (nested) lists of numbers; anything else is a one-line ValueError."""
    if isinstance(v, Tensor):
        return v.detach().cpu()
    try:
        arr = np.asarray(v)
    except (ValueError, TypeError):
        raise ValueError(f"{name}: expected {what}, got ragged or mixed data") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected {what} of numbers, got {arr.dtype} data")
    return torch.from_numpy(arr.copy())


def _count(v: Any, name: str) -> int:
    try:
        return len(v)
    except TypeError:
        raise ValueError(f"{name}: expected a list or an array of examples, got {type(v).__name__}") from None


def sequences(
    x: Any, lengths: Any = None, *, name: str = "x", tokens: bool, features: int | None = None
) -> tuple[Tensor, Tensor]:
    """Sequences in any accepted form -> padded ``(N, T)`` long ids or ``(N, T, F)`` float32, and lengths ``(N,)``.

    ``tokens``: integer ids; else ``features`` values per step.
    """
    want = "token ids (T_i,)" if tokens else f"features (T_i, {features})"
    padded = "(N, T)" if tokens else f"(N, T, {features})"
    if _is_array(x) and not (isinstance(x, np.ndarray) and x.dtype == object):
        t = _as_tensor(x, name, f"a padded array {padded}")
        if not tokens and features == 1 and t.dim() == 2:
            t = t.unsqueeze(-1)
        if t.dim() != (2 if tokens else 3) or (not tokens and t.shape[-1] != features):
            raise ValueError(
                f"{name}: expected a list of {want} or a padded array {padded} with lengths, got shape {tuple(t.shape)}"
            )
        N, T = t.shape[:2]
        if lengths is None:
            n = torch.full((N,), T, dtype=torch.long)
        else:
            n = _as_tensor(lengths, "lengths", f"({N},) ints").long().flatten()
            if n.shape != (N,) or (N and (int(n.min()) < 1 or int(n.max()) > T)):
                raise ValueError(
                    f"lengths: expected ({N},) ints in [1, {T}] for {name} {tuple(t.shape)}, got {n.tolist()[:8]}"
                )
        if T == 0:
            raise ValueError(f"{name}: the sequences are empty (T = 0)")
        t = _typed(t, tokens, name)
        pad = ~lengths_to_mask(n, T)  # whatever stands past each length (NaN, -1) becomes 0
        return t.masked_fill(pad if tokens else pad.unsqueeze(-1), 0), n
    if lengths is not None:
        raise ValueError(f"lengths: give lengths only with a padded array {padded}; a list's items carry their own")
    ragged = isinstance(x, np.ndarray) and x.dtype == object and x.ndim == 1  # an array of arrays
    items = list(x) if isinstance(x, (list, tuple)) or ragged else None
    if items is None:
        raise ValueError(f"{name}: expected a list of {want} or a padded array {padded}, got {type(x).__name__}")
    if not items:
        raise ValueError(f"{name}: no examples")
    seqs = []
    for i, s in enumerate(items):
        t = _as_tensor(s, f"{name}[{i}]", want)
        if not tokens and features == 1 and t.dim() == 1:
            t = t.unsqueeze(-1)
        if t.dim() != (1 if tokens else 2) or (not tokens and t.shape[-1] != features):
            raise ValueError(f"{name}[{i}]: expected {want}, got shape {tuple(t.shape)}")
        if len(t) == 0:
            raise ValueError(f"{name}[{i}]: an empty sequence (every sequence needs at least one step)")
        seqs.append(_typed(t, tokens, f"{name}[{i}]"))
    n = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.zeros((len(seqs), int(n.max()), *seqs[0].shape[1:]), dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, n


def _typed(t: Tensor, tokens: bool, name: str) -> Tensor:
    if not tokens:
        return t.float()
    if t.is_floating_point() or t.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer token ids, got {t.dtype}")
    return t.long()


def _check_ids(ids: Tensor, lengths: Tensor, vocab: int, name: str, low: int = 0) -> None:
    real = ids[lengths_to_mask(lengths, ids.shape[1])]
    if real.numel() and (int(real.min()) < low or int(real.max()) >= vocab):
        raise ValueError(
            f"{name}: token ids must lie in [{low}, {vocab}), got min {int(real.min())}, max {int(real.max())}"
        )


def _scalar_list(y: Any, name: str) -> list:
    if isinstance(y, Tensor):
        y = y.detach().cpu().numpy()
    if isinstance(y, np.ndarray):
        if y.ndim != 1:
            raise ValueError(f"{name}: expected one label per example (N,), got shape {y.shape}")
        return y.tolist()
    try:
        return list(y)
    except TypeError:
        raise ValueError(f"{name}: expected a list or an array of labels, got {type(y).__name__}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


class LabelMap:
    """Class labels <-> ids. Ints in ``[0, K)`` are their own ids; other labels (strings, ...) get ids in sorted
    order on the first ``fit``, kept on the model as ``model.labels``."""

    def __init__(self, model: Model, num_classes: int) -> None:
        self.model, self.K = model, num_classes

    def encode(self, labels: list, name: str, fit: bool) -> Tensor:
        known = getattr(self.model, "labels", None)
        if known is None and all(_is_int(v) for v in labels):
            bad = [v for v in labels if not 0 <= v < self.K]
            if bad:
                raise ValueError(f"{name}: integer labels must lie in [0, {self.K}), got {bad[0]}")
            return torch.tensor([int(v) for v in labels], dtype=torch.long)
        try:
            distinct = set(labels)
        except TypeError:
            raise ValueError(f"{name}: labels must be ints, strings or other hashable values") from None
        if known is None:
            if not fit:
                raise ValueError(
                    f"{name}: the model has no label list (fit it on such labels first), got {labels[0]!r}"
                )
            try:
                known = sorted(distinct)
            except TypeError:
                known = sorted(distinct, key=str)
            if len(known) > self.K:
                raise ValueError(f"{name}: {len(known)} distinct labels, but the model has {self.K} classes")
            self.model.labels = known
        index = {v: i for i, v in enumerate(known)}
        unknown = [v for v in labels if v not in index]
        if unknown:
            raise ValueError(f"{name}: label {unknown[0]!r} is not one the model knows ({known[:10]})")
        return torch.tensor([index[v] for v in labels], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> list:
        known = getattr(self.model, "labels", None)
        return [int(i) if known is None or i >= len(known) else known[i] for i in ids]


# -- statistics -----------------------------------------------------------------------------------------
def class_stats(logits: Tensor, y: Tensor, K: int) -> dict[str, float]:
    """Additive sums of a batch of ``K``-class logits (B, K): confusion counts, loss sum and count."""
    cm = torch.bincount(y * K + logits.argmax(-1), minlength=K * K)
    stats = {f"cm_{i}_{j}": float(cm[i * K + j]) for i in range(K) for j in range(K)}
    stats["loss_sum"] = float(F.cross_entropy(logits.float(), y, reduction="sum"))
    stats["n"] = float(len(y))
    return stats


def class_metrics(s: dict[str, float], K: int) -> dict[str, float]:
    """Loss, accuracy and macro-F1 from :func:`class_stats` sums (the task kinds' metrics)."""
    n = max(s["n"], 1.0)
    cm = [[s.get(f"cm_{i}_{j}", 0.0) for j in range(K)] for i in range(K)]
    f1s = []
    for k in range(K):
        tp = cm[k][k]
        fp, fn = sum(cm[i][k] for i in range(K)) - tp, sum(cm[k]) - tp
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"loss": s["loss_sum"] / n, "accuracy": sum(cm[i][i] for i in range(K)) / n, "f1": sum(f1s) / K}


def regression_stats(pred: Tensor, target: Tensor) -> dict[str, float]:
    err = pred.float() - target.float()
    return {"se": float((err**2).sum()), "ae": float(err.abs().sum()), "count": float(err.numel())}


def regression_metrics(s: dict[str, float]) -> dict[str, float]:
    n = max(s["count"], 1.0)
    return {"loss": s["se"] / n, "mse": s["se"] / n, "mae": s["ae"] / n}


def token_metrics(s: dict[str, float]) -> dict[str, float]:
    n = max(s["tokens"], 1.0)
    loss = s["loss_sum"] / n
    return {"loss": loss, "accuracy": s["correct"] / n, "perplexity": math.exp(min(loss, 50.0))}


# -- adapters -------------------------------------------------------------------------------------------
class Adapter:
    """How one model kind reads in-memory data and scores a batch. ``data`` is a dict of tensors with the
    examples on dim 0; ``trim`` maps a padded key to the lengths key that bounds its time dim (dim 1)."""

    trim: dict[str, str] = {}

    def __init__(self, model: Model) -> None:
        self.model = model

    def inputs(self, x: Any, lengths: Any, name: str = "x") -> dict[str, Tensor]:
        raise NotImplementedError

    def targets(self, y: Any, data: dict[str, Tensor], fit: bool, name: str = "y") -> dict[str, Tensor]:
        raise NotImplementedError

    def loss(self, b: dict[str, Tensor]) -> tuple[Tensor, int]:
        raise NotImplementedError

    def stats(self, b: dict[str, Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def metrics(self, s: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    def predict(self, b: dict[str, Tensor]) -> list:
        """Per-example outputs of a batch (a list, in order)."""
        raise NotImplementedError

    def collect(self, outputs: list) -> Any:
        """All examples' outputs -> what ``predict`` returns (default: the list)."""
        return outputs

    def needs_targets(self) -> bool:
        return True


class _Sequences(Adapter):
    """Models that read a sequence through ``model.encoder`` (token ids or features)."""

    trim = {"x": "lengths"}

    def inputs(self, x, lengths, name="x"):
        enc = self.model_encoder()
        xs, n = sequences(x, lengths, name=name, tokens=enc.vocab_size is not None, features=enc.input_size)
        if enc.vocab_size is not None:
            _check_ids(xs, n, enc.vocab_size, name)
        return {"x": xs, "lengths": n}

    def model_encoder(self):
        cfg = self.model.config
        return (cfg.member if hasattr(cfg, "member") else cfg).encoder


class ClassifierAdapter(_Sequences):
    """Classifier (and its ensemble): one label per sequence, or ``output_size`` values (regression)."""

    def _cfg(self):
        cfg = self.model.config
        return cfg.member if hasattr(cfg, "member") else cfg

    @property
    def K(self) -> int | None:
        return self._cfg().num_classes

    def targets(self, y, data, fit, name="y"):
        N = len(data["lengths"])
        if self.K is not None:
            labels = _scalar_list(y, name)
            if len(labels) != N:
                raise ValueError(f"{name}: {len(labels)} labels for {N} examples")
            return {"y": LabelMap(self.model, self.K).encode(labels, name, fit)}
        return {"y": _values(y, N, self._cfg().output_size, name)}

    def loss(self, b):
        return self.model.loss(b["x"], b["lengths"], b["y"]), len(b["y"])

    def stats(self, b):
        out = self.model(b["x"], b["lengths"])
        return class_stats(out, b["y"], self.K) if self.K else regression_stats(out, b["y"].view_as(out))

    def metrics(self, s):
        return class_metrics(s, self.K) if self.K else regression_metrics(s)

    def predict(self, b):
        out = self.model(b["x"], b["lengths"]).float()
        return list((out.softmax(-1) if self.K else out).cpu())

    def collect(self, outputs):
        return torch.stack(outputs)


def _values(y: Any, N: int, O: int, name: str) -> Tensor:
    t = _as_tensor(y, name, f"values ({N}, {O})").float()
    if t.dim() == 1 and O == 1:
        t = t.unsqueeze(1)
    if tuple(t.shape) != (N, O):
        raise ValueError(
            f"{name}: expected values ({N}, {O})" + (f" or ({N},)" if O == 1 else "") + f", got {tuple(t.shape)}"
        )
    return t


class MLPAdapter(ClassifierAdapter):
    """MLP: fixed-size inputs ``(N, input_size)`` or ``(N, *input_shape)``."""

    trim = {}

    def _cfg(self):
        return self.model.config

    def inputs(self, x, lengths, name="x"):
        if lengths is not None:
            raise ValueError("lengths: an MLP reads fixed-size inputs, not sequences")
        cfg = self.model.config
        shape = tuple(cfg.input_shape) if cfg.input_shape is not None else (cfg.input_size,)
        t = _as_tensor(x, name, f"inputs (N, {', '.join(map(str, shape))})").float()
        if tuple(t.shape[1:]) != shape:
            raise ValueError(f"{name}: expected inputs (N, {', '.join(map(str, shape))}), got shape {tuple(t.shape)}")
        return {"x": t, "lengths": torch.zeros(len(t), dtype=torch.long)}  # lengths only counts the examples

    def loss(self, b):
        return self.model.loss(b["x"], b["y"]), len(b["y"])

    def stats(self, b):
        out = self.model(b["x"])
        return class_stats(out, b["y"], self.K) if self.K else regression_stats(out, b["y"].view_as(out))

    def predict(self, b):
        out = self.model(b["x"]).float()
        return list((out.softmax(-1) if self.K else out).cpu())


def _step_targets(y: Any, lengths: Tensor, name: str, per_step: str) -> list[Any]:
    items = list(y) if not _is_array(y) else None
    N = len(lengths)
    if items is None:  # a padded array: cut each row at its length
        t = _as_tensor(y, name, per_step)
        if t.shape[0] != N or t.dim() < 2:
            raise ValueError(f"{name}: expected {N} rows of {per_step}, got shape {tuple(t.shape)}")
        items = [row[: int(n)] for row, n in zip(t, lengths, strict=True)]
    if len(items) != N:
        raise ValueError(f"{name}: {len(items)} target sequences for {N} input sequences")
    for i, (item, n) in enumerate(zip(items, lengths.tolist(), strict=True)):
        if _count(item, f"{name}[{i}]") != n:
            raise ValueError(f"{name}[{i}]: {len(item)} steps, but x[{i}] has {n}")
    return items


class TaggerAdapter(_Sequences):
    """Tagger: one label per step (ints in ``[0, num_tags)`` or any hashable labels, mapped like classes)."""

    def inputs(self, x, lengths, name="x"):
        if self.model.config.chars is not None:
            raise ValueError(
                "Tagger.fit: a model with character features (config.chars) is trained by the tagging task"
            )
        return super().inputs(x, lengths, name)

    def targets(self, y, data, fit, name="y"):
        items = _step_targets(y, data["lengths"], name, "tags")
        flat = [v.item() if isinstance(v, (Tensor, np.generic)) else v for item in items for v in list(item)]
        ids = LabelMap(self.model, self.model.config.num_tags).encode(flat, name, fit)
        tags = torch.zeros(data["x"].shape[:2], dtype=torch.long)
        tags[lengths_to_mask(data["lengths"], tags.shape[1])] = ids
        return {"y": tags}

    trim = {"x": "lengths", "y": "lengths"}

    def loss(self, b):
        return self.model.loss(b["x"], b["lengths"], b["y"]), int(b["lengths"].sum())

    def stats(self, b):
        mask = lengths_to_mask(b["lengths"], b["x"].shape[1])
        pred = self.model.predict(b["x"], b["lengths"])
        loss = self.model.loss(b["x"], b["lengths"], b["y"]) * int(mask.sum())
        return {"loss_sum": float(loss), "correct": float((pred == b["y"])[mask].sum()), "tokens": float(mask.sum())}

    def metrics(self, s):
        n = max(s["tokens"], 1.0)
        return {"loss": s["loss_sum"] / n, "accuracy": s["correct"] / n}

    def predict(self, b):
        pred = self.model.predict(b["x"], b["lengths"])
        names = LabelMap(self.model, self.model.config.num_tags)
        return [names.decode(row[: int(n)].tolist()) for row, n in zip(pred, b["lengths"], strict=True)]


class StepRegressorAdapter(_Sequences):
    """StepRegressor: ``output_size`` values per step."""

    trim = {"x": "lengths", "y": "lengths"}

    def targets(self, y, data, fit, name="y"):
        O = self.model.config.output_size
        items = _step_targets(y, data["lengths"], name, f"values (T_i, {O})")
        out = torch.zeros(*data["x"].shape[:2], O)
        for i, item in enumerate(items):
            t = _as_tensor(item, f"{name}[{i}]", f"values (T_i, {O})").float()
            if t.dim() == 1 and O == 1:
                t = t.unsqueeze(-1)
            if t.dim() != 2 or t.shape[1] != O:
                raise ValueError(f"{name}[{i}]: expected values ({len(t)}, {O}), got shape {tuple(t.shape)}")
            out[i, : len(t)] = t
        return {"y": out}

    def loss(self, b):
        return self.model.loss(b["x"], b["lengths"], b["y"]), int(b["lengths"].sum())

    def stats(self, b):
        mask = lengths_to_mask(b["lengths"], b["x"].shape[1])
        return regression_stats(self.model(b["x"], b["lengths"])[mask], b["y"][mask])

    def metrics(self, s):
        return regression_metrics(s)

    def predict(self, b):
        out = self.model(b["x"], b["lengths"]).float().cpu()
        return [row[: int(n)] for row, n in zip(out, b["lengths"], strict=True)]


class LanguageModelAdapter(Adapter):
    """LanguageModel: token-id sequences; each learns its next tokens (``ids[1:]`` from ``ids[:-1]``)."""

    trim = {"x": "lengths", "y": "lengths", "ids": "n"}  # ids / n: the whole sequences predict reads

    def needs_targets(self):
        return False

    def inputs(self, x, lengths, name="x"):
        V = self.model.config.encoder.vocab_size
        ids, n = sequences(x, lengths, name=name, tokens=True)
        _check_ids(ids, n, V, name)
        return {"ids": ids, "n": n}

    def targets(self, y, data, fit, name="y"):
        if y is not None:
            raise ValueError("y: a language model learns each sequence's next tokens; give x only")
        ids, n = data.pop("ids"), data.pop("n")
        if int(n.min()) < 2:
            i = int((n < 2).nonzero()[0])
            raise ValueError(f"x[{i}]: a language model needs sequences of at least 2 tokens, got {int(n[i])}")
        return {"x": ids[:, :-1], "y": ids[:, 1:].clone(), "lengths": n - 1}

    def loss(self, b):
        return self.model.loss(b["x"], b["lengths"], b["y"]), int(b["lengths"].sum())

    def stats(self, b):
        logits, _ = self.model(b["x"], b["lengths"])
        mask = lengths_to_mask(b["lengths"], b["x"].shape[1])
        real, gold = logits[mask].float(), b["y"][mask]
        return {
            "loss_sum": float(F.cross_entropy(real, gold, reduction="sum")),
            "correct": float((real.argmax(-1) == gold).sum()),
            "tokens": float(mask.sum()),
        }

    def metrics(self, s):
        return token_metrics(s)

    def predict(self, b):
        """The next-token distribution after each whole sequence (V,)."""
        logits, _ = self.model(b["ids"], b["n"])
        last = logits.gather(1, (b["n"] - 1).view(-1, 1, 1).expand(-1, 1, logits.shape[-1]))[:, 0]
        return list(last.float().softmax(-1).cpu())

    def collect(self, outputs):
        return torch.stack(outputs)


def _target_sequences(y: Any, N: int, vocab: int, name: str) -> dict[str, Tensor]:
    """Token-id targets -> ``tgt_in`` (``<bos>`` + ids), ``tgt_out`` (ids + ``<eos>``) and ``tgt_lengths``."""
    if _is_array(y) or not isinstance(y, (list, tuple)):
        raise ValueError(f"{name}: expected a list of {N} token-id sequences (T_i,)")
    if len(y) != N:
        raise ValueError(f"{name}: {len(y)} target sequences for {N} inputs")
    ids, n = sequences(list(y), name=name, tokens=True)
    _check_ids(ids, n, vocab, name, low=FIRST_TOKEN_ID)
    B, T = ids.shape
    tgt_in = torch.full((B, T + 1), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((B, T + 1), PAD_ID, dtype=torch.long)
    tgt_in[:, 0] = BOS_ID
    mask = lengths_to_mask(n, T)
    tgt_in[:, 1:][mask] = ids[mask]
    tgt_out[:, :T][mask] = ids[mask]
    tgt_out[torch.arange(B), n] = EOS_ID
    return {"tgt_in": tgt_in, "tgt_out": tgt_out, "tgt_lengths": n + 1}


def _token_stats(logits: Tensor, b: dict[str, Tensor]) -> dict[str, float]:
    mask = lengths_to_mask(b["tgt_lengths"], b["tgt_out"].shape[1])
    real, gold = logits[mask].float(), b["tgt_out"][mask]
    return {
        "loss_sum": float(F.cross_entropy(real, gold, reduction="sum")),
        "correct": float((real.argmax(-1) == gold).sum()),
        "tokens": float(mask.sum()),
    }


class Seq2SeqAdapter(_Sequences):
    """Seq2Seq: source sequences (token ids or feature frames) -> target token-id sequences."""

    trim = {"x": "lengths", "tgt_in": "tgt_lengths", "tgt_out": "tgt_lengths"}

    def targets(self, y, data, fit, name="y"):
        return _target_sequences(y, len(data["lengths"]), self.model.config.tgt_vocab_size, name)

    def loss(self, b):
        return self.model.loss(b["x"], b["lengths"], b["tgt_in"], b["tgt_out"], b["tgt_lengths"]), int(
            b["tgt_lengths"].sum()
        )

    def stats(self, b):
        return _token_stats(self.model(b["x"], b["lengths"], b["tgt_in"])[0], b)

    def metrics(self, s):
        return token_metrics(s)

    def predict(self, b):
        from ..decoding import greedy

        state = self.model.encode(b["x"], b["lengths"])
        # at most twice the longest source, plus 10 tokens
        return greedy(self.model.step, state, BOS_ID, EOS_ID, 2 * b["x"].shape[1] + 10).sequences


class GeneratorAdapter(Adapter):
    """ConditionalGenerator: conditions (class ids, vectors or images) -> target token-id sequences."""

    trim = {"tgt_in": "tgt_lengths", "tgt_out": "tgt_lengths"}
    #: the longest sequence predict generates
    max_len = 100

    def inputs(self, x, lengths, name="x"):
        if lengths is not None:
            raise ValueError("lengths: a ConditionalGenerator's conditions are not sequences")
        cfg = self.model.config
        if cfg.num_classes is not None:
            t = _as_tensor(x, name, "class ids (N,)")
            if t.dim() != 1 or t.is_floating_point():
                raise ValueError(f"{name}: expected class ids (N,) of integers, got {t.dtype} {tuple(t.shape)}")
            if len(t) and (int(t.min()) < 0 or int(t.max()) >= cfg.num_classes):
                raise ValueError(f"{name}: class ids must lie in [0, {cfg.num_classes})")
            return {"cond": t.long()}
        shape = (cfg.cond_size,) if cfg.cond_size is not None else (cfg.image_channels, *cfg.image_size)
        t = _as_tensor(x, name, f"conditions (N, {', '.join(map(str, shape))})").float()
        if tuple(t.shape[1:]) != shape:
            raise ValueError(
                f"{name}: expected conditions (N, {', '.join(map(str, shape))}), got shape {tuple(t.shape)}"
            )
        return {"cond": t}

    def targets(self, y, data, fit, name="y"):
        return _target_sequences(y, len(data["cond"]), self.model.config.vocab_size, name)

    def loss(self, b):
        return self.model.loss(b["cond"], b["tgt_in"], b["tgt_out"], b["tgt_lengths"]), int(b["tgt_lengths"].sum())

    def stats(self, b):
        return _token_stats(self.model(b["cond"], b["tgt_in"]), b)

    def metrics(self, s):
        return token_metrics(s)

    def predict(self, b):
        from ..decoding import greedy

        return greedy(self.model.step, self.model.encode(b["cond"]), BOS_ID, EOS_ID, self.max_len).sequences


class ForecasterAdapter(Adapter):
    """Forecaster: windows ``(N, W)`` -> the next ``horizon`` values ``(N, horizon)``. ``train_loss`` is the model's
    own loss, in window-normalised units; the ``val_*`` metrics (``loss`` = ``mse``, ``mae``) are in the data's
    units."""

    def inputs(self, x, lengths, name="x"):
        if lengths is not None:
            raise ValueError("lengths: a Forecaster's windows all have the same length W")
        if self.model.num_covariates:
            raise ValueError(
                "Forecaster.fit takes windows without covariates; a model with covariates is trained by the "
                "forecasting task (rnnkit.train('forecasting', data=...))"
            )
        t = _as_tensor(x, name, "windows (N, W)").float()
        if t.dim() == 3 and t.shape[-1] == 1:
            t = t[..., 0]
        if t.dim() != 2 or t.shape[1] < 2:
            raise ValueError(f"{name}: expected windows (N, W) with W >= 2, got shape {tuple(t.shape)}")
        return {"x": t}

    def targets(self, y, data, fit, name="y"):
        N, H = len(data["x"]), self.model.horizon
        return {"y": _values(y, N, H, name)}

    def loss(self, b):
        return self.model.loss(b["x"], b["y"]), len(b["y"])

    def stats(self, b):
        return regression_stats(self.model(b["x"])["mean"], b["y"])

    def metrics(self, s):
        return regression_metrics(s)

    def predict(self, b):
        return list(self.model(b["x"])["mean"].float().cpu())

    def collect(self, outputs):
        return torch.stack(outputs)


#: model kind -> its adapter
ADAPTERS: dict[str, type[Adapter]] = {
    "classifier": ClassifierAdapter,
    "classifier-ensemble": ClassifierAdapter,
    "mlp": MLPAdapter,
    "tagger": TaggerAdapter,
    "step_regressor": StepRegressorAdapter,
    "language_model": LanguageModelAdapter,
    "seq2seq": Seq2SeqAdapter,
    "conditional_generator": GeneratorAdapter,
    "forecaster": ForecasterAdapter,
    "forecaster-ensemble": ForecasterAdapter,
}


def adapter_for(model: Model) -> Adapter:
    cls = ADAPTERS.get(type(model).kind)
    if cls is None:
        raise ValueError(f"{type(model).__name__} has no in-memory fit; known: {', '.join(sorted(ADAPTERS))}")
    return cls(model)


def sliding_windows(series: Any, window: int, horizon: int, stride: int = 1) -> tuple[Tensor, Tensor]:
    """One series (T,) -> its windows ``(N, window)`` (one every ``stride`` steps) and the ``horizon`` values
    after each ``(N, horizon)``: what :class:`~rnnkit.models.Forecaster`'s ``fit`` takes."""
    s = _as_tensor(series, "series", "values (T,)").float().flatten()
    if window < 2 or horizon < 1 or stride < 1:
        raise ValueError(f"window must be >= 2, horizon and stride >= 1, got {window}, {horizon}, {stride}")
    if len(s) < window + horizon:
        raise ValueError(f"series: {len(s)} values, fewer than window + horizon = {window + horizon}")
    starts = range(0, len(s) - window - horizon + 1, stride)
    return torch.stack([s[i : i + window] for i in starts]), torch.stack(
        [s[i + window : i + window + horizon] for i in starts]
    )


# -- the data and the trainer's task --------------------------------------------------------------------
def build_data(adapter: Adapter, x: Any, y: Any, lengths: Any, fit: bool, name: str = "x") -> dict[str, Tensor]:
    data = adapter.inputs(x, lengths, name)
    target_name = "y" if name == "x" else f"{name}[1]"
    if adapter.needs_targets() and y is None:
        raise ValueError(f"{target_name}: {type(adapter.model).__name__} needs targets")
    data.update(adapter.targets(y, data, fit, target_name))
    return data


def _size(data: dict[str, Tensor]) -> int:
    return len(next(iter(data.values())))


def _take(adapter: Adapter, data: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
    b = {k: v[idx] for k, v in data.items()}
    for key, n in adapter.trim.items():
        if key in b and len(b[n]):
            b[key] = b[key][:, : int(b[n].max())]
    return b


def _order(n: int, seed: int, epoch: int, shuffle: bool) -> Tensor:
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def _batches(adapter: Adapter, data: dict[str, Tensor], batch_size: int, seed: int, epoch: int, shuffle: bool):
    order = _order(_size(data), seed, epoch, shuffle)
    for i in range(0, len(order), batch_size):
        yield _take(adapter, data, order[i : i + batch_size])


def trainer_task(adapter: Adapter, splits: dict[str, dict[str, Tensor]], batch_size: int, seed: int, shuffle: bool):
    """The trainer's :class:`~rnnkit.training.Task` over in-memory splits."""
    from ..training import Task

    def batches(split: str, epoch: int):
        return _batches(adapter, splits[split], batch_size, seed, epoch, shuffle and split == "train")

    def train_step(model, b, carry):
        loss, n = adapter.loss(b)
        return loss, None, n

    return Task(
        batches=batches,
        train_step=train_step,
        eval_step=lambda model, b: adapter.stats(b),
        finalize=adapter.metrics,
        num_batches=lambda split: -(-_size(splits[split]) // batch_size),
    )


def _validation(adapter, validation_data, validation_split, train: dict[str, Tensor]):
    if validation_data is not None and validation_split:
        raise ValueError("give validation_data or validation_split, not both")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (1, 2, 3):
            raise ValueError("validation_data: expected (x_val, y_val) or (x_val, y_val, lengths_val)")
        vx, vy, *vl = (*validation_data, None) if len(validation_data) == 1 else validation_data
        return train, build_data(adapter, vx, vy, vl[0] if vl else None, fit=False, name="validation_data")
    if not validation_split:
        return train, None
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split: expected a fraction in (0, 1), got {validation_split}")
    n = _size(train)
    k = int(n * validation_split)
    if k < 1 or k >= n:
        raise ValueError(f"validation_split={validation_split} of {n} examples leaves an empty split")
    # the last k examples, as given (before any shuffling), as Keras does
    return {key: v[: n - k] for key, v in train.items()}, {key: v[n - k :] for key, v in train.items()}


def fit(
    model: Model,
    x: Any,
    y: Any = None,
    *,
    lengths: Any = None,
    validation_data: Any = None,
    validation_split: float = 0.0,
    epochs: int = FIT_DEFAULTS["epochs"],
    batch_size: int = FIT_DEFAULTS["batch_size"],
    callbacks: Sequence[Any] = (),
    seed: int = 0,
    shuffle: bool = True,
    run_dir: Any = None,
    resume: bool = False,
    quiet: bool = True,
    **train: Any,
) -> list[dict[str, Any]]:
    """Train ``model`` on in-memory data with :class:`~rnnkit.training.Trainer`; returns the history (one dict per
    epoch: ``train_loss``, ``val_*`` metrics with validation data, ``lr``, ...). See :meth:`Model.fit`."""
    from ..training import TrainConfig, Trainer

    adapter = adapter_for(model)
    try:
        config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, **train)
    except ValidationError as e:  # one line naming the option
        raise ValueError(format_validation_error(e, "fit options")) from None
    data = build_data(adapter, x, y, lengths, fit=True)
    data, val = _validation(adapter, validation_data, validation_split, data)
    splits = {"train": data} | ({"validation": val} if val is not None else {})
    task = trainer_task(adapter, splits, batch_size, seed, shuffle)
    trainer = Trainer(config, run_dir=run_dir, callbacks=callbacks, quiet=quiet)
    result = trainer.fit(model, task, resume=resume, val_split="validation" if val is not None else None)
    return result.history


def evaluate(model: Model, x: Any, y: Any = None, *, lengths: Any = None, batch_size: int = 256) -> dict[str, float]:
    """Metrics of ``model`` on ``(x, y)`` (the same as ``fit``'s ``val_*`` ones)."""
    from ..training import Trainer

    adapter = adapter_for(model)
    data = build_data(adapter, x, y, lengths, fit=False)
    task = trainer_task(adapter, {"test": data}, batch_size, 0, False)
    trainer = Trainer({"device": str(next(model.parameters()).device)}, quiet=True)
    return trainer.evaluate(model, task, "test")


@torch.no_grad()
def predict(model: Model, x: Any, *, lengths: Any = None, batch_size: int = 256) -> Any:
    """Outputs of ``model`` on ``x`` in the order given (see each model's ``predict``)."""
    adapter = adapter_for(model)
    data = adapter.inputs(x, lengths)
    p = next(model.parameters())
    outputs: list = []
    with eval_mode(model):
        for b in _batches(adapter, data, batch_size, 0, 0, False):
            b = {k: v.to(p.device) for k, v in b.items()}
            outputs += adapter.predict(b)
    return adapter.collect(outputs)


def predict_labels(model: Model, x: Any, *, lengths: Any = None, batch_size: int = 256) -> list:
    """The most likely class of each example, as the labels ``fit`` was given (strings stay strings)."""
    K = getattr(model.config, "num_classes", None) or getattr(
        getattr(model.config, "member", None), "num_classes", None
    )
    if K is None:
        raise ValueError(f"{type(model).__name__}.predict_labels: the model is not a classifier")
    proba = predict(model, x, lengths=lengths, batch_size=batch_size)
    return LabelMap(model, K).decode(proba.argmax(-1).tolist())
