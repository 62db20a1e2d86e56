"""Train, evaluate and predict for any task: resolve the config, own the run folder, call the trainer.

Run folder (``runs/<name>/``, docs/reliability.md): ``config.yaml`` (resolved), ``train.log``, ``metrics.jsonl``,
``checkpoints/``, then at the end ``model.safetensors`` (the best validation weights) + ``meta.json``,
``predictions.jsonl`` and ``plots/``. ``meta.json`` is written last: a folder without it is a run that
did not finish, which ``rnnkit train --resume`` continues and ``predict`` refuses. A new run never
reuses an existing folder; a run that fails before its first checkpoint removes its own folder. While a process
trains into a folder it holds ``RUN/.lock`` (:class:`rnnkit.runfolder.RunLock`). Reading a finished run folder
as untrusted input (confinement, SHA-256, size checks before building the model) is :func:`load_run`, on top
of :mod:`rnnkit.runfolder`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import rnnkit

from ..config import deep_merge, load_yaml, parse_overrides, save_config_yaml, validate
from ..errors import RnnkitError, short_repr
from ..fileio import atomic_write_bytes, atomic_write_file, atomic_write_json, sha256_file
from ..models.base import MODEL_REGISTRY
from ..runfolder import (
    FORMAT_VERSION,
    LoadedRun,
    RunLock,
    check_run_name,
    check_tree,
    next_free_name,
    one_line,
    open_run,
    read_meta,
    weights_header,
)
from .base import TASKS, GenerateOptions, RecipeConfig, TaskKind, get_task

log = logging.getLogger("rnnkit")
__all__ = ["FORMAT_VERSION", "LoadedRun", "evaluate", "generate", "load_run", "predict", "prepared_task", "train"]


# -- configs --------------------------------------------------------------------------------------------
def recipes() -> dict[str, Path]:
    """Recipe name -> its YAML file (shipped inside the package, ``rnnkit/configs``)."""
    folder = resources.files("rnnkit") / "configs"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_config(
    target: str, config_file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[type[TaskKind], RecipeConfig]:
    """``target`` (a recipe or a task kind) defaults <- ``config_file`` <- ``--set`` overrides, validated."""
    known = recipes()
    if target in known:
        data = load_yaml(known[target])
    elif target in TASKS:
        data = {"task": target}
    else:
        raise RnnkitError(
            f"unknown recipe or task {target!r}; recipes: {', '.join(sorted(known))}; tasks: {', '.join(sorted(TASKS))}"
        )
    source = f"recipe {target!r}"
    if config_file is not None:
        data = deep_merge(data, load_yaml(config_file))
        source = str(config_file)
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
        source += " with --set"
    task_cls = get_task(str(data.get("task", "")))
    return task_cls, validate(task_cls.config_class, data, source)


# -- training -------------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    path: Path
    metrics: dict[str, float]
    best: dict[str, Any] | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def _new_run_dir(runs_dir: Path, name: str | None, default: str) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    if name is not None:
        path = runs_dir / check_run_name(name)
        if path.exists():
            raise RnnkitError(f"run folder {path} already exists; choose another --name (runs are never overwritten)")
    else:
        path = runs_dir / next_free_name(runs_dir, check_run_name(default))
    path.mkdir()
    return path


def train(
    target: str | None = None,
    *,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    data: str | Path | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    default_name: str | None = None,
) -> RunSummary:
    """``rnnkit train``. With ``resume``, continue the unfinished run folder from its latest checkpoint."""
    t0 = time.perf_counter()
    # under torchrun only rank 0 owns the run folder; the other ranks train alongside it and write nothing
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with contextlib.ExitStack() as held:  # the run folder's lock, once taken
        if resume is not None:
            run_dir = Path(resume)
            if not run_dir.is_dir() or not (run_dir / "config.yaml").is_file():
                raise RnnkitError(f"{run_dir} is not a run folder (no config.yaml)")
            if (run_dir / "meta.json").exists():
                raise RnnkitError(f"{run_dir} already finished (meta.json exists); nothing to resume")
            if main_rank:  # one process trains into a folder; it never writes through a link placed there
                held.enter_context(RunLock(run_dir))
                check_tree(run_dir)
            saved = load_yaml(run_dir / "config.yaml")
            task_cls = get_task(str(saved.get("task")))
            config = validate(task_cls.config_class, deep_merge(saved, parse_overrides(overrides)), str(run_dir))
        else:
            if target is None:
                raise RnnkitError("give a recipe or task to train, or --resume RUN")
            task_cls, config = resolve_config(target, config_file, overrides)
            if data is not None and not Path(data).exists():
                raise RnnkitError("no such file or folder", where=str(data))
            if data is not None:  # recorded in config.yaml, so --resume finds it again
                config = config.model_copy(update={"data_path": str(Path(data).resolve())})
            run_dir = _new_run_dir(Path(runs_dir), name, default_name or target) if main_rank else None
            if run_dir is not None:
                held.enter_context(RunLock(run_dir))
        with tempfile.TemporaryDirectory() as scratch:
            return _train(task_cls, config, run_dir, Path(scratch), resume is not None, main_rank, quiet, t0)


def _train(task_cls, config, run_dir, scratch: Path, resume: bool, main_rank: bool, quiet: bool, t0: float):
    from ..training import Callback, NonFiniteError, Trainer, TrainingInterrupted, latest_checkpoint, seed_everything

    # A resumed run folder is left untouched until the data is read and the checkpoint loaded: the task's files
    # are prepared in scratch (and must equal the run's), log lines wait in memory until then.
    out_dir = run_dir if main_rank and not resume else scratch / "prepare"
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = _file_log(run_dir / "train.log" if main_rank else None, hold=resume)
    created = main_rank and not resume
    from_checkpoint = resume and latest_checkpoint(run_dir / "checkpoints") is not None

    class OpenLog(Callback):
        def on_fit_start(self, trainer) -> None:
            handler.open()

    try:
        if created:
            save_config_yaml(config, run_dir / "config.yaml")
        log.info("run folder %s", run_dir)
        if resume and not from_checkpoint:
            log.info("no checkpoint yet: training from the start")
        task = task_cls(config)
        dataset = task.prepare(out_dir)
        if resume and main_rank:
            _adopt_prepared(out_dir, run_dir)
        seed_everything(config.train.seed)  # the initial weights depend on the seed alone
        model = task.build_model()
        log.info("model %s: %s parameters", model.kind, f"{model.num_parameters():,}")
        trainer = Trainer(config.train, run_dir=run_dir, callbacks=[OpenLog()], quiet=quiet)
        ttask = task.trainer_task()
        result = trainer.fit(model, ttask, resume=from_checkpoint)
        created = False  # from here on the folder holds checkpoints worth keeping
        if main_rank and (run_dir / "best.safetensors").exists():
            import safetensors.torch

            safetensors.torch.load_model(model, str(run_dir / "best.safetensors"), device=str(trainer.device))
        trainer.world.broadcast(model)  # every rank evaluates rank 0's best weights
        calibration = task.calibrate(model, lambda split: trainer.evaluate(model, ttask, split))  # validation only
        test = trainer.evaluate(model, ttask, "test")
        log.info("test %s", " ".join(f"{k}={v:.4f}" for k, v in test.items()))
        if main_rank:
            _finish(run_dir, config, task, model, dataset, result, test, t0, calibration)
        return RunSummary(run_dir, test, result.best, time.perf_counter() - t0, result.history)
    except TrainingInterrupted as e:
        hint = f"; continue with: rnnkit train --resume {run_dir}" if e.checkpoint is not None else ""
        raise TrainingInterrupted(f"{e.message}{hint}", e.checkpoint, e.signal_name) from None
    except NonFiniteError as e:  # the folder stays: resume it with other settings (from the last checkpoint, if any)
        raise NonFiniteError(f"{e}; the run folder is kept: rnnkit train --resume {run_dir} --set ...") from None
    except BaseException:
        if created and not any((run_dir / "checkpoints").glob("step-*")):
            logging.getLogger("rnnkit").removeHandler(handler)
            handler.close()
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth resuming: leave no partial folder
        raise
    finally:
        logging.getLogger("rnnkit").removeHandler(handler)
        handler.close()


def _adopt_prepared(prepared: Path, run_dir: Path) -> None:
    """After a resumed run's data was prepared in scratch: its files (tokenizers, vocabularies) must equal the
    run's own, since the checkpoint was trained with those; a file the run lacks (a kill came first) is copied."""
    for p in sorted(prepared.iterdir()):
        if not p.is_file():
            continue
        mine = run_dir / p.name
        if not mine.exists():
            atomic_write_bytes(mine, p.read_bytes())
        elif sha256_file(mine) != sha256_file(p):
            raise RnnkitError(
                f"the data changed since this run started: {p.name} would differ from the run's own; "
                "resume with the data the run was started on (config.yaml data_path)",
                where=str(run_dir),
            )


