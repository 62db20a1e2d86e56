"""``rnnkit compare``: train a grid of settings over several seeds, then rank them on validation metrics.

A comparison is a folder ``<runs-dir>/<name>/`` (``name`` defaults to ``compare-<recipe>``) holding

* ``compare.json``: what was asked (recipe, ``--config``, ``--data``, ``--set``, the grid, the seeds);
* ``<setting>/seed-<N>/``: one ordinary run folder per setting and seed (``rnnkit predict`` / ``evaluate`` take
  each), where ``<setting>`` names the grid values, e.g. ``cell=gru,pooling=max``;
* ``results.md``, ``results.json``, ``results.png``: the table, written when every run has finished.

Running the same command again continues the comparison: finished runs (with ``meta.json``) are skipped, an
unfinished one is resumed from its last checkpoint (``rnnkit train --resume``), missing ones are trained. The
grid, recipe and settings must be those of the folder (another ``--name`` starts another comparison); the seeds
may change, e.g. ``--seeds 5`` after ``--seeds 3`` trains two more per setting.

Ranking uses the recipe's ``train.monitor`` (``train.monitor_mode``) on the validation split, at the epoch each
run kept. Test metrics are read from the same runs and shown beside, never used to rank or choose. The two best
settings are compared with Welch's t-test (SciPy) or, without SciPy, a bootstrap interval (:mod:`.stats`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RnnkitError, short_repr
from ..fileio import atomic_write_json, atomic_write_text
from ..runfolder import RunLock, check_run_name, read_meta
from ..tasks import runner
from . import stats

log = logging.getLogger("rnnkit")

#: the settings a grid may not vary: the seeds are ``--seeds``, the data ``--data``
RESERVED_KEYS = ("train.seed", "data_path", "task")
#: characters kept in a setting's folder name (others become ``_``)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


# -- what to train ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One ``KEY=V1,V2,...`` of ``--grid``: a dotted config key and its values (as written, parsed as YAML
    scalars by the config like ``--set`` values)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Setting:
    """One point of the grid: its folder name and the ``--set`` overrides that make it."""

    label: str
    overrides: tuple[str, ...]
    values: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """``["model.cell=lstm,gru", "model.pooling=max,attention"]`` -> the axes, in order.

    A one-line :class:`RnnkitError` for an item without ``=``, an empty or malformed key, an empty value
    (``lstm,,gru``), a value given twice, a key given twice, or a key a comparison sets itself (``train.seed``:
    use ``--seeds``)."""
    axes: list[Axis] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise RnnkitError(f"--grid expects KEY.PATH=V1,V2,... (e.g. model.cell=lstm,gru), got {short_repr(item)}")
        values = tuple(v.strip() for v in raw.split(","))
        if not raw.strip() or any(not v for v in values):
            raise RnnkitError(f"--grid {key}: empty value in {short_repr(raw)}; list values as V1,V2,...")
        if len(set(values)) != len(values):
            raise RnnkitError(f"--grid {key}: a value is listed twice in {short_repr(raw)}")
        if key in RESERVED_KEYS:
            raise RnnkitError(f"--grid {key}: not a grid key (seeds are --seeds, the data --data)")
        if any(a.key == key for a in axes):
            raise RnnkitError(f"--grid {key} is given twice; list all its values in one KEY=V1,V2,...")
        axes.append(Axis(key, values))
    return axes


def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``"0,5,9"`` -> ``[0, 5, 9]``. One-line error for anything else."""
    if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
        n = int(text)
        if n < 1:
            raise RnnkitError(f"--seeds {n}: give at least one seed")
        return list(range(n))
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if not all(re.fullmatch(r"-?\d+", p) for p in parts):
            raise RnnkitError(f"--seeds expects a count (3) or seeds (0,5,9), got {short_repr(text)}")
        seeds = [int(p) for p in parts]
    else:
        seeds = [int(s) for s in text]
    if not seeds or len(set(seeds)) != len(seeds):
        raise RnnkitError(f"--seeds {short_repr(text)}: give distinct seeds")
    return seeds


