"""``rnnkit tune``: hyperparameter search with Optuna on validation metrics, the test split left alone.

A search lives in ``<runs-dir>/<name>/`` (``name`` defaults to ``tune-<recipe>``):

* ``study.db``: the Optuna study in SQLite. Running the same command again continues it: ``--trials N`` is the
  number of finished trials (completed or pruned) the study should reach; a trial that a kill interrupted is
  marked failed and its parameters are tried again first.
* ``tune.json``: what was asked (recipe, ``--config``, ``--data``, ``--set``, the space), checked on every
  continuation, and the outcome (best trial, counts).
* ``best.yaml``: the best trial's whole resolved config, a recipe file for ``rnnkit train RECIPE --config``.
* with ``--final``: ``final-best/`` and ``final-defaults/``, two ordinary run folders (best config, recipe
  defaults), the only runs that evaluate the test split.

Each trial trains in memory (no run folder; the test split is never evaluated) with the recipe's seed, or with
each of ``seeds`` (``--seeds``), its value then the mean over them: one seed per trial favours the luckiest
seed as much as the best setting (a sentiment search's winner, 0.8275 against the defaults' 0.8203 on seed 0,
was 0.8178 against 0.8254 over five seeds; docs/results.md). With several seeds the pruner follows the first
seed's epochs, and ``--final`` trains every seed. The
sampler is Optuna's TPE, seeded by ``--seed``; a :class:`~rnnkit.training.Callback` reports the monitored
validation metric (``train.monitor``, ``train.monitor_mode``) after every epoch to a ``MedianPruner``, which
stops trials that fall behind the median of earlier trials at the same epoch, once two trials have finished and
the trial has trained ``prune_after`` epochs (default: a third of ``train.epochs``; the first epochs say little
about a trial whose learning rate is lower or whose schedule is longer: pruning after one epoch stopped every
third trial of a sentiment search that a later epoch would have kept in the race). A new study first tries the
recipe's own values when they lie inside the space, so the best trial is never worse than the defaults on
validation. A trial whose loss becomes NaN/Inf is a failed trial; the search goes on.

Search space (``--space`` items or a YAML mapping of the same strings; a YAML list is a ``choice``):
``int:LOW:HIGH[:STEP]``, ``logint:LOW:HIGH``, ``float:LOW:HIGH`` (or ``uniform``), ``loguniform:LOW:HIGH``,
``choice:A,B,C`` (values parsed like ``--set`` values).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import config_yaml, deep_merge, load_yaml, parse_overrides, set_dotted, validate
from ..errors import RnnkitError, short_repr
from ..fileio import atomic_write_json, atomic_write_text
from ..runfolder import RunLock, check_run_name, read_meta
from ..tasks import runner
from ..training import Callback, NonFiniteError, Trainer, seed_everything
from . import stats

log = logging.getLogger("rnnkit")

KINDS = ("int", "logint", "float", "uniform", "loguniform", "choice")
#: keys a search may not vary: the seeds are the study's (``--seeds``), the data ``--data``
RESERVED_KEYS = ("train.seed", "data_path", "task")


def require_optuna():
    """The ``optuna`` module, or a one-line error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise RnnkitError("rnnkit tune needs Optuna: pip install 'rnnkit[tune]'") from None
    return optuna


# -- the search space -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One hyperparameter: a dotted config key and its range (``int``/``float`` with ``low``, ``high``, ``log``,
    ``step``) or its ``choices``."""

    key: str
    kind: str  # "int" | "float" | "choice"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.step or 1, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether the search can propose ``value`` (for trying the recipe's defaults first)."""
        if self.kind == "choice":
            return value in self.choices and type(value) in {type(c) for c in self.choices}
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return False
        if self.kind == "int":
            return isinstance(value, int) and (value - int(self.low)) % (self.step or 1) == 0
        return True

    def describe(self) -> str:
        if self.kind == "choice":
            return f"choice:{','.join(map(str, self.choices))}"
        kind = ("log" if self.log else "") + ("int" if self.kind == "int" else "uniform" if self.log else "float")
        return f"{kind}:{self.low:g}:{self.high:g}" + (f":{self.step}" if self.step else "")