def _finish(run_dir, config, task, model, dataset, result, test, t0, calibration) -> None:
    import safetensors.torch

    from ..plots import learning_curves

    device_model = model.to("cpu").eval()
    atomic_write_file(run_dir / "model.safetensors", lambda tmp: safetensors.torch.save_model(device_model, str(tmp)))
    task.write_predictions(device_model, run_dir)
    plots = [learning_curves(result.history, run_dir / "plots" / "learning_curves.png")] if result.history else []
    plots += task.plots(device_model, run_dir, {f"test_{k}": v for k, v in test.items()})
    meta = {
        "format_version": FORMAT_VERSION,
        "task": config.task,
        "seed": config.train.seed,  # also in config.yaml; here so that a reader of the results sees it at once
        "rnnkit_version": rnnkit.__version__,
        "model": {"kind": model.kind, "config": model.get_config()},
        "task_state": task.state(),
        "dataset": dataset,
        "metrics": {"test": test, "best_validation": result.best, "epochs": len(result.history)},
        "calibration": calibration,  # what TaskKind.calibrate chose on validation
        "train_seconds": round(time.perf_counter() - t0, 2),  # this process (a resumed run: since the resume)
        # every epoch's training + validation time, over all the processes that trained this run
        "epoch_seconds": round(sum(float(h.get("seconds", 0.0)) for h in result.history), 2),
        "plots": [str(p.relative_to(run_dir)) for p in plots],
        "files": {p.name: {"sha256": sha256_file(p)} for p in _checked_files(run_dir)},
    }
    atomic_write_json(run_dir / "meta.json", meta)  # last: its presence means the run is complete