def grid_settings(axes: Sequence[Axis]) -> list[Setting]:
    """Every combination of the axes' values, the first axis slowest; no axes: one setting, ``default``.

    The label uses the last part of each key (``cell=gru,pooling=max``), or the whole key where two axes share
    a last part."""
    if not axes:
        return [Setting("default", ())]
    tails = [a.key.rsplit(".", 1)[-1] for a in axes]
    names = [t if tails.count(t) == 1 else a.key for a, t in zip(axes, tails, strict=True)]
    settings = []
    for combo in itertools.product(*(a.values for a in axes)):
        label = ",".join(f"{n}={v}" for n, v in zip(names, combo, strict=True))
        overrides = tuple(f"{a.key}={v}" for a, v in zip(axes, combo, strict=True))
        values = dict(zip((a.key for a in axes), combo, strict=True))
        settings.append(Setting(_UNSAFE.sub("_", label), overrides, values))
    labels = [s.label for s in settings]
    if len(set(labels)) != len(labels):
        raise RnnkitError("--grid values give two settings the same folder name; use plainer values")
    for s in settings:
        check_run_name(s.label)
    return settings


@dataclass(frozen=True)
class Plan:
    """What a comparison trains: the recipe and its inputs, the grid and the seeds."""

    target: str
    axes: tuple[Axis, ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2)
    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    data: str | None = None

    def spec(self) -> dict[str, Any]:
        """``compare.json`` without the seeds (which may change between invocations)."""
        return {
            "recipe": self.target,
            "config": self.config_file,
            "data": self.data,
            "set": list(self.overrides),
            "grid": [[a.key, list(a.values)] for a in self.axes],
        }

    def run_overrides(self, setting: Setting, seed: int) -> list[str]:
        return [*self.overrides, *setting.overrides, f"train.seed={seed}"]


@dataclass
class Job:
    """One run of a comparison: a setting, a seed and its folder."""

    setting: Setting
    seed: int
    path: Path

    @property
    def finished(self) -> bool:
        return (self.path / "meta.json").is_file()

    @property
    def started(self) -> bool:
        return (self.path / "config.yaml").is_file()


# -- running it -------------------------------------------------------------------------------------------
def compare(
    target: str,
    grid: Sequence[str] | Sequence[Axis] = (),
    *,
    seeds: str | int | Sequence[int] = 3,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    data: str | Path | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    jobs: int = 1,
    quiet: bool = False,
) -> dict[str, Any]:
    """Train every setting of ``grid`` with every seed (skipping finished runs, resuming unfinished ones), then
    write and return the results (``results.json``'s content; ``results["markdown"]`` is the table).

    ``jobs > 1`` trains that many runs at a time in separate processes, each with ``torch threads // jobs``
    threads. Bad input (grid, seeds, settings, a folder holding another comparison) is a one-line
    :class:`RnnkitError` before anything trains.
    """
    axes = tuple(parse_grid(grid) if grid and isinstance(next(iter(grid)), str) else grid)
    if data is not None and not Path(data).exists():
        raise RnnkitError("no such file or folder", where=str(data))
    config_path = str(Path(config_file).resolve()) if config_file is not None else None
    data_path = str(Path(data).resolve()) if data is not None else None
    plan = Plan(target, axes, tuple(parse_seeds(seeds)), config_path, tuple(overrides), data_path)
    if jobs < 1:
        raise RnnkitError(f"--jobs {jobs}: give at least 1")
    settings = grid_settings(axes)
    metric, mode = _check_settings(plan, settings)
    folder = Path(runs_dir) / check_run_name(name or f"compare-{target}")
    if folder.exists() and not folder.is_dir():
        raise RnnkitError("exists and is not a folder; give another --name", where=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    with RunLock(folder):
        _check_spec(folder, plan)
        todo = [Job(s, seed, folder / s.label / f"seed-{seed}") for s in settings for seed in plan.seeds]
        _train_all(plan, todo, jobs, quiet)
        results = collect(plan, settings, todo, metric, mode)
        results["folder"] = str(folder)
        write_results(folder, results)
    return results


def _check_settings(plan: Plan, settings: Sequence[Setting]) -> tuple[str, str]:
    """Resolve every setting's config now (a bad value fails before anything trains); the monitored metric
    and its mode, which must be the same for all."""
    monitors = set()
    for s in settings:
        try:
            _, config = runner.resolve_config(plan.target, plan.config_file, plan.run_overrides(s, plan.seeds[0]))
        except RnnkitError as e:
            raise RnnkitError(f"setting {s.label}: {e}") from None
        monitors.add((config.train.monitor, config.train.monitor_mode))
    if len(monitors) > 1:
        raise RnnkitError(f"--grid: the settings monitor different metrics {sorted(monitors)}; they cannot be ranked")
    return monitors.pop()


def _check_spec(folder: Path, plan: Plan) -> None:
    """A new comparison writes ``compare.json``; an existing one must hold the same recipe, settings and grid."""
    path = folder / "compare.json"
    spec = plan.spec()
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RnnkitError(f"cannot read: {e}", where=str(path)) from None
        old = {k: saved.get(k) for k in spec}
        if old != spec:
            differ = ", ".join(k for k in spec if old[k] != spec[k])
            raise RnnkitError(
                f"this folder holds another comparison (different {differ}); give another --name or the same "
                "command to continue it",
                where=str(folder),
            )
    elif any(not p.name.startswith(".") for p in folder.iterdir()):
        raise RnnkitError(
            "exists and is not a comparison folder (no compare.json); give another --name", where=str(folder)
        )
    atomic_write_json(path, {**spec, "seeds": list(plan.seeds)})


def _train_all(plan: Plan, jobs_todo: Sequence[Job], jobs: int, quiet: bool) -> None:
    done = [j for j in jobs_todo if j.finished]
    pending = [j for j in jobs_todo if not j.finished]
    for j in pending:
        _clear_empty(j.path)
    if done:
        log.info("%d of %d runs already finished: skipped", len(done), len(jobs_todo))
    if jobs == 1 or len(pending) <= 1:
        for i, job in enumerate(pending, 1):
            _announce(job, i, len(pending))
            train_job(plan, job, quiet)
        return
    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    log.info("training %d runs, %d at a time with %d threads each", len(pending), jobs, threads)
    # a fresh server process imports rnnkit once and forks the workers from it: no OpenMP state of this process
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["rnnkit.studies.compare"])
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_set_threads, initargs=(threads,))
    try:
        futures = [(job, pool.submit(_train_in_process, plan, job)) for job in pending]
        errors = []
        for i, (job, future) in enumerate(futures, 1):
            error = future.result()
            log.info("[%d/%d] %s seed %d: %s", i, len(futures), job.setting.label, job.seed, error or "finished")
            if error:
                errors.append(f"{job.path}: {error}")
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise RnnkitError(f"{errors[0]}{more}; fix it and run the same command again to continue")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _clear_empty(path: Path) -> None:
    """A run folder a kill left before its config.yaml was written holds nothing: remove it so it starts over."""
    if path.is_dir() and not (path / "config.yaml").exists():
        leftovers = [p for p in path.iterdir() if p.name not in (".lock", "train.log")]
        if leftovers:
            raise RnnkitError("is not a run folder (no config.yaml) but is not empty; move it away", where=str(path))
        for p in path.iterdir():
            p.unlink()
        path.rmdir()