def _number(text: str, key: str, integer: bool) -> float:
    try:
        return int(text) if integer else float(text)
    except ValueError:
        what = "an integer" if integer else "a number"
        raise RnnkitError(f"--space {key}: expected {what}, got {short_repr(text)}") from None


def parse_dimension(key: str, spec: Any) -> Dimension:
    """``("model.hidden_size", "int:32:256")`` -> a :class:`Dimension`; a list is a choice. One-line errors."""
    if isinstance(spec, list):
        if not spec:
            raise RnnkitError(f"--space {key}: an empty list of choices")
        return _checked(Dimension(key, "choice", choices=tuple(spec)))
    if not isinstance(spec, str):
        raise RnnkitError(
            f"--space {key}: expected KIND:... (one of {', '.join(KINDS)}) or a list, got {short_repr(spec)}"
        )
    kind, _, rest = spec.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise RnnkitError(f"--space {key}: unknown kind {short_repr(kind)}; use one of {', '.join(KINDS)}")
    if kind == "choice":
        items = [v.strip() for v in rest.split(",")]
        if not rest.strip() or any(not v for v in items):
            raise RnnkitError(f"--space {key}: choice needs values, e.g. choice:lstm,gru")
        values = tuple(parse_overrides([f"v={v}"])["v"] for v in items)
        return _checked(Dimension(key, "choice", choices=values))
    parts = rest.split(":")
    integer = kind in ("int", "logint")
    if len(parts) not in ((2, 3) if kind == "int" else (2,)):
        form = "int:LOW:HIGH[:STEP]" if kind == "int" else f"{kind}:LOW:HIGH"
        raise RnnkitError(f"--space {key}: expected {form}, got {short_repr(spec)}")
    low, high = (_number(p.strip(), key, integer) for p in parts[:2])
    step = int(_number(parts[2].strip(), key, True)) if len(parts) == 3 else None
    log_scale = kind in ("logint", "loguniform")
    return _checked(Dimension(key, "int" if integer else "float", low, high, log_scale, step))


def _checked(d: Dimension) -> Dimension:
    if d.kind == "choice":
        if len(set(map(repr, d.choices))) != len(d.choices):
            raise RnnkitError(f"--space {d.key}: a choice is listed twice")
        if not all(c is None or isinstance(c, (str, int, float, bool)) for c in d.choices):
            raise RnnkitError(f"--space {d.key}: choices must be plain values (text, numbers, true/false)")
        return d
    if not d.low < d.high:
        raise RnnkitError(f"--space {d.key}: LOW must be below HIGH, got {d.low:g} and {d.high:g}")
    if d.log and d.low <= 0:
        raise RnnkitError(f"--space {d.key}: a log scale needs LOW > 0, got {d.low:g}")
    if d.step is not None and d.step < 1:
        raise RnnkitError(f"--space {d.key}: STEP must be a positive integer, got {d.step}")
    return d


def parse_space(items: Sequence[str] | Mapping[str, Any] | str | Path) -> list[Dimension]:
    """The search space from ``--space`` items (``KEY=KIND:...``), a mapping, or a YAML file of that mapping."""
    if isinstance(items, (str, Path)):
        raw = load_yaml(items)
        if not isinstance(raw, dict) or not raw:
            raise RnnkitError(
                "expected a mapping of KEY: KIND:... (e.g. train.lr: loguniform:1e-4:1e-2)", where=str(items)
            )
        entries = list(raw.items())
    elif isinstance(items, Mapping):
        entries = list(items.items())
    else:
        entries = []
        for item in items:
            key, sep, spec = item.partition("=")
            if not sep or not key.strip():
                raise RnnkitError(
                    f"--space expects KEY=KIND:... (e.g. train.lr=loguniform:1e-4:1e-2), got {short_repr(item)}"
                )
            entries.append((key.strip(), spec.strip()))
    dims = []
    for key, spec in entries:
        if not isinstance(key, str) or any(not p.isidentifier() for p in key.split(".")):
            raise RnnkitError(f"--space: {short_repr(key)} is not a dotted config key")
        if key in RESERVED_KEYS:
            raise RnnkitError(f"--space {key}: not searchable (the data is --data; compare seeds with rnnkit compare)")
        if any(d.key == key for d in dims):
            raise RnnkitError(f"--space {key} is given twice")
        dims.append(parse_dimension(key, spec))
    if not dims:
        raise RnnkitError("--space: give at least one KEY=KIND:... to search")
    return dims