#: top-level run files that are outputs or logs, not inputs of ``load_run``
UNCHECKED = ("meta.json", "train.log")


def _checked_files(run_dir: Path) -> list[Path]:
    """The run's own files that ``load_run`` reads: config.yaml, weights, tokenizers, vocabularies (every
    top-level file but :data:`UNCHECKED`, ``*.jsonl`` outputs and hidden files); meta.json records their SHA-256."""
    return sorted(
        p
        for p in run_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in UNCHECKED and p.suffix != ".jsonl"
    )


class _RunLog(logging.Handler):
    """``train.log``: appends each record; with ``hold``, records wait in memory until :meth:`open` (and are
    dropped if it never comes), so a resume that fails on bad input leaves the run folder as it was."""

    def __init__(self, path: Path | None, hold: bool) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.path = path
        self.file: logging.FileHandler | None = None
        self.held: list[logging.LogRecord] = []
        if not hold:
            self.open()

    def open(self) -> None:
        if self.file is not None or self.path is None:
            return
        self.file = logging.FileHandler(self.path, encoding="utf-8")
        self.file.setFormatter(self.formatter)
        for record in self.held:
            self.file.emit(record)
        self.held.clear()

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is not None:
            self.file.emit(record)
        elif self.path is not None:
            self.held.append(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.held.clear()
        super().close()


def _file_log(path: Path | None, hold: bool = False) -> _RunLog:
    handler = _RunLog(path, hold)
    logger = logging.getLogger("rnnkit")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


# -- using a run ----------------------------------------------------------------------------------------
#: model config keys that count modules (layers, ensemble members): each makes at least one tensor
COUNT_KEYS = ("num_layers", "size")
#: (task_state key, model config key): a label map and the output layer it names must have the same size
LABEL_FIELDS = (("labels", "num_classes"), ("tags", "num_tags"))


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Rebuild task preprocessing and model from a finished run folder (JSON + safetensors, no pickle).

    The folder is untrusted input (docs/reliability.md): :func:`rnnkit.runfolder.open_run` checks every file
    it names first (plain names, regular files inside it, SHA-256, size caps); the model config is checked
    against the weights' header on the ``meta`` device before a byte of the real model is allocated.
    """
    import safetensors.torch
    from safetensors import SafetensorError

    meta_path = Path(run_dir) / "meta.json"
    task_cls = get_task(read_meta(run_dir)["task"])
    meta = open_run(run_dir, task_cls.state_files).meta  # meta.json's fields, every listed file's SHA-256
    run_dir = Path(run_dir)
    weights = run_dir / "model.safetensors"
    saved = load_yaml(run_dir / "config.yaml")
    config = validate(task_cls.config_class, saved, str(run_dir / "config.yaml"))
    kind = meta["model"]["kind"]
    if kind not in MODEL_REGISTRY:
        raise RnnkitError(f"unknown model kind {short_repr(kind)}", where=str(meta_path))
    model_config = meta["model"]["config"]
    _check_model_fits_weights(kind, model_config, weights_header(weights), meta_path)
    _check_label_maps(meta["task_state"], model_config, meta_path)
    try:
        task = task_cls.from_run(config, run_dir, meta["task_state"])
        model = MODEL_REGISTRY[kind].from_config(model_config)
        safetensors.torch.load_model(model, str(weights), device=device)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, OSError, SafetensorError) as e:
        raise RnnkitError(
            f"the run's files do not fit together (model, task_state, weights): {one_line(e)}", where=str(run_dir)
        ) from None
    state_files = [meta["task_state"][k] for k in task_cls.state_files if k in meta["task_state"]]
    return LoadedRun(run_dir, meta, config, task, model.eval(), state_files)


def _config_items(value: Any, prefix: str, where: Path, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every (dotted field, value) of a nested config in ``where``, lists' items included (32 levels at most)."""
    if depth > 32:
        raise RnnkitError(f"{prefix}: nested more than 32 levels deep (damaged file)", where=str(where))
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            k = k if k.isidentifier() else short_repr(k, 40)  # a key from the file, shown on one line
            yield from _config_items(v, f"{prefix}.{k}", where, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _config_items(v, f"{prefix}[{i}]", where, depth + 1)


def _check_model_fits_weights(kind: str, config: dict, header: dict, meta_path: Path) -> None:
    """Refuse (one line, no big allocation) a model config that does not make the weights' tensors: counts
    of layers or members beyond what the weights could hold, then the model built on the ``meta`` device
    (no memory) compared tensor by tensor with the safetensors header."""
    import torch

    where = str(meta_path)
    n_tensors = len(header)
    held = sum(math.prod(shape) for _, shape in header.values())
    for name, value in _config_items(config, "model.config", meta_path):
        count = isinstance(value, int) and not isinstance(value, bool) and name.rsplit(".", 1)[-1] in COUNT_KEYS
        if count and value > n_tensors:
            raise RnnkitError(f"{name}={value} is more than the weights hold ({n_tensors} tensors)", where=where)
        if isinstance(value, list) and len(value) > n_tensors:
            raise RnnkitError(f"{name} has {len(value)} entries, more than the weights' {n_tensors} tensors", where)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > max(held, 1 << 20):
            raise RnnkitError(f"{name}={value} is larger than the weights ({held:,} values) could hold", where=where)
    try:
        with torch.device("meta"):
            skeleton = MODEL_REGISTRY[kind].from_config(config)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, OverflowError) as e:
        raise RnnkitError(f"model.config does not build a {kind} model: {one_line(e)}", where=where) from None
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    for name, (_, shape) in header.items():
        if name not in shapes:
            raise RnnkitError(f"model.config makes no tensor {short_repr(name)}, which the weights hold", where=where)
        if shapes[name] != shape:
            raise RnnkitError(
                f"model.config makes {name} of shape {list(shapes[name])}, the weights hold {list(shape)}", where=where
            )
    needed = sum(p.numel() for p in skeleton.parameters())  # tied weights counted once
    if needed > held:
        raise RnnkitError(f"model.config makes {needed:,} parameters, the weights hold {held:,}", where=where)


def _check_label_maps(state: dict, config: dict, meta_path: Path) -> None:
    """A label map in task_state names every output of the model's last layer (checked against the weights)."""
    for key, field_name in LABEL_FIELDS:
        names = state.get(key)
        sizes = {
            v for f, v in _config_items(config, "", meta_path) if f.rsplit(".", 1)[-1] == field_name and type(v) is int
        }
        if isinstance(names, list) and sizes and sizes != {len(names)}:
            n = sorted(sizes)[0]
            raise RnnkitError(
                f"task_state.{key} has {len(names)} entries, the model's output layer (model.config.{field_name}) "
                f"has {n}",
                where=str(meta_path),
            )


def predict(run_dir: str | Path, inputs: list[str], quantize: str | None = None) -> list[dict[str, Any]]:
    """``rnnkit predict``; ``quantize="int8"`` runs the int8 model (:func:`rnnkit.export.quantized_model`)."""
    run = load_run(run_dir)
    if not inputs:
        raise RnnkitError("no inputs to predict")
    model = run.model
    if quantize is not None:
        from ..export import QUANTIZE, quantized_model

        if quantize not in QUANTIZE:
            raise RnnkitError(f"unknown quantization {quantize!r}; known: {', '.join(QUANTIZE)}")
        model = quantized_model(run)
    return run.task.predict(model, inputs)


def generate(
    run_dir: str | Path,
    prompts: list[str] | tuple[str, ...] = (),
    options: GenerateOptions | dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """``rnnkit generate``: ``options.num_samples`` samples per prompt (no prompts: one from scratch, ``""``).

    ``options`` (a :class:`~rnnkit.tasks.base.GenerateOptions` or its dict) overrides the run's own settings;
    tasks whose samples are files write them under ``out_dir``. A task that does not generate is an error.
    """
    if isinstance(options, dict) or options is None:
        options = validate(GenerateOptions, options or {}, "generate options")
    run = load_run(run_dir)
    if not type(run.task).can_generate:
        raise RnnkitError(
            f"task {run.task.name!r} does not generate (rnnkit predict is what it offers)", where=str(run_dir)
        )
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    return run.task.generate_outputs(run.model, list(prompts) or [""], options, out_dir)


def evaluate(run_dir: str | Path, data: str | Path | None = None, quiet: bool = True) -> dict[str, float]:
    """Metrics of a finished run on its test split, or on the test split of another ``--data`` file.

    A run trained on the user's own file (``--data``) is evaluated only with ``data`` given: the path in its
    config.yaml is never read on the run folder's word (a shared folder could name any file); a run on a
    registry dataset reads that dataset from the cache as usual.
    """
    from ..training import Trainer

    run = load_run(run_dir)
    if data is None and run.config.data_path is not None:
        raise RnnkitError(
            f"this run was trained on {run.config.data_path} (config.yaml data_path); rnnkit evaluate does not "
            "read a file a run folder names: pass that file (or another) with --data",
            where=str(run_dir),
        )
    task = prepared_task(run, data=data)
    trainer = Trainer(run.config.train, quiet=quiet)
    run.model.to(trainer.device)
    return trainer.evaluate(run.model, task.trainer_task(), "test")


def prepared_task(run: LoadedRun, config: RecipeConfig | None = None, data: str | Path | None = None) -> TaskKind:
    """A new task for a loaded run, its splits read with the run's own vocabularies and label maps: from the
    run's data, or from ``data`` (another file in the task's format); ``config`` replaces the run's (e.g. other
    decoding settings) and must be of the same task."""
    task = type(run.task)(config if config is not None else run.config, data)
    _reuse_preprocessing(task, run)
    return task


def _reuse_preprocessing(task: TaskKind, run: LoadedRun) -> None:
    """Load the data with the run's own vocabularies (never refit them on evaluation data)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for k, v in vars(run.task).items():
            if k not in ("config", "data_path"):
                setattr(task, k, v)
        task.prepare(Path(tmp), reuse=True)
