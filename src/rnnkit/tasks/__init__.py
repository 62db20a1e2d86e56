"""Tasks bind a reader, a model, a loss, metrics, plots and a prediction format (see :mod:`.base`).

Importing a task module registers its task kind.
"""

from . import (  # noqa: F401
    captioning,
    forecasting,
    image_classification,
    language_model,
    music,
    seq2seq,
    series_classification,
    tagging,
    text_classification,
)
from .base import TASKS, RecipeConfig, TaskKind, get_task

__all__ = ["TASKS", "RecipeConfig", "TaskKind", "get_task"]
