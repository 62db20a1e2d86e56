"""Tasks: what binds a reader, a model, a loss, metrics, plots and a prediction format. No loop here.

A task kind (``text-classification``, ``tagging``, ``language-model``, ...) subclasses
:class:`TaskKind` and registers under its ``name``. A *recipe* is a YAML file in
``rnnkit/configs/`` that picks a task kind and sets its defaults for one dataset
(``sentiment`` = ``text-classification`` on ``rotten-tomatoes``).

Life of a task in ``rnnkit train``: ``TaskKind(config, data_path)`` -> :meth:`prepare` (read data, build
vocabularies, save them into the run folder) -> :meth:`build_model` -> the trainer runs
:meth:`trainer_task` -> :meth:`calibrate` (on validation) -> the test split's metrics,
:meth:`write_predictions`, :meth:`plots`.
In ``rnnkit predict``/``evaluate``: :meth:`from_run` rebuilds the preprocessing from the run folder alone.
The contract (what is abstract, what is declared) is described in docs/architecture.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..config import StrictModel
from ..models.base import Model
from ..training import Task, TrainConfig

TASKS: dict[str, type[TaskKind]] = {}


class RecipeConfig(StrictModel):
    """Every task's config has these sections; tasks narrow ``data`` and ``model``."""

    task: str
    description: str = ""
    data_path: str | None = Field(None, description="the user's data (--data); null: the recipe's dataset")
    train: TrainConfig = Field(default_factory=TrainConfig)


class GenerateOptions(StrictModel):
    """What ``rnnkit generate`` and the server's ``/generate`` may set; ``None`` keeps the run's own setting."""

    max_tokens: int | None = Field(None, ge=1, le=100_000, description="tokens/events generated per sample")
    temperature: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="softmax temperature (sampling): finite, > 0"
    )
    top_k: int | None = Field(None, ge=0, description="sample among the k most likely (0: all)")
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False, description="nucleus sampling mass")
    beam_size: int | None = Field(None, ge=1, le=64, description="beam search instead of sampling, where supported")
    num_samples: int = Field(1, ge=1, le=100, description="samples per prompt")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="random seed (sampling), 0 to 2**63-1")


#: what a task's ``predict`` takes (:attr:`TaskKind.inputs`): ``text`` (strings), ``file`` (paths of text files:
#: CSV, ``.ts``), ``binary`` (paths of files that may be binary: images). The server writes uploaded files to a
#: private folder and passes those paths; it never passes a path a client names.
InputKind = Literal["text", "file", "binary"]


@dataclass(frozen=True)
class StateFile:
    """A preprocessing file in the run folder (a tokenizer, a vocabulary) that :meth:`TaskKind.prepare` wrote.

    ``task_state[key]`` records ``file``; :meth:`TaskKind.from_run` sets ``attr`` (or each of several attributes)
    to ``load(path)`` (a tuple for several). ``optional``: recorded only while the (first) attribute is not None;
    a run without it restores None."""

    attr: str | tuple[str, ...]
    file: str
    load: Callable[[Path], Any]
    optional: bool = False

    @property
    def attrs(self) -> tuple[str, ...]:
        return (self.attr,) if isinstance(self.attr, str) else self.attr


