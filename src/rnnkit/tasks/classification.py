"""What the classification tasks (text, series, image) share: one of ``self.labels`` per example, class
probabilities computed in batches, ``predictions.jsonl`` and the confusion-matrix plot of the test split.

The test split's probabilities are computed once per model: :meth:`ClassificationTask.write_predictions` and
:meth:`ClassificationTask.plots` (which the runner calls in that order on the same model) share them.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..fileio import atomic_write_jsonl
from ..models.base import Model
from .base import TaskKind
from .common import confusion_matrix, label_probabilities


class ClassificationTask(TaskKind):
    """A task kind whose model gives class scores over ``self.labels`` (set by ``prepare``, saved in
    ``task_state``). Subclasses say how their inputs are batched (:meth:`probability_batches`), what the test
    split is (:meth:`held_out_inputs`, :meth:`held_out_targets`) and which fields lead each ``predictions.jsonl`` row
    (:meth:`prediction_fields`)."""

    labels: list[str]
    #: ``(model, probabilities)`` of the test split, while write_predictions and plots share them
    _test_outputs: tuple[Model, torch.Tensor] | None = None

    @abstractmethod
    def probability_batches(self, model: Model, inputs: Any) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Over ``inputs`` (the task's encoded examples): the example indices of each batch and their class
        probabilities (B, K), in float32 on the CPU."""

    @abstractmethod
    def held_out_inputs(self) -> Any:
        """The test split as :meth:`probability_batches` takes it."""

    @abstractmethod
    def held_out_targets(self) -> list[int]:
        """The test split's true label indices."""

    @abstractmethod
    def prediction_fields(self) -> Iterable[dict[str, Any]]:
        """Per test example, the fields that lead its ``predictions.jsonl`` row (its text, case or row)."""

    def probabilities(self, model: Model, inputs: Any, n: int) -> torch.Tensor:
        """Class probabilities (n, K) of ``n`` examples, in their order."""
        out = torch.empty(n, len(self.labels))
        for idx, probs in self.probability_batches(model, inputs):
            out[torch.as_tensor(idx, dtype=torch.long)] = probs
        return out

    def held_out_probabilities(self, model: Model) -> torch.Tensor:
        """The test split's class probabilities, computed once per model."""
        if self._test_outputs is None or self._test_outputs[0] is not model:
            probs = self.probabilities(model, self.held_out_inputs(), len(self.held_out_targets()))
            self._test_outputs = (model, probs)
        return self._test_outputs[1]

    def predicted(self, model: Model, inputs: Any, n: int) -> list[dict[str, Any]]:
        """``label``, ``probability``, ``probabilities`` per example (for :meth:`predict`)."""
        return [label_probabilities(p, self.labels) for p in self.probabilities(model, inputs, n).tolist()]

    def write_predictions(self, model: Model, run_dir: Path) -> None:
        conf, pred = self.held_out_probabilities(model).max(-1)
        rows = [
            lead | {"label": self.labels[y], "predicted": self.labels[p], "probability": round(c, 6)}
            for lead, y, p, c in zip(
                self.prediction_fields(), self.held_out_targets(), pred.tolist(), conf.tolist(), strict=True
            )
        ]
        atomic_write_jsonl(run_dir / "predictions.jsonl", rows)

    def plots(self, model: Model, run_dir: Path, metrics: dict[str, float]) -> list[Path]:
        from ..plots import confusion_matrix_plot

        pred = self.held_out_probabilities(model).argmax(-1).tolist()
        self._test_outputs = None  # the runner is done with them
        cm = confusion_matrix(zip(self.held_out_targets(), pred, strict=True), len(self.labels))
        paths = [confusion_matrix_plot(cm, self.labels, run_dir / "plots" / "confusion_matrix.png")]
        return paths + self.more_plots(run_dir, pred)

    def more_plots(self, run_dir: Path, predicted: list[int]) -> list[Path]:
        """Plots beyond the confusion matrix, from the test split's predicted label indices."""
        return []
