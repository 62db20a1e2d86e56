"""One trainer for every task: fit / evaluate / predict, checkpoints, progress, data parallelism."""

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .trainer import (
    Callback,
    FitResult,
    NonFiniteError,
    Task,
    TrainConfig,
    Trainer,
    TrainerState,
    TrainingInterrupted,
    detach,
    move,
    seed_everything,
)

__all__ = [
    "Callback",
    "FitResult",
    "NonFiniteError",
    "Task",
    "TrainConfig",
    "Trainer",
    "TrainerState",
    "TrainingInterrupted",
    "detach",
    "latest_checkpoint",
    "load_checkpoint",
    "move",
    "save_checkpoint",
    "seed_everything",
]
