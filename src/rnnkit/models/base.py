"""What every rnnkit model shares: a typed config, rebuild-from-config, save/load, and ``summary()``.

A model is an ``nn.Module`` whose constructor takes one typed config (a :class:`~rnnkit.config.StrictModel`
that rejects unknown keys). ``model.config`` is that object, ``model.get_config()`` its JSON form, and
``type(model).from_config(d)`` rebuilds an identical architecture — so a checkpoint is the weights
(safetensors) plus that JSON, and loading never unpickles anything.

Decoders that search (greedy, beam, sampling in :mod:`rnnkit.decoding`) expose
``step(tokens (B,), state) -> (logits (B, V), state)`` where ``state`` is a nest (tuple/list/dict)
of tensors with the batch on dim 0, so search can expand and reorder it without knowing the model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..config import StrictModel
from ..fileio import atomic_write_text

MODEL_REGISTRY: dict[str, type[Model]] = {}


def refuse_one_class(v):
    """``field_validator("num_classes", mode="before")`` of the classifiers: one logit is not a classifier here."""
    if v == 1 and not isinstance(v, bool):
        raise ValueError(
            "num_classes=1: for two classes use num_classes=2 (two logits and a softmax are the binary "
            "classifier: labels 0/1, predict gives P(class 1) in column 1); for one value use output_size=1"
        )
    return v


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode (no dropout) inside the block, and back in the mode it was in after it."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def mixture_log_probs(logits: list[Tensor]) -> Tensor:
    """``log(mean_k softmax(logits_k))`` over the last dim: the log-probabilities of an equal-weight mixture of
    the members' distributions (log-sum-exp of their log-softmax, so a confident member cannot overflow)."""
    logp = torch.stack([x.log_softmax(-1) for x in logits])  # (K, ..., V)
    return torch.logsumexp(logp, 0) - math.log(len(logits))


