"""One training engine for every task: fit, evaluate, predict.

The trainer knows nothing of tasks. A task hands it

* ``batches(split, epoch)`` — an iterable of batches (nests of tensors, batch on dim 0), the same
  sequence for the same ``(split, epoch)`` so that an interrupted run can resume exactly;
* ``train_step(model, batch, carry) -> (loss, carry, n)`` — the mean loss of the batch, an optional
  carried state for truncated BPTT (detached by the trainer between batches; ``None`` otherwise) and
  the number of examples/tokens it averaged over;
* ``eval_step(model, batch) -> dict[str, float]`` of *additive* statistics (sums and counts), and
  ``finalize(stats) -> dict[str, float]`` that turns the summed statistics into metrics. Additive
  statistics are what make evaluation shardable across processes: ranks sum them with all-reduce.

It owns the loop: device, mixed precision, optimizer and schedule, gradient accumulation and clipping,
early stopping on a validation metric, callbacks, checkpoints that resume to the same weights, progress
and logs, and data-parallel training under ``torchrun`` (each batch is split across ranks, so the same
command with N processes trains on the same global batches).

Faults. A NaN/Inf training loss, or a non-finite gradient norm before the optimizer step (after unscaling;
with float16 loss scaling on CUDA an overflowing gradient is the scaler's business: it skips the step and
lowers the scale, as usual), is handled by ``train.on_nonfinite``: ``stop`` raises :class:`NonFiniteError`;
``skip`` drops that accumulated step (the optimizer is not stepped, the batch's loss is not counted);
``rollback`` restores the state of the last checkpoint (the same state ``--resume`` would load; kept in
memory, so it works without a run folder too), multiplies the learning rate by ``nonfinite_lr_factor`` and
trains on, at most ``max_rollbacks`` times. Every event is a warning in ``train.log`` and is counted in the
epoch records (``skipped_steps``, ``rollbacks``, present once non-zero).

Interruption. SIGINT (Ctrl-C) or SIGTERM while training (one process, main thread) stops after the current
optimizer step: a checkpoint is written and :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) is
raised, so ``fit(..., resume=True)`` continues from exactly there. A second signal aborts at once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from ..config import StrictModel
from ..errors import RnnkitError
from ..fileio import atomic_write_file, atomic_write_jsonl, remove_temporaries
from . import distributed as dist
from .checkpoint import latest_checkpoint, load_checkpoint, rng_state, save_checkpoint, set_rng_state

log = logging.getLogger("rnnkit")


class TrainConfig(StrictModel):
    """How to train (unknown keys are errors). Every field has a one-line reason in the docs."""

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(64, gt=0, description="global batch size (split across processes)")
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0, description="sgd / rmsprop")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null disables")
    grad_accum: int = Field(1, ge=1, description="batches per optimizer step")
    scheduler: Literal["none", "cosine", "linear", "step", "plateau"] = "none"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up from 0 over this many optimizer steps")
    step_size: int = Field(1, ge=1, description="'step' scheduler: epochs between decays")
    step_start: int | None = Field(
        None, ge=0, description="'step' scheduler: epochs at the initial lr before the first decay (default step_size)"
    )
    gamma: float = Field(0.5, gt=0, le=1, description="'step'/'plateau' decay factor")
    plateau_patience: int = Field(1, ge=0)
    monitor: str = Field("loss", description="validation metric for best model, plateau and early stopping")
    monitor_mode: Literal["min", "max"] = "min"
    early_stopping: int | None = Field(None, ge=1, description="stop after this many epochs without improvement")
    seed: int = 0
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    amp: bool = Field(False, description="mixed precision (bfloat16 autocast on CPU, float16 + scaling on CUDA)")
    checkpoint_every: int = Field(0, ge=0, description="also checkpoint every N optimizer steps (0: per epoch)")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(50, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (smoke runs)")
    on_nonfinite: Literal["stop", "skip", "rollback"] = Field(
        "stop",
        description="a NaN/Inf loss or gradient: stop (one-line error, the run folder stays resumable), skip that "
        "optimizer step, or rollback to the last checkpoint and train on at lr * nonfinite_lr_factor",
    )
    nonfinite_lr_factor: float = Field(0.5, gt=0, lt=1, description="rollback: the lr is multiplied by this each time")
    max_rollbacks: int = Field(3, ge=1, description="rollback: stop after this many rollbacks in one run")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto":
            try:
                torch.device(v)
            except (RuntimeError, ValueError):
                raise ValueError(f"{v!r} is not a device; use auto, cpu, cuda or cuda:N") from None
        return v


@dataclass
class Callback:
    """Named hooks; override the ones you need. ``trainer.stop = True`` ends training after the epoch."""

    def on_fit_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...
    def on_step_end(self, trainer: Trainer, step: int, loss: float) -> None: ...
    def on_evaluate(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, trainer: Trainer, epoch: int, record: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: Trainer, history: list[dict[str, Any]]) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise RnnkitError(f"train.device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RnnkitError(f"train.device={name!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")
    return dev


def move(batch: Any, device: torch.device) -> Any:
    """Move a nest of tensors to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move(v, device) for v in batch)
    return batch