class TaskKind(ABC):
    """The contract of a task kind: subclass it, set :attr:`name` and :attr:`config_class`, implement the four
    abstract methods, and declare (class attributes) what it takes, saves and how it is shown. Everything
    outside ``rnnkit.tasks`` (the CLI, ``rnnkit serve``, ``rnnkit export``) reads these declarations and
    never compares task names."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[RecipeConfig]]
    #: what ``rnnkit predict`` reads: a short phrase for --help
    input_help: ClassVar[str] = "inputs"

    # -- what it takes and how the page shows it ------------------------------------------------------
    #: what :meth:`predict` takes (:data:`InputKind`); the default is the safe one for a server: uploaded files
    inputs: ClassVar[InputKind] = "binary"
    #: file name suffixes offered for file inputs (``(".csv",)``)
    accept: ClassVar[tuple[str, ...]] = ()
    #: the web page's form and rendering of /predict results (``rnnkit/serve/static/app.js``): classify-text,
    #: tag, transduce, continue, forecast, classify-files, caption, compose; anything else: a table of results
    view: ClassVar[str] = "files"
    #: whether :meth:`generate_outputs` is implemented (``rnnkit generate``, the server's ``/generate``)
    can_generate: ClassVar[bool] = False
    #: whether :meth:`generate_outputs` takes text prompts (the server offers ``/generate`` only then: a prompt
    #: that is a file path, as in captioning, is never opened on a client's word)
    text_prompts: ClassVar[bool] = False
    #: whether ``predict(model, inputs, saliency=True)`` adds gradient x input per token
    saliency: ClassVar[bool] = False

    # -- what it saves ----------------------------------------------------------------------------------
    #: JSON-able attributes set by :meth:`prepare` that :meth:`predict` needs; :meth:`state` records them in
    #: ``meta.json`` (``task_state``) and :meth:`from_run` restores them
    state_keys: ClassVar[tuple[str, ...]] = ()
    #: ``task_state`` key -> the file it names in the run folder (:class:`StateFile`): ``load_run`` checks each
    #: is a plain name with a SHA-256 in meta.json before :meth:`from_run` reads it
    state_files: ClassVar[dict[str, StateFile]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            TASKS[cls.name] = cls

    def __init__(self, config: RecipeConfig, data_path: str | Path | None = None) -> None:
        self.config = config
        path = data_path if data_path is not None else config.data_path
        self.data_path = Path(path) if path is not None else None

    # -- training ----------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        """Read the data, fit vocabularies on train, save them into ``run_dir``; return dataset info.

        With ``reuse``, the vocabularies already set on this task (from a run) encode the data as is.
        """

    @abstractmethod
    def build_model(self) -> Model:
        """The model, sized by what :meth:`prepare` found (vocabulary, labels)."""

    @abstractmethod
    def trainer_task(self) -> Task:
        """The trainer's view: batches, train and evaluation steps, metrics."""

    def calibrate(self, model: Model, evaluate: Callable[[str], dict[str, float]]) -> dict[str, float]:
        """After training, with the kept weights loaded and before the test split is touched: choose what depends
        on the trained model from the validation split only (a combination weight, say), set it on the task
        (:attr:`state_keys` / :meth:`recorded_state` keep it for ``predict``) and return it, for ``meta.json``
        (``"calibration"``). ``evaluate(split) -> metrics`` runs the trainer's evaluation of a split. Default:
        nothing to choose, ``{}``."""
        return {}

    def state(self) -> dict[str, Any]:
        """JSON-able preprocessing state for ``meta.json``: :attr:`state_keys`, :attr:`state_files`' names and
        :meth:`recorded_state`."""
        state = {k: getattr(self, k) for k in self.state_keys}
        for key, f in self.state_files.items():
            if not f.optional or getattr(self, f.attrs[0], None) is not None:
                state[key] = f.file
        return state | self.recorded_state()

    def recorded_state(self) -> dict[str, Any]:
        """Values recorded in ``task_state`` for the reader (settings the config also holds), not restored."""
        return {}

    def export_declaration(self) -> dict[str, Any]:
        """What ``rnnkit export`` needs to know of this run beyond its model, for a loaded run: ``with_level``
        (bool: the task feeds a many-series forecaster the level it computed, so the graph takes it as an input)
        and ``combine`` (a dict for the export description: what the task adds to the graph's output to make its
        own forecast, which a consumer must redo; absent when nothing). Default: ``{}``."""
        return {}

    def write_predictions(self, model: Model, run_dir: Path) -> None:  # noqa: B027 - optional
        """Predictions on the test split into ``run_dir`` (``predictions.jsonl``)."""

    def plots(self, model: Model, run_dir: Path, metrics: dict[str, float]) -> list[Path]:
        """Task-specific plots into ``run_dir/plots`` (confusion matrix, attention, ...)."""
        return []

    # -- using a run ---------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, config: RecipeConfig, run_dir: Path, state: dict[str, Any]) -> TaskKind:
        """Rebuild the preprocessing (vocabularies, label maps) from a finished run folder: :attr:`state_keys`
        and :attr:`state_files` (each read from the run folder), then :meth:`restored`."""
        task = cls(config)
        for k in cls.state_keys:
            setattr(task, k, state[k])
        for key, f in cls.state_files.items():
            if f.optional and key not in state:
                values: tuple[Any, ...] = (None,) * len(f.attrs)
            else:
                loaded = f.load(run_file(run_dir, state, key))
                values = (loaded,) if isinstance(f.attr, str) else tuple(loaded)
            for attr, value in zip(f.attrs, values, strict=True):
                setattr(task, attr, value)
        task.restored()
        return task

    def restored(self) -> None:  # noqa: B027 - optional
        """After :meth:`from_run` set the saved state: derive what follows from it (lookup tables)."""

    @abstractmethod
    def predict(self, model: Model, inputs: list[str]) -> list[dict[str, Any]]:
        """One result dict per input (per case for files holding several), JSON-able."""

    def generate_outputs(
        self, model: Model, prompts: list[str], options: GenerateOptions, out_dir: Path | None = None
    ) -> list[dict[str, Any]]:
        """Generate ``options.num_samples`` samples per prompt (``""``: from scratch); one JSON-able dict each.

        Tasks whose samples are files (MIDI, PNG) write them under ``out_dir`` when given and list their
        paths in the dict under ``"files"``.
        """
        from ..errors import RnnkitError

        raise RnnkitError(f"task {self.name!r} does not generate (rnnkit predict is what it offers)")

    # -- what the server shows ----------------------------------------------------------------------------
    def highlight(self, model: Model) -> Literal["attention", "saliency"] | None:
        """The token weights the page shows next to a text result (text classification), or None."""
        return None

    def file_result(self, path: Path) -> dict[str, Any]:
        """Fields the server adds to the result of one uploaded file (``path``: the server's private copy), for
        the page (a forecast's history)."""
        return {}


def run_file(run_dir: Path, state: dict[str, Any], key: str) -> Path:
    """The file ``state[key]`` names in ``run_dir``: a plain file name (``../x`` or ``/x`` is refused)."""
    from ..errors import RnnkitError
    from ..runfolder import is_plain_name

    name = state[key]
    if not is_plain_name(name):
        raise RnnkitError(f"task_state.{key}: {name!r} is not a plain file name inside the run folder")
    return Path(run_dir) / name


def get_task(name: str) -> type[TaskKind]:
    from ..errors import RnnkitError

    if name not in TASKS:
        raise RnnkitError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