class Model(nn.Module):
    """Base class of the topologies (``Classifier``, ``Tagger``, ``LanguageModel``, ``Seq2Seq``, ...)."""

    config_class: ClassVar[type[StrictModel]]
    #: registry name, e.g. "classifier"; subclasses set it and are registered automatically
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # only a class that names its own kind: subclasses made by tools (torch.export's tracing proxies)
        # inherit a kind and must not replace the real class in the registry
        if cls.__dict__.get("kind"):
            MODEL_REGISTRY[cls.kind] = cls

    def __init__(self, config: StrictModel | dict | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = self.coerce_config(config, **overrides)

    @classmethod
    def coerce_config(cls, config: StrictModel | dict | None = None, **overrides: Any) -> StrictModel:
        """Accept a config object, a dict, or keyword arguments; validate eagerly."""
        if config is None:
            return cls.config_class(**overrides)
        if isinstance(config, dict):
            return cls.config_class(**{**config, **overrides})
        if not isinstance(config, cls.config_class):
            raise TypeError(f"{cls.__name__}: expected a {cls.config_class.__name__}, got {type(config).__name__}")
        return cls.config_class(**{**config.model_dump(), **overrides}) if overrides else config

    @classmethod
    def from_config(cls, config: StrictModel | dict) -> Model:
        return cls(config)

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    # -- in-memory data (rnnkit.models.fitting) ---------------------------------------------------
    #: class (or tag) labels ``fit`` was given when they were not ints ``0..K-1`` (strings, ...); saved with
    #: the model and used by ``predict_labels``; None: the labels are the class ids themselves
    labels: list | None = None

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        lengths: Any = None,
        validation_data: Any = None,
        validation_split: float = 0.0,
        epochs: int = 10,
        batch_size: int = 32,
        callbacks: Any = (),
        seed: int = 0,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Train on in-memory data with the one :class:`~rnnkit.training.Trainer`; returns the history, one dict
        per epoch (``epoch``, ``train_loss``, ``lr``, and ``val_*`` metrics when there is validation data).

        ``x``: a list of variable-length sequences (arrays, tensors or lists; ``(T_i,)`` token ids or ``(T_i, F)``
        features), or a padded array ``(N, T)`` / ``(N, T, F)`` with ``lengths`` ``(N,)``; fixed-size inputs for
        an MLP, conditions for a ConditionalGenerator, windows for a Forecaster (:mod:`rnnkit.models.fitting`).
        ``y``: labels (ints, or strings kept as :attr:`labels`), per-step labels or values, token-id
        sequences or future values, by model; a language model needs none. ``validation_data=(x_val, y_val)`` or
        ``validation_split`` (the last fraction of the examples as given). ``options`` are any other
        :class:`~rnnkit.training.TrainConfig` fields (``lr``, ``grad_clip``, ``early_stopping``,
        ``on_nonfinite``, ...) and ``shuffle``, ``run_dir`` (checkpoints, ``metrics.jsonl``; ``resume=True``
        continues there), ``quiet`` (default True: no progress bar). The weights after the last epoch are kept.
        """
        from .fitting import fit

        return fit(
            self, x, y, lengths=lengths, validation_data=validation_data, validation_split=validation_split,
            epochs=epochs, batch_size=batch_size, callbacks=callbacks, seed=seed, **options,
        )  # fmt: skip

    def evaluate(self, x: Any, y: Any = None, *, lengths: Any = None, batch_size: int = 256) -> dict[str, float]:
        """Metrics on in-memory data, the ones ``fit`` reports as ``val_*`` (classifiers: loss, accuracy, f1;
        regression: loss, mse, mae; token models: loss, accuracy, perplexity)."""
        from .fitting import evaluate

        return evaluate(self, x, y, lengths=lengths, batch_size=batch_size)

    def predict(self, x: Any, lengths: Any = None, *, batch_size: int = 256) -> Any:
        """Outputs on in-memory inputs, in order: class probabilities (N, C) or values (N, O) (Classifier, MLP),
        tag lists (Tagger), per-step values (StepRegressor), next-token probabilities (N, V) after each sequence
        (LanguageModel), greedy token-id sequences (Seq2Seq, ConditionalGenerator), forecasts (N, horizon)."""
        from .fitting import predict

        return predict(self, x, lengths=lengths, batch_size=batch_size)

    def predict_labels(self, x: Any, lengths: Any = None, *, batch_size: int = 256) -> list:
        """The most likely class of each example, as the labels ``fit`` was given (classifiers)."""
        from .fitting import predict_labels

        return predict_labels(self, x, lengths=lengths, batch_size=batch_size)

    def save(self, path: str | Path) -> Path:
        """Save for later use; returns ``path``.

        Where a task kind serves this model, ``path`` becomes an ordinary run folder that ``rnnkit predict``,
        ``serve``, ``export`` and :func:`rnnkit.load` accept (a :class:`~rnnkit.models.Classifier` on real-valued
        features: a ``series-classification`` run, which predicts ``.ts`` files). Otherwise it holds
        ``model.safetensors`` and ``model.json`` (kind, config, labels), which :meth:`load` reads.
        An existing non-empty folder is refused (never overwritten).
        """
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"{path} already exists and is not an empty folder; choose another path")
        # The run-folder format belongs to the task layer above the models (rnnkit.api, built on rnnkit.tasks):
        # it is looked up when save is called, so rnnkit.models imports nothing above it.
        import importlib

        writer = importlib.import_module("rnnkit.api").run_writer(self)
        if writer is not None:
            return writer(self, path)
        save_model(self, path)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Model:
        """A model saved by :meth:`save`: a model folder (``model.json``), or a run folder's model (``meta.json``,
        checked like ``rnnkit predict`` checks it)."""
        path = Path(path)
        if (path / "model.json").is_file():
            model = load_model(path, map_location)
        elif (path / "meta.json").is_file():
            import importlib

            run = importlib.import_module("rnnkit.api").load(path)
            model = run.model
            if isinstance(getattr(run.loaded.task, "labels", None), list):
                model.labels = list(run.loaded.task.labels)
        else:
            raise ValueError(f"{path}: no model.json (Model.save) or meta.json (a run folder) there")
        if cls is not Model and not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # -- inspection -----------------------------------------------------------------------------
    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        """Inputs for :meth:`summary` (positional args, keyword args). Subclasses override."""
        raise NotImplementedError(f"{type(self).__name__} does not define example_inputs()")

    def summary(self, batch_size: int = 2, length: int = 7) -> str:
        """A table of every leaf layer with its output shape and parameter count, from one forward pass."""
        rows: list[tuple[str, str, str, int]] = []
        hooks = []

        def shape_of(out: Any) -> str:
            if isinstance(out, Tensor):
                return str(tuple(out.shape))
            if isinstance(out, (tuple, list)) and out:
                return shape_of(out[0])
            return "-"

        for name, module in self.named_modules():
            if name and not list(module.children()) or isinstance(module, nn.RNNBase):

                def hook(mod, _inp, out, name=name):
                    own = sum(p.numel() for p in mod.parameters())
                    rows.append((name, type(mod).__name__, shape_of(out), own))

                hooks.append(module.register_forward_hook(hook))
        args, kwargs = self.example_inputs(batch_size, length)
        try:
            with eval_mode(self), torch.no_grad():
                self(*args, **kwargs)
        finally:
            for h in hooks:
                h.remove()
        seen, unique = set(), []
        for r in rows:
            if r[0] not in seen and not any(r[0].startswith(s + ".") for s in seen):
                seen.add(r[0])
                unique.append(r)
        # modules with parameters that forward() does not call (e.g. a CRF used only by the loss)
        for name, module in self.named_modules():
            own = list(module.parameters(recurse=False))
            if name and own and name not in seen and not any(name.startswith(s + ".") for s in seen):
                seen.add(name)
                unique.append(
                    (name, type(module).__name__, "(not in forward)", sum(p.numel() for p in module.parameters()))
                )
        w = max([len(r[0]) + len(r[1]) + 3 for r in unique] + [20])
        lines = [
            f"{type(self).__name__} (batch {batch_size}, length {length})",
            f"{'layer':<{w}} {'output shape':<22} {'params':>10}",
            "-" * (w + 34),
        ]
        for name, typ, shape, n in unique:
            lines.append(f"{name + ' (' + typ + ')':<{w}} {shape:<22} {n:>10,}")
        lines += [
            "-" * (w + 34),
            f"total parameters: {self.num_parameters():,} (trainable {self.num_parameters(True):,})",
        ]
        return "\n".join(lines)


def build_model(kind: str, config: StrictModel | dict) -> Model:
    """Build a registered model by name (``"classifier"``, ``"tagger"``, ...) from its config."""
    if kind not in MODEL_REGISTRY:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[kind].from_config(config)


def save_model(model: Model, folder: str | Path) -> None:
    """``model.safetensors`` + ``model.json`` (kind and config) into ``folder``, each written atomically.

    Tied weights (e.g. a language model's shared embedding and output matrix) are stored once.
    """
    import safetensors.torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".model.safetensors.tmp-{os.getpid()}"
    safetensors.torch.save_model(model, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    meta: dict[str, Any] = {"kind": model.kind, "config": model.get_config()}
    if model.labels is not None:
        meta["labels"] = list(model.labels)
    try:
        text = json.dumps(meta, indent=2)
    except TypeError:
        raise ValueError(f"{type(model).__name__}.labels must be JSON values (strings, numbers) to be saved") from None
    atomic_write_text(folder / "model.json", text)


def load_model(folder: str | Path, map_location: str | torch.device = "cpu") -> Model:
    """Rebuild a model saved by :func:`save_model`; weights via safetensors (no pickle)."""
    import safetensors.torch

    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    model = build_model(meta["kind"], meta["config"])
    safetensors.torch.load_model(model, str(folder / "model.safetensors"), device=str(map_location))
    if meta.get("labels") is not None:
        model.labels = list(meta["labels"])
    return model
