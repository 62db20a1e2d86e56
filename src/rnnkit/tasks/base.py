"""Tasks: what binds a reader, a model, a loss, metrics, plots and a prediction format. No loop here.

A task kind (``text-classification``, ``tagging``, ``language-model``, ...) subclasses
:class:`TaskKind` and registers under its ``name``. A *recipe* is a YAML file in
``rnnkit/configs/`` that picks a task kind and sets its defaults for one dataset
(``sentiment`` = ``text-classification`` on ``rotten-tomatoes``).

Life of a task in ``rnnkit train``: ``TaskKind(config, data_path)`` -> :meth:`prepare` (read data, build
vocabularies, save them into the run folder) -> :meth:`build_model` -> the trainer runs
:meth:`trainer_task` -> :meth:`test_metrics`, :meth:`write_predictions`, :meth:`plots`.
In ``rnnkit predict``/``evaluate``: :meth:`from_run` rebuilds the preprocessing from the run folder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

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


class TaskKind:
    name: ClassVar[str] = ""
    config_class: ClassVar[type[RecipeConfig]]
    #: what ``rnnkit predict`` reads: a short phrase for --help
    input_help: ClassVar[str] = "inputs"
    #: JSON-able attributes set by :meth:`prepare` that :meth:`predict` needs; the default
    #: :meth:`state` / :meth:`from_run` save and restore exactly these
    state_keys: ClassVar[tuple[str, ...]] = ()
    #: the keys of :meth:`state` whose values name a file in the run folder (a tokenizer, a vocabulary):
    #: ``load_run`` checks each is a plain name with a SHA-256 in meta.json before :meth:`from_run` reads it
    state_files: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            TASKS[cls.name] = cls

    def __init__(self, config: RecipeConfig, data_path: str | Path | None = None) -> None:
        self.config = config
        path = data_path if data_path is not None else config.data_path
        self.data_path = Path(path) if path is not None else None

    # -- training ----------------------------------------------------------------------------------
    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        """Read the data, fit vocabularies on train, save them into ``run_dir``; return dataset info.

        With ``reuse``, the vocabularies already set on this task (from a run) encode the data as is.
        """
        raise NotImplementedError

    def build_model(self) -> Model:
        raise NotImplementedError

    def trainer_task(self) -> Task:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """JSON-able preprocessing state for ``meta.json`` (label maps, tokenizer file names, ...)."""
        return {k: getattr(self, k) for k in self.state_keys}

    def write_predictions(self, model: Model, run_dir: Path) -> None:
        """Predictions on the test split into ``run_dir`` (``predictions.jsonl``)."""

    def plots(self, model: Model, run_dir: Path, metrics: dict[str, float]) -> list[Path]:
        """Task-specific plots into ``run_dir/plots`` (confusion matrix, attention, ...)."""
        return []

    # -- using a run ---------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, config: RecipeConfig, run_dir: Path, state: dict[str, Any]) -> TaskKind:
        """Rebuild the preprocessing (vocabularies, label maps) from a finished run folder."""
        task = cls(config)
        for k in cls.state_keys:
            setattr(task, k, state[k])
        return task

    def predict(self, model: Model, inputs: list[str]) -> list[dict[str, Any]]:
        """One result dict per input, JSON-able."""
        raise NotImplementedError

    #: whether :meth:`generate_outputs` is implemented (``rnnkit generate``, the server's ``/generate``)
    can_generate: ClassVar[bool] = False

    def generate_outputs(
        self, model: Model, prompts: list[str], options: GenerateOptions, out_dir: Path | None = None
    ) -> list[dict[str, Any]]:
        """Generate ``options.num_samples`` samples per prompt (``""``: from scratch); one JSON-able dict each.

        Tasks whose samples are files (MIDI, PNG) write them under ``out_dir`` when given and list their
        paths in the dict under ``"files"``.
        """
        from ..errors import RnnkitError

        raise RnnkitError(f"task {self.name!r} does not generate (rnnkit predict is what it offers)")


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