def _announce(job: Job, i: int, n: int) -> None:
    how = "resuming" if job.started else "training"
    log.info("[%d/%d] %s seed %d: %s %s", i, n, job.setting.label, job.seed, how, job.path)


def train_job(plan: Plan, job: Job, quiet: bool = True) -> runner.RunSummary:
    """Train (or resume) one run of the comparison into ``job.path``."""
    if job.started:
        return runner.train(resume=job.path, quiet=quiet)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    return runner.train(
        plan.target, config_file=plan.config_file, overrides=plan.run_overrides(job.setting, job.seed),
        data=plan.data, runs_dir=job.path.parent, name=job.path.name, quiet=quiet,
    )  # fmt: skip


def _set_threads(threads: int) -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def _train_in_process(plan: Plan, job: Job) -> str | None:
    """A worker process's run: None when it finished, else the one-line reason (errors do not all pickle)."""
    try:
        train_job(plan, job, quiet=True)
    except (RnnkitError, KeyboardInterrupt) as e:  # TrainingInterrupted is a KeyboardInterrupt
        return str(e) or type(e).__name__
    return None


# -- the results ------------------------------------------------------------------------------------------
def _run_record(job: Job, metric: str) -> dict[str, Any]:
    meta = read_meta(job.path)
    metrics = meta.get("metrics") or {}
    best, test = metrics.get("best_validation") or {}, metrics.get("test") or {}
    if f"val_{metric}" not in best or metric not in test:
        raise RnnkitError(f"meta.json has no validation and test {metric!r}", where=str(job.path))
    epochs = int(metrics.get("epochs") or 0)
    return {
        "seed": job.seed,
        "run": str(job.path),
        "validation": float(best[f"val_{metric}"]),
        "test": float(test[metric]),
        "best_epoch": best.get("epoch"),
        "epochs": epochs,
        "seconds_per_epoch": float(meta.get("epoch_seconds", 0.0)) / max(epochs, 1),
        "validation_metrics": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
        "test_metrics": test,
    }