# -- one trial --------------------------------------------------------------------------------------------
class ReportEpochs(Callback):
    """Reports the monitored validation metric to an Optuna trial after every epoch, and stops the trial (raises
    ``optuna.TrialPruned`` out of ``Trainer.fit``) when the pruner says so."""

    def __init__(self, trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def on_epoch_end(self, trainer, epoch: int, record: dict[str, Any]) -> None:
        value = record.get(f"val_{self.metric}")
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"{self.metric} {value:.4g} after epoch {epoch + 1}")


@dataclass(frozen=True)
class Search:
    """What a search tunes: the recipe and its inputs (as for ``rnnkit train``) and the space."""

    target: str
    space: tuple[Dimension, ...]
    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    data: str | None = None
    #: the seeds every trial trains with, its value their mean; empty: the recipe's ``train.seed`` alone
    seeds: tuple[int, ...] = ()

    def spec(self) -> dict[str, Any]:
        return {
            "recipe": self.target,
            "config": self.config_file,
            "data": self.data,
            "set": list(self.overrides),
            "space": {d.key: d.describe() for d in self.space},
            "seeds": list(self.seeds) or None,
        }

    def config(self, params: Mapping[str, Any]):
        """The task class and the validated config of ``params`` on top of the recipe, ``--config`` and ``--set``."""
        task_cls, config = runner.resolve_config(self.target, self.config_file, [*self.overrides])
        if params:
            data = deep_merge(config.model_dump(mode="json"), _nested(params))
            config = validate(
                task_cls.config_class, data, "--space values " + ", ".join(f"{k}={v}" for k, v in params.items())
            )
        if self.data is not None:
            config = config.model_copy(update={"data_path": self.data})
        return task_cls, config


def _nested(params: Mapping[str, Any]) -> dict:
    out: dict = {}
    for key, value in params.items():
        set_dotted(out, key, value)
    return out


@contextlib.contextmanager
def _only_warnings():
    """While a trial trains, the task's and the trainer's info lines (data, epochs) are dropped: a trial is one
    line of its own. Warnings pass."""

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def describe_params(params: Mapping[str, Any], sep: str = ", ") -> str:
    """``model.cell=gru, train.lr=0.005356``: a trial's values as the log, the summary and best.yaml show them."""
    return sep.join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def run_trial(
    search: Search, params: Mapping[str, Any], callbacks: Sequence[Callback] = (), seed: int | None = None
) -> dict[str, Any]:
    """Train ``params`` in memory (prepared data in a temporary folder, no run folder, no test split) with
    ``seed`` (default: the config's ``train.seed``); the best epoch's record (``val_*`` metrics) and the history."""
    task_cls, config = search.config(params)
    if seed is not None:
        config = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
    task = task_cls(config)
    with _only_warnings(), tempfile.TemporaryDirectory() as scratch:
        task.prepare(Path(scratch))
        seed_everything(config.train.seed)  # as rnnkit train: the initial weights depend on the seed alone
        model = task.build_model()
        result = Trainer(config.train, callbacks=callbacks, quiet=True).fit(model, task.trainer_task())
    if result.best is None:
        raise RnnkitError("a trial trained no epoch with a validation metric (train.epochs=0?)")
    return {"best": result.best, "history": result.history}


