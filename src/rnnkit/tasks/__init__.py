"""Tasks bind a reader, a model, a loss, metrics, plots and a prediction format (see :mod:`.base`).

Importing a task module registers its task kind.
"""

from . import forecasting, language_model, seq2seq, tagging, text_classification  # noqa: F401
from .base import TASKS, RecipeConfig, TaskKind, get_task

__all__ = ["TASKS", "RecipeConfig", "TaskKind", "get_task"]
