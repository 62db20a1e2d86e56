"""Time-series classification (many-to-one): a :class:`~rnnkit.models.Classifier` on real-valued multichannel
sequences (UCR/UEA problems: GunPoint, ItalyPowerDemand, BasicMotions, JapaneseVowels, ...).

Data: a registry dataset (``data.dataset``, e.g. ``GunPoint``) or the user's sktime ``.ts`` files with ``--data``:

* a folder holding one ``<Name>_TRAIN.ts`` and one ``<Name>_TEST.ts``, a path prefix ``.../<Name>`` of such a
  pair, or the ``<Name>_TRAIN.ts`` file itself when its ``_TEST.ts`` sibling exists: the official train/test
  split, validation = the train cases ``i`` (0-based, file order) with ``h(str(i)) % 10 == 1`` (the registry's
  rule, docs/datasets.md);
* any other single ``.ts`` file: case ``i % 10 == 0`` test, ``== 1`` validation, the rest train.

Cases may differ in length (``@equalLength false``, JapaneseVowels): batches are padded and the model reads each
case's real steps only (lengths). A missing value (``?`` or ``NaN``) is an error naming ``file:line`` -- there
is no fill rule; fill or drop such cases first. With ``data.normalize: channel`` every channel is standardised
with the mean and standard deviation of all train steps (train split only; a constant channel keeps std 1);
the statistics are saved in the run (``meta.json`` task state) and applied to ``evaluate`` and ``predict`` data.

Long series: ``data.downsample: k`` replaces every run of ``k`` steps by its mean (piecewise aggregate
approximation; a shorter last run is averaged over the steps it has), before standardisation, for every split
and for ``predict`` alike: OSULeaf's 427 steps become 107 with ``k = 4``, ACSF1's 1,460 become 92 with ``k = 16``.

Ensembles: ``model.ensemble: N`` trains N classifiers of the same architecture side by side on the same
batches, each from its own random initialisation (:class:`~rnnkit.models.ClassifierEnsemble`), and predicts
with the mean of their class probabilities. The members share no parameter; the training loss is the mean of
the members' own losses, while evaluation's ``loss`` is the cross-entropy of the averaged probabilities. It is
meant for the tiny UCR training sets (50-200 cases), where two trainings with the same settings gave 53.7% and
78.3% test accuracy on ArrowHead (docs/results.md). ``rnnkit export`` (and ``predict --quantize int8``) write the
whole ensemble as one graph.

Metrics: accuracy, macro-F1, loss; plots: the confusion matrix. ``predict`` takes ``.ts`` files (class labels
optional) and gives one ``{"input": "file:line", "label", "probability", "probabilities"}`` per case.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from ..config import StrictModel
from ..data import registry
from ..data.splits import text_hash
from ..data.textfile import reading
from ..data.ts_format import TsData, parse_ts
from ..errors import RnnkitError
from ..models import Classifier, ClassifierEnsemble
from ..models.base import eval_mode
from ..models.encoder import CellName
from ..training import Task
from .base import RecipeConfig
from .classification import ClassificationTask
from .common import batch_indices, classification_task, task_spec
from .image_classification import _label_order

log = logging.getLogger("rnnkit")

SPLITS = ("train", "validation", "test")


class SeriesDataConfig(StrictModel):
    dataset: str | None = Field(None, description="a UCR/UEA registry dataset (GunPoint, ...); ignored with --data")
    normalize: Literal["channel", "none"] = Field(
        "channel", description="channel: standardise each channel with train-split statistics; none: as is"
    )
    downsample: int = Field(1, ge=1, description="average each run of this many steps into one (long series)")


class SeriesModelConfig(StrictModel):
    cell: CellName = "gru"
    hidden_size: int = Field(64, gt=0)
    num_layers: int = Field(1, gt=0)
    bidirectional: bool = True
    dropout: float = Field(0.1, ge=0, lt=1, description="between layers (when several) and on pooled features")
    pooling: Literal["last", "mean", "max", "attention"] = "mean"
    head_hidden: list[int] = Field(default_factory=list)
    ensemble: int = Field(1, ge=1, le=64, description="classifiers trained side by side, probabilities averaged")


class SeriesClassificationConfig(RecipeConfig):
    task: Literal["series-classification"] = "series-classification"
    data: SeriesDataConfig = Field(default_factory=SeriesDataConfig)
    model: SeriesModelConfig = Field(default_factory=SeriesModelConfig)


# -- reading --------------------------------------------------------------------------------------------
def _data_lines(text: str) -> list[int]:
    """1-based line numbers of the cases after ``@data`` (the lines :func:`parse_ts` reads as cases)."""
    lines = text.splitlines()
    out, after = [], False
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not after:
            after = line.startswith("@") and line[1:].split()[0].lower() == "data"
            continue
        out.append(n)
    return out


def read_ts_file(path: Path, *, need_labels: bool = True) -> tuple[TsData, list[dict[str, Any]]]:
    """A ``.ts`` file -> its header and ``[{"series" (T, C) float32, "label" | None, "where" "file:line"}]``.

    Missing values and (with ``need_labels``) files without ``@classLabel true`` are one-line errors.
    """
    with reading(path):
        text = path.read_text(encoding="utf-8")
    ts = parse_ts(text, where=str(path))
    if ts.regression:
        raise RnnkitError(
            "a regression file (@targetLabel true); series-classification needs class labels", where=str(path)
        )
    if need_labels and not ts.labels:
        raise RnnkitError("no class labels (@classLabel true <labels>) to train or evaluate on", where=str(path))
    lines = _data_lines(text)
    assert len(lines) == len(ts.records)
    cases = [_case(r, f"{path}:{n}") for r, n in zip(ts.records, lines, strict=True)]
    return ts, cases


def _case(record: dict[str, Any], where: str) -> dict[str, Any]:
    """A parsed record -> ``{"series" (T, C) float32, "label", "where"}``; a missing value is an error."""
    series = record["series"]
    for c, channel in enumerate(series, 1):
        if any(v is None for v in channel):
            t = next(i for i, v in enumerate(channel) if v is None)
            raise RnnkitError(
                f"missing value ('?' or NaN) in channel {c} at step {t + 1}; fill or drop such cases first", where=where
            )
    return {"series": np.asarray(series, dtype=np.float32).T.copy(), "label": record.get("label"), "where": where}


def _resolve_pair(path: Path) -> tuple[Path, Path] | None:
    """``--data`` as a TRAIN/TEST pair (a folder, a ``<Name>`` prefix, or the ``_TRAIN.ts`` file), else None."""
    if path.is_dir():
        trains, tests = sorted(path.glob("*_TRAIN.ts")), sorted(path.glob("*_TEST.ts"))
        if len(trains) != 1 or len(tests) != 1:
            raise RnnkitError(
                f"expected one *_TRAIN.ts and one *_TEST.ts in the folder, found {[p.name for p in trains + tests]}",
                where=str(path),
            )
        return trains[0], tests[0]
    if path.name.endswith("_TRAIN.ts"):
        test = path.with_name(path.name[: -len("_TRAIN.ts")] + "_TEST.ts")
        return (path, test) if test.is_file() else None
    train, test = Path(f"{path}_TRAIN.ts"), Path(f"{path}_TEST.ts")
    if not path.exists() and (train.is_file() or test.is_file()):
        if not (train.is_file() and test.is_file()):
            raise RnnkitError(f"no such file: {train if not train.is_file() else test}", where=str(path))
        return train, test
    return None


def validation_from_train(train: list[Any]) -> tuple[list[Any], list[Any]]:
    """The registry's rule: train case ``i`` with ``h(str(i)) % 10 == 1`` goes to validation."""
    keep, validation = [], []
    for i, case in enumerate(train):
        (validation if text_hash(str(i)) % 10 == 1 else keep).append(case)
    return keep, validation


