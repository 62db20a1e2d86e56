"""Tasks from Python: ``rnnkit.train`` on in-memory data, ``rnnkit.load``, and the :class:`Run` they return.

``train(recipe_or_task, data=..., overrides={"train.epochs": 3}, runs_dir="runs", name=None)`` is
``rnnkit train`` (the same config resolution, run folder and trainer). ``data`` is what ``--data`` takes — a
path — or the same data in memory, which is written to a temporary file in the format the task reads (so the
one reader, split rule and vocabulary code run, and the same data gives the same metrics from the CLI and from
Python with the same seed):

===========================  ============================================================================
task kind                    in-memory ``data``
===========================  ============================================================================
``text-classification``      ``(text, label)`` pairs, ``{"text", "label"}`` dicts, or a DataFrame with
                             ``data.text_column`` / ``data.label_column`` columns
``series-classification``    ``(series, label)`` pairs, each series ``(T_i, C)`` or ``(T_i,)``
``tagging``                  sentences, each a list of ``(token, tag)`` pairs
``seq2seq``                  ``(source, target)`` string pairs
``language-model``           a string, or a list of lines
``forecasting``              a DataFrame (time column, value column, covariates: ``data.*_column``), or a
                             1-D sequence of values (a ``t,value`` file is written)
===========================  ============================================================================

The temporary file is deleted when training ends; ``config.yaml`` still names it, so ``rnnkit train
--resume`` and ``rnnkit evaluate`` of such a run need the data given again (``Run.evaluate(data)``;
``Run.evaluate()`` on the :class:`Run` ``train`` returned reuses the data it was given).

:func:`run_writer` is how :meth:`rnnkit.models.Model.save` writes a run folder for a model trained with
``fit``: a :class:`~rnnkit.models.Classifier` (or ensemble) on real-valued features becomes a
``series-classification`` run, which ``rnnkit predict`` answers for ``.ts`` files.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rnnkit

from .errors import RnnkitError

__all__ = ["Run", "load", "run_writer", "train"]


# -- in-memory data -> the file the task reads ------------------------------------------------------------
def _rows(data: Any, what: str) -> list:
    if isinstance(data, (str, bytes, Path)):
        raise RnnkitError(f"data: expected {what} in memory (or a path), got a {type(data).__name__}")
    try:
        return list(data)
    except TypeError:
        raise RnnkitError(f"data: expected {what}, got {type(data).__name__}") from None


def _is_frame(data: Any) -> bool:
    return hasattr(data, "to_dict") and hasattr(data, "columns")


def _clean(value: Any, where: str, name: str) -> str:
    text = str(value)
    if any(c in text for c in "\t\n\r"):
        raise RnnkitError(f"{name} holds a tab or a line break, which the file format cannot carry", where=where)
    return text


def _text_classification(data: Any, config: Any, folder: Path) -> Path:
    d = config.data
    tc, lc = d.text_column, d.label_column
    if _is_frame(data):
        missing = [c for c in (tc, lc) if c not in data.columns]
        if missing:
            raise RnnkitError(f"data: the DataFrame has no column {missing[0]!r} (columns: {list(data.columns)})")
        rows = data[[tc, lc]].to_dict("records")
    else:
        rows = []
        for i, r in enumerate(_rows(data, "(text, label) pairs")):
            if isinstance(r, Mapping):
                rows.append({tc: r.get(tc), lc: r.get(lc)})
            elif isinstance(r, (tuple, list)) and len(r) == 2:
                rows.append({tc: r[0], lc: r[1]})
            else:
                raise RnnkitError(f"data[{i}]: expected a (text, label) pair, got {type(r).__name__}")
    path = folder / "data.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:  # labels as the CSV reader gives them: strings
            f.write(json.dumps({tc: r[tc], lc: None if r[lc] is None else str(r[lc])}, ensure_ascii=False) + "\n")
    return path


def _tagging(data: Any, config: Any, folder: Path) -> Path:
    path = folder / "data.conll"
    with open(path, "w", encoding="utf-8") as f:
        for i, sentence in enumerate(_rows(data, "tagged sentences")):
            pairs = _rows(sentence, f"data[{i}]: a list of (token, tag) pairs")
            if not pairs:
                raise RnnkitError(f"data[{i}]: an empty sentence")
            for j, pair in enumerate(pairs):
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise RnnkitError(f"data[{i}][{j}]: expected a (token, tag) pair, got {pair!r:.60}")
                token, tag = (_clean(v, f"data[{i}][{j}]", "a token or tag") for v in pair)
                if not token.strip() or not tag.strip() or " " in token or " " in tag:
                    raise RnnkitError(f"data[{i}][{j}]: tokens and tags must be non-empty and without spaces")
                f.write(f"{token}\t{tag}\n")
            f.write("\n")
    return path


def _seq2seq(data: Any, config: Any, folder: Path) -> Path:
    path = folder / "data.tsv"
    with open(path, "w", encoding="utf-8") as f:
        for i, pair in enumerate(_rows(data, "(source, target) pairs")):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise RnnkitError(f"data[{i}]: expected a (source, target) pair, got {type(pair).__name__}")
            source, target = (_clean(v, f"data[{i}]", "a source or target") for v in pair)
            f.write(f"{source}\t{target}\n")
    return path


def _language_model(data: Any, config: Any, folder: Path) -> Path:
    lines = [str(s) for s in _rows(data, "a list of lines")]
    path = folder / "data.txt"
    path.write_text(
        "\n".join(lines) + "\n", encoding=config.data.encoding if hasattr(config.data, "encoding") else "utf-8"
    )
    return path


def _forecasting(data: Any, config: Any, folder: Path) -> Path:
    path = folder / "data.csv"
    if _is_frame(data):
        data.to_csv(path, index=False)
        return path
    values = _rows(data, "a DataFrame or a sequence of values")
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "value"])
        for i, v in enumerate(values):
            try:
                w.writerow([i, float(v)])
            except (TypeError, ValueError):
                raise RnnkitError(f"data[{i}]: expected a number, got {v!r:.40}") from None
    return path


def _series(value: Any, where: str):
    import numpy as np

    try:
        s = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RnnkitError(f"{where}: expected a series of numbers (T, C) or (T,)") from None
    s = s[:, None] if s.ndim == 1 else s
    if s.ndim != 2 or len(s) == 0:
        raise RnnkitError(f"{where}: expected a series (T, C) or (T,), got shape {s.shape}")
    if not np.isfinite(s).all():
        raise RnnkitError(f"{where}: the series holds NaN or infinite values")
    return s


def _write_ts(cases: list[tuple[Any, str | None]], path: Path, name: str) -> Path:
    """``(series (T, C), label or None)`` cases -> a ``.ts`` file (with ``@classLabel true`` when labelled)."""
    if not cases:
        raise RnnkitError(f"{name}: no cases")
    channels = {s.shape[1] for s, _ in cases}
    if len(channels) > 1:
        raise RnnkitError(f"{name}: the series have different channel counts {sorted(channels)}")
    labels = sorted({lab for _, lab in cases if lab is not None})
    if any(" " in lab or ":" in lab or not lab for lab in labels):
        raise RnnkitError(f"{name}: labels must be non-empty, without spaces or ':' (the .ts format)")
    C = channels.pop()
    header = f"true {' '.join(labels)}" if labels else "false"
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"@problemName data\n@univariate {'true' if C == 1 else 'false'}\n@dimensions {C}\n")
        f.write(f"@equalLength false\n@classLabel {header}\n@data\n")
        for s, lab in cases:
            values = ":".join(",".join(repr(float(v)) for v in s[:, c]) for c in range(C))
            f.write(values + (f":{lab}" if lab is not None else "") + "\n")
    return path


def _series_classification(data: Any, config: Any, folder: Path) -> Path:
    cases = []
    for i, pair in enumerate(_rows(data, "(series, label) pairs")):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise RnnkitError(f"data[{i}]: expected a (series, label) pair, got {type(pair).__name__}")
        cases.append((_series(pair[0], f"data[{i}]"), _clean(pair[1], f"data[{i}]", "a label")))
    return _write_ts(cases, folder / "data.ts", "data")


def _series_inputs(items: list, config: Any, folder: Path) -> list[Path]:
    """``Run.predict``'s in-memory series (each (T, C) or (T,)) -> one unlabelled ``.ts`` file."""
    cases = [(_series(s, f"inputs[{i}]"), None) for i, s in enumerate(items)]
    return [_write_ts(cases, folder / "inputs.ts", "inputs")]


