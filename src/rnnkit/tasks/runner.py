"""Train, evaluate and predict for any task: resolve the config, own the run folder, call the trainer.

Run folder (``runs/<name>/``, DESIGN.md): ``config.yaml`` (resolved), ``train.log``, ``metrics.jsonl``,
``checkpoints/``, then at the end ``model.safetensors`` (the best validation weights) + ``meta.json``,
``predictions.jsonl`` and ``plots/``. ``meta.json`` is written last: a folder without it is a run that
did not finish, which ``rnnkit train --resume`` continues and ``predict`` refuses. A new run never
reuses an existing folder; a run that fails before its first checkpoint removes its own folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

import rnnkit

from ..config import deep_merge, load_yaml, parse_overrides, validate
from ..errors import RnnkitError
from ..fileio import atomic_write_json, atomic_write_text, sha256_file
from ..models.base import MODEL_REGISTRY
from ..runfolder import check_run_name, next_free_name
from .base import TASKS, RecipeConfig, TaskKind, get_task

log = logging.getLogger("rnnkit")
FORMAT_VERSION = 1


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


def config_yaml(config: RecipeConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


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
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RnnkitError(f"{run_dir} is not a run folder (no config.yaml)")
        if (run_dir / "meta.json").exists():
            raise RnnkitError(f"{run_dir} already finished (meta.json exists); nothing to resume")
        saved = load_yaml(run_dir / "config.yaml")
        task_cls = get_task(str(saved.get("task")))
        config = validate(task_cls.config_class, deep_merge(saved, parse_overrides(overrides)), str(run_dir))
    else:
        if target is None:
            raise RnnkitError("give a recipe or task to train, or --resume RUN")
        task_cls, config = resolve_config(target, config_file, overrides)
        if data is not None and not Path(data).exists():
            raise RnnkitError("no such file or folder", where=str(data))
        if data is not None:  # recorded in config.yaml, so --resume and evaluate find it again
            config = config.model_copy(update={"data_path": str(Path(data).resolve())})
        run_dir = _new_run_dir(Path(runs_dir), name, default_name or target) if main_rank else None
    with tempfile.TemporaryDirectory() as scratch:
        return _train(task_cls, config, run_dir, Path(scratch), resume is not None, main_rank, quiet, t0)


def _train(task_cls, config, run_dir, scratch: Path, resume: bool, main_rank: bool, quiet: bool, t0: float):
    from ..training import Trainer, seed_everything

    out_dir = run_dir if main_rank else scratch  # where task files go (tokenizers, ...)
    handler = _file_log(out_dir / "train.log")
    created = main_rank and not resume
    try:
        if created:
            atomic_write_text(run_dir / "config.yaml", config_yaml(config))
        log.info("run folder %s", run_dir)
        task = task_cls(config)
        dataset = task.prepare(out_dir)
        seed_everything(config.train.seed)  # the initial weights depend on the seed alone
        model = task.build_model()
        log.info("model %s: %s parameters", model.kind, f"{model.num_parameters():,}")
        trainer = Trainer(config.train, run_dir=run_dir, quiet=quiet)
        ttask = task.trainer_task()
        result = trainer.fit(model, ttask, resume=resume)
        created = False  # from here on the folder holds checkpoints worth keeping
        if main_rank and (run_dir / "best.safetensors").exists():
            import safetensors.torch

            safetensors.torch.load_model(model, str(run_dir / "best.safetensors"), device=str(trainer.device))
        trainer.world.broadcast(model)  # every rank evaluates rank 0's best weights
        test = trainer.evaluate(model, ttask, "test")
        log.info("test %s", " ".join(f"{k}={v:.4f}" for k, v in test.items()))
        if main_rank:
            _finish(run_dir, config, task, model, dataset, result, test, t0)
        return RunSummary(run_dir, test, result.best, time.perf_counter() - t0, result.history)
    except BaseException:
        if created and not any((run_dir / "checkpoints").glob("step-*")):
            logging.getLogger("rnnkit").removeHandler(handler)
            handler.close()
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth resuming: leave no partial folder
        raise
    finally:
        logging.getLogger("rnnkit").removeHandler(handler)
        handler.close()


def _finish(run_dir, config, task, model, dataset, result, test, t0) -> None:
    import safetensors.torch

    from ..plots import learning_curves

    device_model = model.to("cpu").eval()
    tmp = run_dir / f".model.safetensors.tmp-{os.getpid()}"
    safetensors.torch.save_model(device_model, str(tmp))
    os.replace(tmp, run_dir / "model.safetensors")
    task.write_predictions(device_model, run_dir)
    plots = [learning_curves(result.history, run_dir / "plots" / "learning_curves.png")] if result.history else []
    plots += task.plots(device_model, run_dir, {f"test_{k}": v for k, v in test.items()})
    meta = {
        "format_version": FORMAT_VERSION,
        "task": config.task,
        "rnnkit_version": rnnkit.__version__,
        "model": {"kind": model.kind, "config": model.get_config()},
        "task_state": task.state(),
        "dataset": dataset,
        "metrics": {"test": test, "best_validation": result.best, "epochs": len(result.history)},
        "train_seconds": round(time.perf_counter() - t0, 2),
        "plots": [str(p.relative_to(run_dir)) for p in plots],
        "files": {"model.safetensors": {"sha256": sha256_file(run_dir / "model.safetensors")}},
    }
    atomic_write_json(run_dir / "meta.json", meta)  # last: its presence means the run is complete


def _file_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("rnnkit")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


# -- using a run ----------------------------------------------------------------------------------------
@dataclass
class LoadedRun:
    path: Path
    meta: dict[str, Any]
    config: RecipeConfig
    task: TaskKind
    model: Any


def load_run(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """Rebuild task preprocessing and model from a finished run folder (JSON + safetensors, no pickle)."""
    import safetensors.torch

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RnnkitError(f"no run folder {run_dir}")
    meta_path = run_dir / "meta.json"
    if not meta_path.exists():
        unfinished = (run_dir / "config.yaml").exists()
        hint = " (training did not finish; continue it with rnnkit train --resume)" if unfinished else ""
        raise RnnkitError(f"{run_dir} is not a finished run folder: no meta.json{hint}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise RnnkitError(f"invalid JSON: {e}", where=str(meta_path)) from None
    if meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version")
        raise RnnkitError(f"format_version {version!r} is not {FORMAT_VERSION}", where=str(meta_path))
    weights = run_dir / "model.safetensors"
    if not weights.is_file():
        raise RnnkitError("missing; the run folder is incomplete", where=str(weights))
    if sha256_file(weights) != meta["files"]["model.safetensors"]["sha256"]:
        raise RnnkitError("does not match the SHA-256 in meta.json (damaged or altered)", where=str(weights))
    task_cls = get_task(meta["task"])
    saved = load_yaml(run_dir / "config.yaml")
    config = validate(task_cls.config_class, saved, str(run_dir / "config.yaml"))
    task = task_cls.from_run(config, run_dir, meta["task_state"])
    kind = meta["model"]["kind"]
    if kind not in MODEL_REGISTRY:
        raise RnnkitError(f"unknown model kind {kind!r}", where=str(meta_path))
    model = MODEL_REGISTRY[kind].from_config(meta["model"]["config"])
    safetensors.torch.load_model(model, str(weights), device=device)
    return LoadedRun(run_dir, meta, config, task, model.eval())


def predict(run_dir: str | Path, inputs: list[str]) -> list[dict[str, Any]]:
    run = load_run(run_dir)
    if not inputs:
        raise RnnkitError("no inputs to predict")
    return run.task.predict(run.model, inputs)


def evaluate(run_dir: str | Path, data: str | Path | None = None, quiet: bool = True) -> dict[str, float]:
    """Metrics of a finished run on its test split, or on the test split of another ``--data`` file."""
    from ..training import Trainer

    run = load_run(run_dir)
    task = type(run.task)(run.config, data)
    _reuse_preprocessing(task, run)
    trainer = Trainer(run.config.train, quiet=quiet)
    run.model.to(trainer.device)
    return trainer.evaluate(run.model, task.trainer_task(), "test")


def _reuse_preprocessing(task: TaskKind, run: LoadedRun) -> None:
    """Load the data with the run's own vocabularies (never refit them on evaluation data)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for k, v in vars(run.task).items():
            if k not in ("config", "data_path"):
                setattr(task, k, v)
        task.prepare(Path(tmp), reuse=True)