def detach(state: Any) -> Any:
    """Cut the graph of a carried state (truncated BPTT)."""
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(detach(v) for v in state)
    return state


@dataclass
class Task:
    """What the trainer needs from a task (see the module docstring)."""

    batches: Callable[[str, int], Iterable[Any]]
    train_step: Callable[[nn.Module, Any, Any], tuple[torch.Tensor, Any, int]]
    eval_step: Callable[[nn.Module, Any], dict[str, float]]
    finalize: Callable[[dict[str, float]], dict[str, float]]
    num_batches: Callable[[str], int] | None = None


class NonFiniteError(RnnkitError):
    """Training met a NaN/Inf loss or gradient and ``train.on_nonfinite`` (or the rollback limit) says stop."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT/SIGTERM stopped training after a step; ``checkpoint`` is where it was saved (None: no run folder)."""

    def __init__(self, message: str, checkpoint: Path | None = None, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.message = message
        self.checkpoint = checkpoint
        self.signal_name = signal_name

    def __str__(self) -> str:
        return self.message


@dataclass
class _Snapshot:
    """The state of the last checkpoint, on the CPU, for ``on_nonfinite: rollback``."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: tuple[dict[str, torch.Tensor], dict[str, Any]]
    step: int
    state: TrainerState


def _cpu_copy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _mark_last(items: Iterable[Any]):
    """``(item, is_last)`` pairs, reading one item ahead."""
    it = iter(items)
    try:
        prev = next(it)
    except StopIteration:
        return
    for item in it:
        yield prev, False
        prev = item
    yield prev, True


def _scale_lr(optimizer: torch.optim.Optimizer, scheduler: Any, ratio: float) -> None:
    """Multiply every learning rate (the optimizer's, and a per-step schedule's base rates) by ``ratio``."""
    for g in optimizer.param_groups:
        g["lr"] *= ratio
        if "initial_lr" in g:
            g["initial_lr"] *= ratio
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
    if scheduler is not None and hasattr(scheduler, "min_lrs"):  # ReduceLROnPlateau
        scheduler.min_lrs = [lr * ratio for lr in scheduler.min_lrs]


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    steps: int = 0
    stopped_early: bool = False


@dataclass
class TrainerState:
    """Where training stands: what a checkpoint's ``trainer.json`` holds under ``"trainer"`` (with ``step`` and
    ``config_lr``), and what a rollback restores. ``carry`` (the truncated-BPTT state at ``batch``) is saved
    beside it in ``carry.safetensors``, never in the JSON."""

    epoch: int = 0  # the epoch being trained (0-based); == epochs when done
    batch: int = 0  # batches of ``epoch`` already trained on (0: at its start)
    best: float | None = None  # the best monitored validation value so far
    bad_epochs: int = 0  # epochs since it last improved (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per finished epoch
    skipped_steps: int = 0  # on_nonfinite: skip
    rollbacks: int = 0  # on_nonfinite: rollback
    lr_scale: float = 1.0  # the product of the rollbacks' lr factors
    loss_sum: float = 0.0  # the epoch's running sum of loss * n, up to ``batch``
    n_sum: int = 0  # and of n
    config_lr: float | None = None  # train.lr when the checkpoint was written (None: not resumed)
    carry: Any = None

    _SAVED = ("epoch", "batch", "best", "bad_epochs", "history", "skipped_steps", "rollbacks", "lr_scale",
              "loss_sum", "n_sum", "config_lr")  # fmt: skip

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> TrainerState:
        """From :func:`load_checkpoint`'s dict; keys an older checkpoint lacks keep their defaults."""
        return cls(**{k: saved[k] for k in (*cls._SAVED, "carry") if k in saved})

    def to_checkpoint(self, config_lr: float, step: int) -> dict[str, Any]:
        """The ``trainer`` object of ``trainer.json`` (the carry is saved separately)."""
        fields = {k: getattr(self, k) for k in self._SAVED if k != "config_lr"}
        return {**fields, "config_lr": config_lr, "step": step}