def _forecast_inputs(items: list, config: Any, folder: Path) -> list[Path]:
    """``Run.predict``'s in-memory histories (DataFrames or sequences of values) -> one CSV each."""
    paths = []
    for i, item in enumerate(items):
        (folder / str(i)).mkdir()
        paths.append(_forecasting(item, config, folder / str(i)))
    return paths


#: task kind -> how its in-memory data becomes the file its reader takes. A task kind may instead define
#: ``write_data(data, config, folder) -> Path`` itself, which is used first.
DATA_WRITERS: dict[str, Callable[[Any, Any, Path], Path]] = {
    "text-classification": _text_classification,
    "series-classification": _series_classification,
    "tagging": _tagging,
    "seq2seq": _seq2seq,
    "language-model": _language_model,
    "forecasting": _forecasting,
}


#: task kind -> how ``Run.predict``'s in-memory inputs become the files its ``predict`` reads (tasks whose
#: ``inputs`` are files); each in-memory input gives one result, in order
INPUT_WRITERS: dict[str, Callable[[list, Any, Path], list[Path]]] = {
    "series-classification": _series_inputs,
    "forecasting": _forecast_inputs,
}


def write_data(task_cls: type, config: Any, data: Any, folder: Path) -> Path:
    """In-memory ``data`` for task kind ``task_cls`` -> a file in ``folder`` in the format its reader takes."""
    own = getattr(task_cls, "write_data", None)
    writer = own if own is not None else DATA_WRITERS.get(task_cls.name)
    if writer is None:
        known = ", ".join(sorted(DATA_WRITERS))
        raise RnnkitError(f"task {task_cls.name!r} takes its data as a path (data='FILE'); in memory: {known}")
    return writer(data, config, folder)