def downsample(series: np.ndarray, k: int) -> np.ndarray:
    """(T, C) -> (ceil(T / k), C): the mean of every run of ``k`` steps (the last run may be shorter)."""
    if k == 1:
        return series
    T = len(series)
    starts = np.arange(0, T, k)
    sums = np.add.reduceat(series.astype(np.float64), starts, axis=0)
    counts = np.minimum(starts + k, T) - starts
    return (sums / counts[:, None]).astype(np.float32)


def channel_statistics(train: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation over every step of the train cases (std 1 for a constant channel)."""
    steps = np.concatenate(train, axis=0).astype(np.float64)  # (sum T, C)
    mean, std = steps.mean(0), steps.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    return mean.tolist(), std.tolist()


def pad_series(series: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cases (T_i, C) -> zero-padded (N, T_max, C) float32 and lengths (N,)."""
    lengths = torch.tensor([len(s) for s in series], dtype=torch.long)
    x = torch.zeros(len(series), int(lengths.max()), series[0].shape[1])
    for i, s in enumerate(series):
        x[i, : len(s)] = torch.from_numpy(s)
    return x, lengths


# -- the task -------------------------------------------------------------------------------------------
class SeriesClassification(ClassificationTask):
    name = "series-classification"
    config_class = SeriesClassificationConfig
    state_keys = ("labels", "channels", "normalize", "mean", "std")
    input_help = ".ts files of series (class labels optional)"
    inputs = "file"
    accept = (".ts",)
    view = "classify-files"

    def _load(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
        """Cases of each split, and the dataset info."""
        d = self.config.data
        if self.data_path is not None:
            pair = _resolve_pair(self.data_path)
            if pair is not None:
                train = read_ts_file(pair[0])[1]
                test = read_ts_file(pair[1])[1]
                train, validation = validation_from_train(train)
                splits = {"train": train, "validation": validation, "test": test}
                info = {"source": f"{pair[0]} + {pair[1].name}", "split": "official; validation from train"}
            else:
                cases = read_ts_file(self.data_path)[1]
                splits = {s: [] for s in SPLITS}
                for i, c in enumerate(cases):
                    splits[{0: "test", 1: "validation"}.get(i % 10, "train")].append(c)
                info = {"source": str(self.data_path), "split": "case i % 10 == 0 test, == 1 validation, rest train"}
        elif d.dataset is not None:
            spec = task_spec(d.dataset, self.name)
            raw = registry.load_splits(spec.name)
            splits = {s: [_case(r, f"{spec.name} {s} case {i}") for i, r in enumerate(raw[s])] for s in SPLITS}
            info = {"name": spec.name, "source": f"{spec.client}:{spec.requirement}", "license": spec.license}
        else:
            raise RnnkitError(
                "no data: give --data (a folder with <Name>_TRAIN.ts and <Name>_TEST.ts, or a .ts file), "
                "or set data.dataset (e.g. GunPoint)"
            )
        for s in SPLITS:
            if not splits[s]:
                raise RnnkitError(f"the {s} split is empty (need more cases)", where=info["source"])
        info["sizes"] = {s: len(splits[s]) for s in SPLITS}
        return splits, info

    def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
        splits, info = self._load()
        source = info["source"]
        k = self.config.data.downsample
        for s in SPLITS:
            for c in splits[s]:
                c["series"] = downsample(c["series"], k)
        channels = {c["series"].shape[1] for s in SPLITS for c in splits[s]}
        if len(channels) > 1:
            raise RnnkitError(f"the cases have different channel counts {sorted(channels)}", where=source)
        n_channels = channels.pop()
        if reuse:
            if n_channels != self.channels:
                raise RnnkitError(
                    f"the cases have {n_channels} channel(s) but the model was trained on {self.channels}", where=source
                )
            unseen = {c["label"] for s in SPLITS for c in splits[s]} - set(self.labels)
            if unseen:
                raise RnnkitError(f"labels {sorted(unseen)} the model was not trained on", where=source)
        else:
            train_labels = {c["label"] for c in splits["train"]}
            unseen = {c["label"] for s in SPLITS for c in splits[s]} - train_labels
            if unseen:
                raise RnnkitError(f"labels {sorted(unseen)} appear only outside the train split", where=source)
            if len(train_labels) < 2:
                raise RnnkitError(f"need at least 2 labels, found {sorted(train_labels)}", where=source)
            self.labels = _label_order(train_labels)
            self.channels = n_channels
            self.normalize = self.config.data.normalize
            if self.normalize == "channel":
                self.mean, self.std = channel_statistics([c["series"] for c in splits["train"]])
            else:
                self.mean, self.std = [0.0] * n_channels, [1.0] * n_channels
        index = {name: i for i, name in enumerate(self.labels)}
        self.splits = {}
        for s, cases in splits.items():
            x, lengths = pad_series([self._standardize(c["series"]) for c in cases])
            self.splits[s] = {
                "x": x,
                "lengths": lengths,
                "y": torch.tensor([index[c["label"]] for c in cases], dtype=torch.long),
                "where": [c["where"] for c in cases],
            }
        steps = sorted({int(n) for s in SPLITS for n in self.splits[s]["lengths"]})
        length = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
        info["channels"], info["steps"] = n_channels, length
        log.info("data %s: %s, %d channel(s) x %s steps, labels %s", source, info["sizes"], n_channels, length,
                 self.labels)  # fmt: skip
        return info

    def _standardize(self, series: np.ndarray) -> np.ndarray:
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        return (series - mean) / std

    # -- model and training ---------------------------------------------------------------------------
    def build_model(self) -> Classifier | ClassifierEnsemble:
        m = self.config.model
        encoder = dict(
            input_size=self.channels,
            cell=m.cell,
            hidden_size=m.hidden_size,
            num_layers=m.num_layers,
            bidirectional=m.bidirectional,
            dropout=m.dropout if m.num_layers > 1 else 0.0,
        )
        member = dict(
            encoder=encoder,
            num_classes=len(self.labels),
            pooling=m.pooling,
            head_hidden=m.head_hidden,
            dropout=m.dropout,
        )
        if m.ensemble > 1:
            return ClassifierEnsemble(member=member, size=m.ensemble)
        return Classifier(member)

    def _batches(self, split: str, epoch: int):
        data = self.splits[split]
        t = self.config.train
        for idx in batch_indices(len(data["y"]), t.batch_size, t.seed, epoch, shuffle=split == "train"):
            lengths = data["lengths"][idx]
            yield {"x": data["x"][idx, : int(lengths.max())], "lengths": lengths, "y": data["y"][idx]}

    def trainer_task(self) -> Task:
        n = lambda split: len(self.splits[split]["y"])  # noqa: E731
        return classification_task(self._batches, len(self.labels), n, self.config.train.batch_size)

    # -- outputs ------------------------------------------------------------------------------------
    @torch.no_grad()
    def probability_batches(self, model: Classifier | ClassifierEnsemble, inputs: tuple[torch.Tensor, torch.Tensor]):
        x, lengths = inputs
        p = next(model.parameters())
        with eval_mode(model):
            for i in range(0, len(x), 256):
                n = lengths[i : i + 256]
                xb = x[i : i + 256, : int(n.max())].to(p.device, p.dtype)
                yield list(range(i, i + len(n))), model(xb, n.to(p.device)).float().softmax(-1).cpu()

    def held_out_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.splits["test"]["x"], self.splits["test"]["lengths"]

    def held_out_targets(self) -> list[int]:
        return self.splits["test"]["y"].tolist()

    def prediction_fields(self):
        return ({"case": i, "input": w} for i, w in enumerate(self.splits["test"]["where"]))

    def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
        cases: list[dict[str, Any]] = []
        for item in inputs:
            path = Path(item)
            for c in read_ts_file(path, need_labels=False)[1]:
                if c["series"].shape[1] != self.channels:
                    raise RnnkitError(
                        f"{c['series'].shape[1]} channel(s), but the model was trained on {self.channels}",
                        where=c["where"],
                    )
                cases.append(c)
        k = self.config.data.downsample
        x, lengths = pad_series([self._standardize(downsample(c["series"], k)) for c in cases])
        results = self.predicted(model, (x, lengths), len(cases))
        return [{"input": c["where"]} | r for c, r in zip(cases, results, strict=True)]