def collect(plan: Plan, settings: Sequence[Setting], jobs: Sequence[Job], metric: str, mode: str) -> dict[str, Any]:
    """Every setting's runs summarised and ranked by mean validation ``metric`` (best first); the statistical
    test between the best two; the markdown table."""
    rows = []
    for s in settings:
        runs = [_run_record(j, metric) for j in jobs if j.setting == s]
        model = runner.load_run(runs[0]["run"]).model
        rows.append({
            "setting": s.label,
            "values": s.values,
            "validation": stats.summarize([r["validation"] for r in runs]),
            "test": stats.summarize([r["test"] for r in runs]),
            "seeds": [r["seed"] for r in runs],
            "parameters": model.num_parameters(),
            "trainable_parameters": model.num_parameters(trainable_only=True),
            "seconds_per_epoch": stats.summarize([r["seconds_per_epoch"] for r in runs])["mean"],
            "runs": runs,
        })  # fmt: skip
    rows.sort(key=lambda r: r["validation"]["mean"], reverse=mode == "max")
    results: dict[str, Any] = {
        "recipe": plan.target,
        "metric": metric,
        "mode": mode,
        "ranked_by": "validation",
        "seeds": list(plan.seeds),
        "settings": rows,
        "test_between_best_two": None,
    }
    if len(rows) > 1:
        a, b = rows[0], rows[1]
        result = stats.compare_two([r["validation"] for r in a["runs"]], [r["validation"] for r in b["runs"]])
        result.update(first=a["setting"], second=b["setting"], split="validation")
        result["summary"] = stats.describe_test(result, a["setting"], b["setting"], f"validation {metric}")
        results["test_between_best_two"] = result
    results["markdown"] = markdown_table(results)
    return results


def _pm(s: dict[str, float]) -> str:
    return f"{s['mean']:.4f} ± {s['sd']:.4f}"


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a markdown table, best setting first, with the test between the best two below it."""
    m = results["metric"]
    lines = [
        f"Ranked by validation {m} ({results['mode']}imum is best; mean ± sd over seeds "
        f"{', '.join(map(str, results['seeds']))}). Test {m} is shown, never used to rank.",
        "",
        f"| rank | setting | validation {m} | min | max | test {m} | test min | test max | seeds | parameters "
        "| s/epoch |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for i, r in enumerate(results["settings"], 1):
        v, t = r["validation"], r["test"]
        params = f"{r['parameters']:,}"
        if r["trainable_parameters"] != r["parameters"]:
            params += f" ({r['trainable_parameters']:,} trained)"
        lines.append(
            f"| {i} | {r['setting']} | {_pm(v)} | {v['min']:.4f} | {v['max']:.4f} | {_pm(t)} | {t['min']:.4f} "
            f"| {t['max']:.4f} | {', '.join(map(str, r['seeds']))} | {params} | {r['seconds_per_epoch']:.2f} |"
        )
    test = results["test_between_best_two"]
    if test is not None:
        lines += ["", test["summary"]]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, results: dict[str, Any]) -> None:
    """``results.md``, ``results.json`` and ``results.png`` in the comparison's folder."""
    atomic_write_text(folder / "results.md", f"# {results['recipe']}: comparison\n\n{results['markdown']}")
    atomic_write_json(folder / "results.json", {k: v for k, v in results.items() if k != "markdown"})
    with contextlib.suppress(ImportError):  # matplotlib is a dependency; a broken install costs only the plot
        results_plot(results, folder / "results.png")


def results_plot(results: dict[str, Any], path: Path) -> Path:
    """Validation and test ``metric`` per setting: each seed a dot, the mean ± sd a bar; best setting on top."""
    from ..plots import _pyplot, _save

    plt = _pyplot()
    rows = results["settings"][::-1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.0 + 0.45 * len(rows)), sharey=True, squeeze=False)
    for ax, split in zip(axes[0], ("validation", "test"), strict=True):
        for y, r in enumerate(rows):
            ax.scatter([run[split] for run in r["runs"]], [y] * len(r["runs"]), s=14, alpha=0.6, color="tab:blue")
            ax.errorbar(r[split]["mean"], y, xerr=r[split]["sd"], fmt="o", color="black", capsize=3)
        ax.set_title(f"{split} {results['metric']}" + (" (ranks)" if split == "validation" else " (shown only)"))
        ax.grid(alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), [r["setting"] for r in rows])
    return _save(fig, path)