def _overrides(overrides: Mapping[str, Any] | list[str] | tuple[str, ...] | None) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):  # values as YAML (JSON is YAML), parsed back by --set's parser
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return list(overrides)


# -- runs -------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A finished run folder: what :func:`train` returns and :func:`load` gives back.

    ``path`` the run folder, ``metrics`` the test metrics, ``history`` one dict per epoch (``metrics.jsonl``),
    ``best`` the best validation epoch's record, ``meta`` its ``meta.json``.
    """

    path: Path
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    _data: Any = field(default=None, repr=False)  # the in-memory data train was given (for evaluate())
    _loaded: Any = field(default=None, repr=False)

    @property
    def task(self) -> str:
        """The task kind's name."""
        return str(self.meta.get("task", ""))

    @property
    def loaded(self):
        """The run loaded as ``rnnkit predict`` loads it (:class:`rnnkit.runfolder.LoadedRun`: config, task, model)."""
        if self._loaded is None:
            from .tasks.runner import load_run

            self._loaded = load_run(self.path)
        return self._loaded

    @property
    def model(self):
        """The trained model (best validation weights), in eval mode."""
        return self.loaded.model

    def predict(self, inputs: Any, quantize: str | None = None) -> list[dict[str, Any]]:
        """``rnnkit predict``: one dict per input. Texts, or paths of files for tasks that read files; those
        tasks also take in-memory inputs (``series-classification``: series (T, C) or (T,);
        ``forecasting``: histories as DataFrames or sequences of values), answered in order, each
        result's ``input`` then being ``inputs[i]``."""
        from .tasks.runner import predict

        items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        in_memory = [not isinstance(i, (str, Path)) for i in items]
        if not any(in_memory):
            return predict(self.path, [str(i) for i in items], quantize=quantize)
        loaded = self.loaded
        writer = INPUT_WRITERS.get(type(loaded.task).name) if type(loaded.task).inputs == "file" else None
        if writer is None:
            what = "strings" if type(loaded.task).inputs == "text" else "paths of files"
            known = " and ".join(sorted(INPUT_WRITERS))
            raise RnnkitError(f"inputs: a {self.task} run predicts {what} (in-memory inputs: {known} runs)")
        if not all(in_memory):
            raise RnnkitError("inputs: give paths of files or in-memory inputs, not both in one call")
        with tempfile.TemporaryDirectory(prefix="rnnkit-inputs-") as tmp:
            results = predict(self.path, [str(p) for p in writer(items, loaded.config, Path(tmp))], quantize)
        if len(results) != len(items):
            raise RnnkitError(f"inputs: {len(items)} in-memory inputs gave {len(results)} results")
        return [r | {"input": f"inputs[{i}]"} for i, r in enumerate(results)]

    def evaluate(self, data: Any = None) -> dict[str, float]:
        """Test-split metrics on ``data`` (a path, or in-memory data as :func:`train` takes it); without
        ``data``, on the data ``train`` was given (a loaded run trained on a registry dataset reads it again)."""
        from .tasks.runner import evaluate

        data = self._data if data is None else data
        if data is None or isinstance(data, (str, Path)):
            return evaluate(self.path, data)
        with tempfile.TemporaryDirectory() as tmp:
            loaded = self.loaded
            return evaluate(self.path, write_data(type(loaded.task), loaded.config, data, Path(tmp)))

    def generate(self, prompts: Any = (), **options: Any) -> list[dict[str, Any]]:
        """``rnnkit generate`` (tasks that generate): ``options`` are :class:`~rnnkit.tasks.base.GenerateOptions`
        (``max_tokens``, ``temperature``, ``top_k``, ``top_p``, ``beam_size``, ``num_samples``, ``seed``) and
        ``out_dir`` for tasks whose samples are files."""
        from .tasks.runner import generate

        out_dir = options.pop("out_dir", None)
        items = [prompts] if isinstance(prompts, str) else list(prompts)
        return generate(self.path, items, options, out_dir)