@dataclass
class _Run:
    """What one ``fit`` call works with (built by ``Trainer._start_fit``)."""

    model: nn.Module
    train_model: nn.Module  # the model, wrapped for data parallelism under torchrun
    task: Task
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a LambdaLR, ReduceLROnPlateau or None
    scaler: torch.amp.GradScaler
    state: TrainerState
    result: FitResult
    writer: Any  # TensorBoard SummaryWriter or None
    progress: _Progress


@dataclass
class _Epoch:
    """The running values of the epoch being trained."""

    index: int
    skip: int  # batches already trained on before a resume or rollback
    t0: float = field(default_factory=time.perf_counter)
    loss_sum: float = 0.0  # sum of loss * n over the applied batches
    n_sum: int = 0
    carry: Any = None  # the truncated-BPTT state after the last batch
    n_step: int = 0  # examples in the current accumulation group
    group: tuple[float, int, Any] = (0.0, 0, None)  # (loss_sum, n_sum, carry) at the start of the group
    bad_loss: tuple[float, int] | None = None  # (value, batch index) of the group's first non-finite loss
    stepped: int = 0  # optimizer steps applied this epoch
    skipped: int = 0  # and skipped (on_nonfinite: skip)


class Trainer:
    """``Trainer(config, run_dir=None, callbacks=(), quiet=False).fit(model, task)``.

    With ``run_dir``, rank 0 writes ``metrics.jsonl`` (one line per epoch), ``checkpoints/`` (resume
    with ``fit(..., resume=True)``) and ``best.safetensors`` (the weights with the best monitored
    validation metric), and TensorBoard events when ``tensorboard`` is installed.
    """

    def __init__(
        self,
        config: TrainConfig | dict | None = None,
        *,
        run_dir: str | Path | None = None,
        callbacks: Iterable[Callback] = (),
        quiet: bool = False,
    ) -> None:
        self.config = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks)
        self.quiet = quiet
        self.stop = False
        self.world = dist.init()  # no-op unless launched by torchrun
        self.device = resolve_device(self.config.device) if self.world.size == 1 else self.world.device
        self.step = 0

    # -- pieces ---------------------------------------------------------------------------------
    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The configured optimizer over the trainable parameters. A parameter with an ``lr_scale`` attribute
        (e.g. pretrained embeddings that should move slowly) goes into its own group at ``lr * lr_scale``."""
        c = self.config
        groups: dict[float, list[nn.Parameter]] = {}
        for p in model.parameters():
            if p.requires_grad:
                groups.setdefault(float(getattr(p, "lr_scale", 1.0)), []).append(p)
        params: Any = [
            {"params": ps, "lr": c.lr * scale} for scale, ps in sorted(groups.items(), key=lambda kv: kv[0] != 1.0)
        ]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        if c.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)
        return torch.optim.SGD(params, lr=c.lr, weight_decay=c.weight_decay, momentum=c.momentum)

    def make_scheduler(self, optimizer, total_steps: int, steps_per_epoch: int):
        """A per-step LambdaLR (warm-up × cosine/linear/step), or ReduceLROnPlateau for 'plateau'."""
        c = self.config
        if c.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=c.monitor_mode, factor=c.gamma, patience=c.plateau_patience
            )
        if c.scheduler == "none" and c.warmup_steps == 0:
            return None
        warm, total = c.warmup_steps, max(1, total_steps)

        def factor(step: int) -> float:
            w = min(1.0, (step + 1) / warm) if warm else 1.0
            progress = min(1.0, max(0.0, (step - warm) / max(1, total - warm)))
            if c.scheduler == "cosine":
                return w * 0.5 * (1 + math.cos(math.pi * progress))
            if c.scheduler == "linear":
                return w * (1 - progress)
            if c.scheduler == "step":
                # decays after epoch `start`, then every step_size epochs (start = step_size: torch's StepLR)
                epoch = step // max(1, steps_per_epoch)
                start = c.step_size if c.step_start is None else c.step_start
                return w * (c.gamma ** ((epoch - start) // c.step_size + 1) if epoch >= start else 1.0)
            return w

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.config.monitor_mode == "min" else value > best

    def _autocast(self):
        if not self.config.amp:
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    # -- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, task: Task, split: str = "validation") -> dict[str, float]:
        """Sum the task's additive statistics over ``split`` (all ranks), then finalize into metrics."""
        was = model.training
        model.eval()
        stats: dict[str, float] = {}
        try:
            for batch in task.batches(split, 0):
                batch = move(self.world.shard(batch), self.device)
                with self._autocast():
                    for k, v in task.eval_step(model, batch).items():
                        stats[k] = stats.get(k, 0.0) + float(v)
        finally:
            model.train(was)
        stats = self.world.all_reduce_sum(stats)
        return task.finalize(stats)

    # -- training -------------------------------------------------------------------------------
    def fit(
        self, model: nn.Module, task: Task, *, resume: bool = False, val_split: str | None = "validation"
    ) -> FitResult:
        run = self._start_fit(model, task, resume)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        restore_signals = self._catch_signals()
        try:
            while run.state.epoch < self.config.epochs and not self.stop:
                self._train_epoch(run, val_split)
        finally:
            restore_signals()
            run.progress.stop()
            if run.writer is not None:
                run.writer.close()
        result = run.result
        result.steps = self.step
        result.best = next((r for r in reversed(result.history) if r.get("best")), None)
        for cb in self.callbacks:
            cb.on_fit_end(self, result.history)
        return result

    def _start_fit(self, model: nn.Module, task: Task, resume: bool) -> _Run:
        """Seed, place the model, build optimizer, schedule and scaler, and load the checkpoint when resuming."""
        c = self.config
        seed_everything(c.seed)
        log.info("seed %d (train.seed)%s", c.seed, "; the checkpoint's RNG states take over" if resume else "")
        model.to(self.device)
        train_model = self.world.wrap(model)
        optimizer = self.make_optimizer(model)
        steps_per_epoch = math.ceil(task.num_batches("train") / c.grad_accum) if task.num_batches is not None else 0
        total = c.max_steps or steps_per_epoch * c.epochs
        scheduler = self.make_scheduler(optimizer, total, max(1, steps_per_epoch))
        scaler = torch.amp.GradScaler("cuda", enabled=c.amp and self.device.type == "cuda")
        state = self._resume(model, optimizer, scheduler) if resume else TrainerState()
        result = FitResult(history=state.history)
        if resume:
            self._write_metrics(result.history)  # drop records of epochs after the checkpoint
        self._snapshot: _Snapshot | None = None
        if c.on_nonfinite == "rollback":
            self._take_snapshot(model, optimizer, scheduler, state, state.carry)
        writer = self._tensorboard()
        progress = _Progress(quiet=self.quiet or not self.world.is_main)
        return _Run(model, train_model, task, optimizer, scheduler, scaler, state, result, writer, progress)

    def _resume(self, model: nn.Module, optimizer, scheduler) -> TrainerState:
        """Load the latest checkpoint of the run folder into model, optimizer and schedule; its trainer state."""
        c = self.config
        ckpt_dir = self.run_dir / "checkpoints" if self.run_dir is not None else None
        path = latest_checkpoint(ckpt_dir) if ckpt_dir is not None else None
        if path is None:
            raise RnnkitError(f"nothing to resume: no checkpoint under {ckpt_dir}")
        saved = load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
        state = TrainerState.from_checkpoint(saved)
        self.step = saved["step"]
        saved_lr = state.config_lr if state.config_lr is not None else c.lr
        if saved_lr != c.lr:  # `--resume --set train.lr=...`: the saved optimizer holds the old lr
            _scale_lr(optimizer, scheduler, c.lr / saved_lr)
            log.info("train.lr %g -> %g: learning rates scaled by %g", saved_lr, c.lr, c.lr / saved_lr)
        if self.world.is_main:  # what a killed process left half-written
            remove_temporaries(ckpt_dir)
            remove_temporaries(self.run_dir)
        log.info("resumed from %s (epoch %d, batch %d)", path, state.epoch + 1, state.batch)
        return state

    def _train_epoch(self, run: _Run, val_split: str | None) -> None:
        """One epoch: its batches, then validation, records and a checkpoint (not after a rollback: the
        restored epoch starts over from the restored batch)."""
        c, state = self.config, run.state
        for cb in self.callbacks:
            cb.on_epoch_start(self, state.epoch)
        ep = _Epoch(index=state.epoch, skip=state.batch)
        if ep.skip:  # resumed mid-epoch: continue with the carried state and the epoch's running loss
            # (each rank carries its own shard's state; the checkpoint holds rank 0's only)
            ep.carry = move(state.carry, self.device) if self.world.size == 1 else None
            ep.loss_sum, ep.n_sum = state.loss_sum, state.n_sum
        ep.group = (ep.loss_sum, ep.n_sum, ep.carry)
        run.train_model.train()
        total_batches = run.task.num_batches("train") if run.task.num_batches else None
        run.progress.start(f"epoch {ep.index + 1}/{c.epochs}", total_batches)
        rolled_back = self._train_batches(run, ep)
        run.progress.stop()
        if rolled_back:
            return
        if ep.skipped and not ep.stepped and ep.skip == 0:
            raise NonFiniteError(
                f"every optimizer step of epoch {ep.index + 1} was non-finite and skipped; lower train.lr, "
                "enable train.grad_clip, or check the data"
            )
        self._end_epoch(run, ep, val_split)

    def _train_batches(self, run: _Run, ep: _Epoch) -> bool:
        """Train on the epoch's batches from ``ep.skip`` on; True when a rollback cut the epoch short."""
        c = self.config
        batches: Iterable[tuple[Any, bool]] = run.task.batches("train", ep.index)
        # a last, partial accumulation group is stepped at the end of the epoch (not carried into the next)
        batches = _mark_last(batches) if c.grad_accum > 1 else ((b, False) for b in batches)
        for i, (batch, is_last) in enumerate(batches):
            if i < ep.skip:
                continue  # already trained on before the interruption
            loss_value, n = self._accumulate(run, ep, batch, i)
            if (i + 1) % c.grad_accum and not is_last:
                continue
            if self._step(run, ep, i, loss_value):
                return True
            run.progress.advance(loss_value, n, i + 1)
            if c.max_steps and self.step >= c.max_steps:
                self.stop = True
                break
        return False

    def _accumulate(self, run: _Run, ep: _Epoch, batch: Any, i: int) -> tuple[float, int]:
        """Forward and backward one batch (under autocast; the loss scaled for AMP and accumulation); a non-finite
        loss is remembered in ``ep.bad_loss`` and not back-propagated. Returns (loss, n)."""
        c = self.config
        batch = move(self.world.shard(batch), self.device)
        with self._autocast():
            loss, carry, n = run.task.train_step(run.train_model, batch, ep.carry)
        ep.carry = detach(carry)
        loss_value = float(loss.detach())
        if math.isfinite(loss_value):
            run.scaler.scale(loss / c.grad_accum).backward()
            ep.loss_sum += loss_value * n
            ep.n_sum += n
        elif ep.bad_loss is None:
            ep.bad_loss = (loss_value, i)
        ep.n_step += n
        return loss_value, n

    def _step(self, run: _Run, ep: _Epoch, i: int, loss_value: float) -> bool:
        """The optimizer step that closes an accumulation group at batch ``i``, then the schedule, callbacks, a
        periodic checkpoint and a pending signal. True when the non-finite policy rolled back."""
        c = self.config
        ok = self._optimizer_step(run.model, run.optimizer, run.scaler, ep.n_step, ep.bad_loss is not None)
        ep.n_step = 0
        if not ok:  # a non-finite loss or gradient: nothing was applied
            return self._on_nonfinite(run, ep, i)
        ep.stepped += 1
        ep.group = (ep.loss_sum, ep.n_sum, ep.carry)
        if run.scheduler is not None and c.scheduler != "plateau":
            run.scheduler.step()
        for cb in self.callbacks:
            cb.on_step_end(self, self.step, loss_value)
        if run.writer is not None:
            run.writer.add_scalar("train/loss", loss_value, self.step)
        saved = None
        if c.checkpoint_every and self.step % c.checkpoint_every == 0:
            saved = self._checkpoint_in_epoch(run, ep, i)
        if self._signal is not None:
            if saved is None:
                saved = self._checkpoint_in_epoch(run, ep, i)
            self._interrupted(saved, f"epoch {ep.index + 1}, batch {i + 1}")
        return False

    def _checkpoint_in_epoch(self, run: _Run, ep: _Epoch, i: int) -> Path | None:
        """A checkpoint after batch ``i``: resuming continues with batch ``i + 1``."""
        state = run.state
        state.epoch, state.batch, state.loss_sum, state.n_sum = ep.index, i + 1, ep.loss_sum, ep.n_sum
        return self._checkpoint(run.model, run.optimizer, run.scheduler, state, ep.carry)

    def _end_epoch(self, run: _Run, ep: _Epoch, val_split: str | None) -> None:
        """The epoch's record (train loss, validation metrics, best), early stopping, and its checkpoint."""
        c, state = self.config, run.state
        tot = self.world.all_reduce_sum({"loss": ep.loss_sum, "n": float(ep.n_sum)})
        record: dict[str, Any] = {
            "epoch": ep.index + 1,
            "step": self.step,
            "train_loss": tot["loss"] / max(tot["n"], 1.0),
            "lr": run.optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - ep.t0, 3),
        }
        if state.skipped_steps:
            record["skipped_steps"] = state.skipped_steps
        if state.rollbacks:
            record["rollbacks"] = state.rollbacks
        if val_split is not None:
            self._validate(run, ep.index, val_split, record)
        run.result.history.append(record)
        self._log_epoch(record, run.writer, run.result.history)
        for cb in self.callbacks:
            cb.on_epoch_end(self, ep.index, record)
        state.epoch, state.batch, state.loss_sum, state.n_sum = (
            ep.index + 1,
            0,
            0.0,
            0,
        )  # the next epoch, from its start
        state.history = run.result.history
        if c.early_stopping and state.bad_epochs >= c.early_stopping:
            log.info("early stopping: %s did not improve for %d epochs", c.monitor, c.early_stopping)
            run.result.stopped_early = True
            self.stop = True
        saved = self._checkpoint(run.model, run.optimizer, run.scheduler, state)
        if self._signal is not None:
            self._interrupted(saved, f"the end of epoch {state.epoch}")

    def _validate(self, run: _Run, epoch: int, split: str, record: dict[str, Any]) -> None:
        """Evaluate ``split`` into ``record``; step a plateau schedule; keep the best weights."""
        c, state = self.config, run.state
        metrics = self.evaluate(run.model, run.task, split)
        for cb in self.callbacks:
            cb.on_evaluate(self, epoch, metrics)
        record.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics.get(c.monitor)
        if value is None:
            raise RnnkitError(
                f"train.monitor={c.monitor!r} is not a validation metric; choose one of {sorted(metrics)}"
            )
        if run.scheduler is not None and c.scheduler == "plateau":
            run.scheduler.step(value)
        if self._improved(value, state.best):
            state.best, state.bad_epochs = value, 0
            record["best"] = True
            self._save_best(run.model)
        else:
            state.bad_epochs += 1

    def _optimizer_step(self, model, optimizer, scaler, n_local: int, bad_loss: bool = False) -> bool:
        """Apply the accumulated gradients; False (nothing applied, gradients dropped) when the loss or the
        gradient norm was not finite on any rank."""
        c = self.config
        self.world.sync_grads(model, n_local)
        check = not scaler.is_enabled()  # float16 loss scaling handles overflowing gradients itself
        unscaled = False
        if c.grad_clip is not None and not bad_loss:
            scaler.unscale_(optimizer)
            unscaled = scaler.is_enabled()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        elif check and not bad_loss:
            norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        self._norm = float(norm) if check and not bad_loss else None
        bad = bad_loss or (check and not math.isfinite(self._norm))
        if self.world.size > 1:  # every rank takes the same decision
            bad = self.world.all_reduce_sum({"bad": float(bad)})["bad"] > 0
        if bad:
            optimizer.zero_grad(set_to_none=True)
            if unscaled:
                scaler.update()  # unscale_ was called: close the scaler's iteration
            return False
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return True

    # -- faults ---------------------------------------------------------------------------------
    def _on_nonfinite(self, run: _Run, ep: _Epoch, i: int) -> bool:
        """``train.on_nonfinite`` for the group that ended at batch ``i``: skip it (False), roll back (True), or
        raise :class:`NonFiniteError`."""
        c = self.config
        what = f"gradient norm became {self._norm}"
        if ep.bad_loss is not None:
            what = f"loss became {ep.bad_loss[0]}"
        at = f"epoch {ep.index + 1}, batch {(ep.bad_loss[1] if ep.bad_loss else i) + 1}"
        ep.bad_loss = None
        if c.on_nonfinite == "skip":
            ep.loss_sum, ep.n_sum, ep.carry = ep.group
            ep.skipped += 1
            run.state.skipped_steps += 1
            log.warning("training %s at %s: optimizer step skipped (%d skipped so far)",
                        what, at, run.state.skipped_steps)  # fmt: skip
            return False
        if c.on_nonfinite == "rollback" and run.state.rollbacks < c.max_rollbacks:
            run.state = self._rollback(run.model, run.optimizer, run.scheduler, run.state, f"training {what} at {at}")
            run.result.history = run.state.history
            return True
        self._nonfinite_stop(what, at, run.state)

    def _nonfinite_stop(self, what: str, at: str, state: TrainerState) -> NoReturn:
        c = self.config
        tried = f" after {state.rollbacks} rollbacks" if c.on_nonfinite == "rollback" else ""
        message = (
            f"training {what} at {at} (step {self.step + 1}){tried}; "
            "lower train.lr, enable train.grad_clip, or set train.on_nonfinite=skip|rollback"
        )
        log.info("stopping: %s", message)  # into train.log; the error itself is the command's one line
        raise NonFiniteError(message)

    def _take_snapshot(self, model, optimizer, scheduler, state: TrainerState, carry) -> None:
        self._snapshot = _Snapshot(
            model=_cpu_copy(model.state_dict()),
            optimizer=_cpu_copy(optimizer.state_dict()),
            scheduler=copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
            rng=_cpu_copy(rng_state()),
            step=self.step,
            state=dataclasses.replace(copy.deepcopy(dataclasses.replace(state, carry=None)), carry=_cpu_copy(carry)),
        )

    def _rollback(self, model, optimizer, scheduler, state: TrainerState, why: str) -> TrainerState:
        """Restore the last checkpoint's state; the learning rate is multiplied by ``nonfinite_lr_factor``."""
        c, snap = self.config, self._snapshot
        model.load_state_dict(snap.model)
        optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
        if scheduler is not None and snap.scheduler is not None:
            scheduler.load_state_dict(copy.deepcopy(snap.scheduler))
        set_rng_state(*snap.rng)
        optimizer.zero_grad(set_to_none=True)
        self.step = snap.step
        restored = copy.deepcopy(dataclasses.replace(snap.state, carry=None))
        restored.carry = snap.state.carry
        # the fault counters and the lr reduction outlive the rollback
        restored.rollbacks = state.rollbacks + 1
        restored.skipped_steps = state.skipped_steps
        restored.lr_scale = state.lr_scale * c.nonfinite_lr_factor
        _scale_lr(optimizer, scheduler, restored.lr_scale / snap.state.lr_scale)
        log.warning(
            "%s: rolled back to step %d (epoch %d, batch %d), lr x%g (rollback %d of at most %d)", why, self.step,
            restored.epoch + 1, restored.batch, restored.lr_scale, restored.rollbacks, c.max_rollbacks,
        )  # fmt: skip
        return restored  # later checkpoints (and snapshots) carry the reduced lr and the counts

    # -- interruption ---------------------------------------------------------------------------
    def _catch_signals(self) -> Callable[[], None]:
        """Turn SIGINT/SIGTERM into "stop after this step" while fit runs; returns the undo."""
        self._signal: str | None = None
        if self.world.size > 1 or threading.current_thread() is not threading.main_thread():
            return lambda: None  # under torchrun the launcher owns signals; ranks must not stop at different steps
        old: dict[int, Any] = {}

        def handler(signum, _frame) -> None:
            name = signal.Signals(signum).name
            if self._signal is not None:  # a second signal: abort at once
                restore()
                signal.raise_signal(signum)
                return
            self._signal = name
            log.info("%s: stopping after this step and saving a checkpoint (send it again to abort at once)", name)

        def restore() -> None:
            for signum, h in old.items():
                signal.signal(signum, h)
            old.clear()

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):  # not allowed here
                old[signum] = signal.signal(signum, handler)
        return restore

    def _interrupted(self, saved: Path | None, at: str) -> None:
        where = f"checkpoint saved in {saved}" if saved is not None else "nothing saved (no run folder)"
        raise TrainingInterrupted(
            f"interrupted by {self._signal} at {at} (step {self.step}); {where}", saved, self._signal or ""
        )

    # -- files (rank 0 only) --------------------------------------------------------------------
    def _checkpoint(self, model, optimizer, scheduler, state: TrainerState, carry=None) -> Path | None:
        if self.config.on_nonfinite == "rollback":
            self._take_snapshot(model, optimizer, scheduler, state, carry)
        if self.run_dir is None or not self.world.is_main:
            return None
        return save_checkpoint(
            self.run_dir / "checkpoints",
            step=self.step,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            trainer_state=state.to_checkpoint(self.config.lr, self.step),
            keep=self.config.keep_checkpoints,
            carry=carry,
        )

    def _save_best(self, model) -> None:
        if self.run_dir is None or not self.world.is_main:
            return
        import safetensors.torch

        atomic_write_file(self.run_dir / "best.safetensors", lambda tmp: safetensors.torch.save_model(model, str(tmp)))

    def _write_metrics(self, history: list[dict[str, Any]]) -> None:
        """``metrics.jsonl`` rewritten whole (atomically) from the history: never a half line or a stale epoch."""
        if self.run_dir is not None and self.world.is_main:
            atomic_write_jsonl(self.run_dir / "metrics.jsonl", history)

    def _log_epoch(self, record: dict[str, Any], writer, history: list[dict[str, Any]] | None = None) -> None:
        if not self.world.is_main:
            return
        skip = ("best", "epoch", "seconds", "step")
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k not in skip]
        log.info(
            "epoch %d/%d: %s (%.1f s)%s", record["epoch"], self.config.epochs, ", ".join(parts), record["seconds"],
            " best" if record.get("best") else "",
        )  # fmt: skip
        self._write_metrics(history if history is not None else [record])
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    writer.add_scalar(k.replace("_", "/", 1), v, record["epoch"])

    def _tensorboard(self):
        if self.run_dir is None or not self.world.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))


class _Progress:
    """A rich progress bar on stderr: batches, loss, items per second, time left."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar = None
        self._n = 0
        self._t0 = 0.0

    def start(self, label: str, total: int | None) -> None:
        if self.quiet:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        )  # fmt: skip
        self._bar.start()
        self._task = self._bar.add_task(label, total=total, info="")
        self._n, self._t0 = 0, time.perf_counter()

    def advance(self, loss: float, n: int, done: int) -> None:
        if self._bar is None:
            return
        self._n += n
        rate = self._n / max(time.perf_counter() - self._t0, 1e-9)
        self._bar.update(self._task, completed=done, info=f"loss {loss:.4f}  {rate:,.0f}/s")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
