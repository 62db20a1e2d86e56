"""Tasks bind a reader, a model, a loss, metrics, plots and a prediction format (see :mod:`.base`)."""

from . import text_classification  # noqa: F401  (registers the task kind)
from .base import TASKS, RecipeConfig, TaskKind, get_task

__all__ = ["TASKS", "RecipeConfig", "TaskKind", "get_task"]