def train(
    recipe_or_task: str,
    data: Any = None,
    *,
    overrides: Mapping[str, Any] | list[str] | None = None,
    runs_dir: str | Path = "runs",
    name: str | None = None,
    config_file: str | Path | None = None,
    quiet: bool = True,
) -> Run:
    """``rnnkit train`` from Python; returns the finished :class:`Run`.

    ``recipe_or_task`` a recipe (``sentiment``) or a task kind (``text-classification``); ``data`` a path (what
    ``--data`` takes) or in-memory data (module docstring); ``overrides`` ``--set``'s dotted keys, as a dict
    (``{"train.epochs": 3}``) or ``["train.epochs=3"]``; ``runs_dir`` and ``name`` as ``--runs-dir`` and
    ``--name``.
    """
    from .tasks.runner import resolve_config
    from .tasks.runner import train as run_train

    sets = _overrides(overrides)
    if isinstance(data, str) and ("\n" in data or len(data) > 4096):
        raise RnnkitError("data: a string is a path to a data file; give text in memory as a list of lines")
    with tempfile.TemporaryDirectory(prefix="rnnkit-data-") as scratch:
        path = data
        if data is not None and not isinstance(data, (str, Path)):
            task_cls, config = resolve_config(recipe_or_task, config_file, sets)
            path = write_data(task_cls, config, data, Path(scratch))
        summary = run_train(
            recipe_or_task, config_file=config_file, overrides=sets, data=path, runs_dir=runs_dir, name=name,
            quiet=quiet,
        )  # fmt: skip
    run = load(summary.path)
    run.history, run.best = summary.history, summary.best
    run._data = data
    return run