# -- the study --------------------------------------------------------------------------------------------
def tune(
    target: str,
    space: Sequence[str] | Mapping[str, Any] | str | Path,
    *,
    trials: int,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    data: str | Path | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    timeout: float | None = None,
    seed: int = 0,
    final: bool = False,
    quiet: bool = False,
    prune_after: int | None = None,
    seeds: str | int | Sequence[int] | None = None,
) -> dict[str, Any]:
    """Search ``space`` until the study holds ``trials`` finished trials (or ``timeout`` seconds pass: no new
    trial starts after it), write ``best.yaml`` and return the outcome (``tune.json``'s content). With ``final``,
    train the best config and the recipe defaults once each into run folders and add their test metrics.
    ``prune_after``: epochs a trial trains before the pruner may stop it (default: ``train.epochs // 3``, at
    least 1). ``seeds`` (``3`` -> 0, 1, 2, or ``"0,5,9"``): every trial trains each, its value their mean."""
    optuna = require_optuna()
    if trials < 1:
        raise RnnkitError(f"--trials {trials}: give at least 1")
    if prune_after is not None and prune_after < 1:
        raise RnnkitError(f"--prune-after {prune_after}: give at least 1 epoch")
    if data is not None and not Path(data).exists():
        raise RnnkitError("no such file or folder", where=str(data))
    config_path = str(Path(config_file).resolve()) if config_file is not None else None
    data_path = str(Path(data).resolve()) if data is not None else None
    from .compare import parse_seeds

    seed_list = tuple(parse_seeds(seeds)) if seeds is not None else ()
    search = Search(target, tuple(parse_space(space)), config_path, tuple(overrides), data_path, seed_list)
    _, base = search.config({})
    for d in search.space:  # every key and value of the space makes a valid config, before anything trains
        for value in d.choices or (d.low, d.high):
            search.config({d.key: int(value) if d.kind == "int" else value})
    metric, mode = base.train.monitor, base.train.monitor_mode
    if prune_after is None:
        prune_after = max(1, base.train.epochs // 3)
    folder = Path(runs_dir) / check_run_name(name or f"tune-{target}")
    if folder.exists() and not folder.is_dir():
        raise RnnkitError("exists and is not a folder; give another --name", where=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    with RunLock(folder):
        _check_spec(folder, search)
        study = open_study(optuna, folder / "study.db", mode, seed, prune_after)
        _recover(study, search, base)
        _optimize(study, search, metric, trials, timeout)
        outcome = _outcome(study, metric, mode)
        outcome["prune_after"] = prune_after
        outcome["best_config"] = str(write_best_config(search, folder, study.best_trial))
        if final:
            outcome["final"] = _final(search, folder, study.best_trial, metric, quiet)
        atomic_write_json(folder / "tune.json", {**search.spec(), **outcome})
    return outcome


def open_study(optuna, path: Path, mode: str, seed: int, prune_after: int = 1):
    """The study in ``path`` (SQLite; created if new), with a TPE sampler seeded by ``seed`` plus the number of
    trials already in it: a continued search draws new points instead of repeating its first ones, and the same
    command on the same history draws the same ones. Its median pruner waits for two finished trials, and for
    ``prune_after`` epochs of a trial (the epochs are reported as steps 0, 1, ...)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path.resolve()}"
    direction = "maximize" if mode == "max" else "minimize"
    known = optuna.create_study(study_name="rnnkit", storage=storage, load_if_exists=True, direction=direction)
    if known.direction != optuna.study.StudyDirection[direction.upper()]:
        raise RnnkitError(f"the study was made to {known.direction.name.lower()}, train.monitor_mode says {mode}",
                          where=str(path))  # fmt: skip
    return optuna.load_study(
        study_name="rnnkit", storage=storage, sampler=optuna.samplers.TPESampler(seed=seed + len(known.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=prune_after - 1),
    )  # fmt: skip


def _check_spec(folder: Path, search: Search) -> None:
    path = folder / "tune.json"
    spec = search.spec()
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RnnkitError(f"cannot read: {e}", where=str(path)) from None
        differ = [k for k in spec if saved.get(k) != spec[k]]
        if differ:
            raise RnnkitError(
                f"this folder holds another search (different {', '.join(differ)}); give another --name or the "
                "same command to continue it",
                where=str(folder),
            )
    elif any(not p.name.startswith(".") for p in folder.iterdir()):
        raise RnnkitError("exists and is not a search folder (no tune.json); give another --name", where=str(folder))
    else:
        atomic_write_json(path, spec)


def _recover(study, search: Search, base) -> None:
    """A new study tries the recipe's defaults first (when the space holds them); trials left RUNNING by a kill
    (the folder's lock says no other process runs this study) are marked failed and their parameters queued."""
    import optuna

    TrialState = optuna.trial.TrialState
    if not study.trials:
        defaults = {d.key: _get(base.model_dump(mode="json"), d.key) for d in search.space}
        if all(d.contains(defaults[d.key]) for d in search.space):
            study.enqueue_trial(defaults, user_attrs={"recipe_defaults": True})
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # Optuna's own stale-trial detection needs heartbeats; the lock already proves this trial is dead
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, user_attrs=dict(t.user_attrs))
        log.info("trial %d was interrupted: marked failed, its parameters are tried again", t.number)


def _get(tree: dict, key: str) -> Any:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RnnkitError(f"--space {key}: no such config field")
        node = node[part]
    return node


def _finished(study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def _optimize(study, search: Search, metric: str, trials: int, timeout: float | None) -> None:
    """Run trials until the study holds ``trials`` finished ones, the ``timeout`` passes, or a round of trials
    all failed."""
    import optuna

    todo = trials - _finished(study)
    if todo <= 0:
        log.info("the study already holds %d finished trials (--trials %d): nothing to train", _finished(study), trials)
        return

    def objective(trial) -> float:
        t0 = time.perf_counter()
        params = {d.key: d.suggest(trial) for d in search.space}
        log.info("trial %d: %s", trial.number, describe_params(params))
        outs = []
        try:  # the pruner follows the first seed's epochs; the others train to the end
            for i, seed in enumerate(search.seeds or (None,)):
                outs.append(run_trial(search, params, [ReportEpochs(trial, metric)] if i == 0 else [], seed=seed))
        except Exception as e:
            what = "pruned" if isinstance(e, optuna.TrialPruned) else f"failed: {e}"
            log.info("trial %d %s (%.0f s)", trial.number, what, time.perf_counter() - t0)
            raise
        values = [float(out["best"][f"val_{metric}"]) for out in outs]
        value = sum(values) / len(values)
        trial.set_user_attr("best_epoch", outs[0]["best"]["epoch"])
        trial.set_user_attr("epochs", len(outs[0]["history"]))
        if search.seeds:
            trial.set_user_attr("seed_values", dict(zip(map(str, search.seeds), values, strict=True)))
        log.info("trial %d: validation %s %.4f (%s, %.0f s)", trial.number, metric, value,
                 f"epoch {outs[0]['best']['epoch']}" if len(outs) == 1 else f"mean of {len(outs)} seeds",
                 time.perf_counter() - t0)  # fmt: skip
        return value

    # n_trials counts the trials this call starts; failed ones (NaN/Inf) do not count towards --trials, so loop
    deadline = None if timeout is None else time.monotonic() + timeout
    while (todo := trials - _finished(study)) > 0:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            log.info("--timeout reached with %d of %d trials finished", _finished(study), trials)
            break
        before = _finished(study)
        study.optimize(objective, n_trials=todo, timeout=left, catch=(NonFiniteError,), gc_after_trial=False)
        if _finished(study) == before:  # every trial of this round failed (NaN/Inf): stop rather than loop
            break


def _outcome(study, metric: str, mode: str) -> dict[str, Any]:
    """The best trial, the recipe defaults' trial, counts by state and the five best, from the study."""
    import optuna

    TrialState = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RnnkitError("no trial completed (all pruned or failed); widen the space or train longer")
    best = study.best_trial
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    defaults = [t for t in complete if t.user_attrs.get("recipe_defaults")]
    ranked = sorted(complete, key=lambda t: t.value, reverse=mode == "max")
    return {
        "metric": metric,
        "mode": mode,
        "split": "validation",
        "best": {"trial": best.number, "value": best.value, "params": best.params},
        "recipe_defaults": {"trial": defaults[0].number, "value": defaults[0].value} if defaults else None,
        "trials": {k: v for k, v in counts.items() if v},
        "top": [{"trial": t.number, "value": t.value, "params": t.params} for t in ranked[:5]],
    }


def write_best_config(search: Search, folder: Path, best) -> Path:
    """``best.yaml``: the best trial's resolved config (without ``data_path``: pass ``--data`` again), with a
    header saying how it was found and how to train it."""
    _, config = search.config(best.params)
    chosen = describe_params(best.params)
    description = f"{config.description} (rnnkit tune, trial {best.number}: {chosen})".strip()  # not the recipe's
    text = config_yaml(config.model_copy(update={"data_path": None, "description": description}))
    data = f" --data {search.data}" if search.data else ""
    keys = ", ".join(d.key for d in search.space)
    header = (
        f"# rnnkit tune: the best trial ({best.number}, validation {best.value:.6g}) of a search over {keys}\n"
        f"# on {search.target!r}. Train it with:\n"
        f"#   rnnkit train {search.target} --config {folder / 'best.yaml'}{data}\n"
    )
    return atomic_write_text(folder / "best.yaml", header + text)


def _final(search: Search, folder: Path, best, metric: str, quiet: bool) -> dict[str, Any]:
    """Train the best trial's config and the recipe defaults once each, into the run folders
    ``final-trial-<N>`` and ``final-defaults`` (a finished one is reused, an unfinished one resumed), and report
    their validation and test ``metric``: the only time a search looks at the test split. When the best trial is
    the recipe defaults, one run (``final-defaults``) answers for both. With the search's ``seeds``, each trains
    once per seed (``...-seed<S>`` folders) and the figures are means, with ``sd`` and the ``per_seed`` values."""
    out = {}
    same = bool(best.user_attrs.get("recipe_defaults"))
    labels = ["defaults"] if same else ["best", "defaults"]
    for label in labels:
        base = folder / ("final-defaults" if label == "defaults" else f"final-trial-{best.number}")
        config_file, overrides = (
            (folder / "best.yaml", ()) if label == "best" else (search.config_file, search.overrides)
        )
        runs = []
        for seed in search.seeds or (None,):
            path = base if seed is None else base.with_name(f"{base.name}-seed{seed}")
            if (path / "config.yaml").is_file() and not (path / "meta.json").is_file():
                runner.train(resume=path, quiet=quiet)
            elif not path.exists():
                runner.train(
                    search.target, config_file=config_file,
                    overrides=[*overrides, *([] if seed is None else [f"train.seed={seed}"])], data=search.data,
                    runs_dir=folder, name=path.name, quiet=quiet,
                )  # fmt: skip
            metrics = read_meta(path).get("metrics") or {}
            runs.append(
                {
                    "run": str(path),
                    "validation": (metrics.get("best_validation") or {}).get(f"val_{metric}"),
                    "test": (metrics.get("test") or {}).get(metric),
                }
            )
        if search.seeds:
            out[label] = {"runs": [r["run"] for r in runs], "seeds": list(search.seeds), "per_seed": runs}
            for key in ("validation", "test"):
                values = [r[key] for r in runs if r[key] is not None]
                summary = stats.summarize(values) if values else None
                out[label][key] = summary["mean"] if summary else None
                out[label][f"{key}_sd"] = summary["sd"] if summary and summary["n"] > 1 else None
        else:
            out[label] = runs[0]
    if same:
        out["best"] = {**out["defaults"], "same_as_defaults": True}
    return {"best": out["best"], "defaults": out["defaults"]}