def load(path: str | Path) -> Run:
    """A finished run folder (from ``rnnkit train``, :func:`train` or ``model.save``), checked as ``rnnkit
    predict`` checks it."""
    from .tasks.runner import load_run

    loaded = load_run(path)
    meta = loaded.meta
    history: list[dict[str, Any]] = []
    metrics_file = Path(path) / "metrics.jsonl"
    if metrics_file.is_file():
        for line in metrics_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    history.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # an output, not an input: a damaged line ends the history
    metrics = meta.get("metrics", {})
    return Run(
        path=Path(path),
        metrics=dict(metrics.get("test") or {}),
        history=history,
        best=metrics.get("best_validation"),
        meta=meta,
        _loaded=loaded,
    )


# -- model.save -> a run folder ---------------------------------------------------------------------------
def run_writer(model: Any) -> Callable[[Any, Path], Path] | None:
    """How :meth:`~rnnkit.models.Model.save` writes ``model`` as a run folder, or None where no task kind serves
    it (then ``save`` writes a model folder)."""
    from .models import Classifier, ClassifierEnsemble

    if isinstance(model, (Classifier, ClassifierEnsemble)):
        member = model.config.member if isinstance(model, ClassifierEnsemble) else model.config
        if member.num_classes is not None and member.encoder.input_size is not None:
            return _save_series_run
    return None


def _save_series_run(model: Any, path: Path) -> Path:
    """A classifier on real-valued features -> a ``series-classification`` run folder (``rnnkit predict RUN
    cases.ts``). The features are taken as given (``data.normalize: none``): the ``.ts`` files predicted must
    hold the same features, scaled the same way."""
    import safetensors.torch

    from .config import save_config_yaml, validate
    from .fileio import atomic_write_file, atomic_write_json, sha256_file
    from .models import ClassifierEnsemble
    from .runfolder import FORMAT_VERSION
    from .tasks.runner import _checked_files
    from .tasks.series_classification import SeriesClassification

    member = model.config.member if isinstance(model, ClassifierEnsemble) else model.config
    enc, K = member.encoder, member.num_classes
    labels = [str(v) for v in model.labels] if model.labels is not None else [str(i) for i in range(K)]
    if len(labels) < K:
        labels += [f"class{i}" for i in range(len(labels), K)]
    if len(set(labels)) != K or any(" " in v or ":" in v or not v for v in labels):
        raise ValueError(f"labels {labels}: a run folder needs {K} distinct labels without spaces or ':'")
    hidden = enc.hidden_size if isinstance(enc.hidden_size, int) else enc.hidden_size[-1]
    section = {
        "task": "series-classification",
        "description": f"a {type(model).__name__} trained with fit() and saved with save()",
        "data": {"normalize": "none"},
        "model": {
            "cell": enc.cell, "hidden_size": hidden, "num_layers": enc.num_layers, "bidirectional": enc.bidirectional,
            "pooling": member.pooling, "head_hidden": member.head_hidden, "dropout": member.dropout,
            "ensemble": model.config.size if isinstance(model, ClassifierEnsemble) else 1,
        },
    }  # fmt: skip
    config = validate(SeriesClassification.config_class, section, "model.save")
    task = SeriesClassification(config)
    task.labels, task.channels, task.normalize = labels, enc.input_size, "none"
    task.mean, task.std = [0.0] * enc.input_size, [1.0] * enc.input_size
    path.mkdir(parents=True, exist_ok=True)
    cpu = model.to("cpu").eval()
    save_config_yaml(config, path / "config.yaml")
    atomic_write_file(path / "model.safetensors", lambda tmp: safetensors.torch.save_model(cpu, str(tmp)))
    meta = {
        "format_version": FORMAT_VERSION,
        "task": config.task,
        "rnnkit_version": rnnkit.__version__,
        "model": {"kind": model.kind, "config": model.get_config()},
        "task_state": task.state(),
        "dataset": {"source": "in-memory data (Model.fit)"},
        "metrics": {"test": {}, "best_validation": None, "epochs": 0},
        "train_seconds": 0.0,
        "epoch_seconds": 0.0,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "plots": [],
        "files": {p.name: {"sha256": sha256_file(p)} for p in _checked_files(path)},
    }
    atomic_write_json(path / "meta.json", meta)  # last: its presence means the folder is complete
    return path
