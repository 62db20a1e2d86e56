"""The task contract (:class:`rnnkit.tasks.base.TaskKind`): a toy task defined here, through the contract
only, trains, predicts from its run folder and is served; nothing outside ``rnnkit.tasks`` compares task
names; datasets name the task kinds they feed."""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import random
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from pydantic import Field

import rnnkit
from rnnkit.config import StrictModel
from rnnkit.data import registry
from rnnkit.errors import RnnkitError
from rnnkit.models import MLP
from rnnkit.tasks import TASKS, RecipeConfig, TaskKind
from rnnkit.tasks.base import StateFile
from rnnkit.tasks.common import batch_indices, classification_task, label_probabilities
from rnnkit.tasks.runner import load_run, predict, train

SRC = Path(rnnkit.__file__).parent


# -- a toy task: is the sum of three numbers positive? ----------------------------------------------------
def write_rows(path: Path, n: int = 80, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "label"])
        for _ in range(n):
            xs = [round(rng.uniform(-5, 5), 2) for _ in range(3)]
            w.writerow([*xs, "pos" if sum(xs) > 0 else "neg"])
    return path


def read_rows(path: Path) -> tuple[list[list[float]], list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise RnnkitError("no rows", where=str(path))
    return [[float(r[k]) for k in "abc"] for r in rows], [r["label"] for r in rows]


@pytest.fixture
def toy_task():
    """The task class, registered while the test runs (TASKS is global) and unregistered after."""

    class ToyModel(StrictModel):
        hidden: int = Field(8, gt=0)

    class ToyConfig(RecipeConfig):
        task: Literal["sum-sign"] = "sum-sign"
        model: ToyModel = Field(default_factory=ToyModel)

    class SumSign(TaskKind):
        name = "sum-sign"
        config_class = ToyConfig
        input_help = "three numbers separated by spaces"
        inputs = "text"
        view = "classify-text"
        state_keys = ("labels",)
        state_files = {"scale": StateFile("scale", "scale.json", lambda p: json.loads(p.read_text()))}

        def prepare(self, run_dir: Path, reuse: bool = False) -> dict[str, Any]:
            x, labels = read_rows(self.data_path)
            if not reuse:
                self.labels = sorted(set(labels))
                self.scale = max(abs(v) for row in x for v in row)
                (run_dir / "scale.json").write_text(json.dumps(self.scale))
            y = [self.labels.index(lab) for lab in labels]
            split = ["test" if i % 10 == 0 else "validation" if i % 10 == 1 else "train" for i in range(len(x))]
            self.splits = {
                s: {
                    "x": torch.tensor([r for r, t in zip(x, split, strict=True) if t == s]) / self.scale,
                    "y": torch.tensor([v for v, t in zip(y, split, strict=True) if t == s]),
                }
                for s in ("train", "validation", "test")
            }
            return {"source": str(self.data_path), "sizes": {s: len(d["y"]) for s, d in self.splits.items()}}

        def build_model(self) -> MLP:
            return MLP(input_size=3, hidden_sizes=[self.config.model.hidden], num_classes=len(self.labels))

        def trainer_task(self):
            t = self.config.train

            def batches(split, epoch):
                d = self.splits[split]
                for idx in batch_indices(len(d["y"]), t.batch_size, t.seed, epoch, shuffle=split == "train"):
                    yield {"x": d["x"][idx], "y": d["y"][idx]}

            return classification_task(batches, len(self.labels), lambda s: len(self.splits[s]["y"]), t.batch_size)

        def predict(self, model, inputs: list[str]) -> list[dict[str, Any]]:
            try:
                x = torch.tensor([[float(v) for v in text.split()] for text in inputs]) / self.scale
            except ValueError as e:
                raise RnnkitError(f"expected three numbers: {e}") from None
            with torch.no_grad():
                probs = model(x).softmax(-1).tolist()
            return [{"text": t} | label_probabilities(p, self.labels) for t, p in zip(inputs, probs, strict=True)]

    assert "sum-sign" in TASKS  # registered by subclassing
    yield SumSign
    del TASKS["sum-sign"]


def test_a_toy_task_trains_predicts_and_is_served(toy_task, tmp_path):
    from fastapi.testclient import TestClient

    from rnnkit.serve.app import create_app

    data = write_rows(tmp_path / "sums.csv")
    settings = ["train.epochs=30", "train.batch_size=16", "train.lr=0.05", "train.device=cpu"]
    summary = train("sum-sign", data=data, runs_dir=tmp_path / "runs", name="toy", quiet=True, overrides=settings)
    assert summary.metrics["accuracy"] >= 0.75  # 8 test rows: a learnable rule, learned
    meta = json.loads((summary.path / "meta.json").read_text())
    assert meta["task"] == "sum-sign" and meta["task_state"]["labels"] == ["neg", "pos"]
    assert meta["task_state"]["scale"] == "scale.json" and "scale.json" in meta["files"]  # checked on load

    run = load_run(summary.path)
    assert isinstance(run.task, toy_task) and 4 < run.task.scale <= 5  # restored from scale.json
    (big,) = predict(summary.path, ["4 4 4"])
    (small,) = predict(summary.path, ["-4 -4 -4"])
    assert big["label"] == "pos" and small["label"] == "neg"

    with TestClient(create_app(run)) as c:
        info = c.get("/info").json()
        assert info["task"] == "sum-sign" and info["labels"] == ["neg", "pos"]
        assert info["page"] == {"view": "classify-text", "input": "text", "binary": False, "accept": "",
                                "highlight": None, "generate": False}  # fmt: skip
        r = c.post("/predict", json={"inputs": ["4 4 4", "-4 -4 -4"]})
        assert r.status_code == 200, r.text
        assert [x["label"] for x in r.json()["results"]] == ["pos", "neg"]
        bad = c.post("/predict", json={"inputs": ["four"]})
        assert bad.status_code == 422 and "expected three numbers" in bad.json()["error"]
        assert c.post("/predict", json={"inputs": ["1 1 1"], "saliency": True}).status_code == 422  # not declared


def test_a_task_state_file_is_checked_like_any_run_file(toy_task, tmp_path):
    summary = train("sum-sign", data=write_rows(tmp_path / "sums.csv"), runs_dir=tmp_path / "runs", quiet=True,
                    overrides=["train.epochs=1", "train.device=cpu"])  # fmt: skip
    (summary.path / "scale.json").write_text("1000.0")
    with pytest.raises(RnnkitError, match="SHA-256"):
        load_run(summary.path)


def test_an_undeclared_task_is_served_uploaded_files_only():
    from rnnkit.serve.app import Kind

    class Bare(TaskKind):  # no name: not registered
        def prepare(self, run_dir, reuse=False):
            return {}

        def build_model(self):
            raise NotImplementedError

        def trainer_task(self):
            raise NotImplementedError

        def predict(self, model, inputs):
            return []

    kind = Kind.of(Bare)
    assert kind.files and kind.binary and kind.view == "files" and not kind.generate and not kind.saliency


def test_the_contract_is_abstract():
    class Half(TaskKind):  # no name: not registered
        def prepare(self, run_dir, reuse=False):
            return {}

    with pytest.raises(TypeError, match="abstract"):
        Half(RecipeConfig(task="half"))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_declares_what_it_takes(name):
    cls = TASKS[name]
    assert cls.inputs in ("text", "file", "binary") and cls.view and cls.input_help != "inputs"
    assert all(s.startswith(".") for s in cls.accept) and (cls.inputs != "text" or not cls.accept)
    assert not cls.text_prompts or cls.can_generate
    for key, f in cls.state_files.items():
        assert isinstance(f, StateFile) and key not in cls.state_keys and "/" not in f.file


# -- nothing outside the tasks compares task names ------------------------------------------------------
def name_comparisons(source: str) -> list[int]:
    """Lines of ``source`` that compare something's ``.name`` with a task name, or a task's ``.name`` with
    anything (``task.name == "forecasting"``, ``task.name in TEXT_PROMPTS``)."""
    task_names = set(TASKS)
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names_a_task = any(isinstance(o, ast.Constant) and o.value in task_names for o in operands)
        task_name = any(
            isinstance(o, ast.Attribute) and o.attr == "name" and "task" in ast.unparse(o.value).lower()
            for o in operands
        )
        if names_a_task or task_name:
            lines.append(node.lineno)
    return lines


def test_the_name_check_finds_comparisons():
    assert name_comparisons('if task.name == "forecasting":\n    pass\n') == [1]
    assert name_comparisons("ok = run.task.name in TEXT_PROMPTS\n") == [1]
    assert name_comparisons('ok = kind == "tagging"\n') == [1]
    assert name_comparisons("ok = task.inputs == 'text'\n") == []


@pytest.mark.parametrize("package", ["serve", "export", "cli"])
def test_serve_export_and_cli_read_declarations_not_names(package):
    found = {
        str(path.relative_to(SRC)): lines
        for path in sorted((SRC / package).rglob("*.py"))
        if (lines := name_comparisons(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"compare task names (declare it on the task instead): {found}"


# -- datasets name the task kinds they feed ------------------------------------------------------------
def test_every_dataset_feeds_registered_tasks():
    for name, spec in registry.REGISTRY.items():
        assert spec.tasks and set(spec.tasks) <= set(TASKS), (name, spec.tasks)
        assert spec.task == ", ".join(spec.tasks)


def test_a_dataset_without_tasks_is_refused():
    with pytest.raises(ValueError, match="tasks must name the task kinds"):
        dataclasses.replace(registry.REGISTRY["ptb"], tasks=())


@pytest.mark.parametrize(
    "task, other", [("text-classification", "ptb"), ("series-classification", "brown-pos"), ("forecasting", "GunPoint")]
)
def test_a_task_reads_only_a_dataset_that_feeds_it(task, other, tmp_path, monkeypatch):
    from rnnkit.tasks.runner import resolve_config

    monkeypatch.setattr(registry, "load_splits", lambda name: pytest.fail(f"{name} was read"))  # refused before
    task_cls, config = resolve_config(task, overrides=[f"data.dataset={other}"])
    known = ", ".join(n for n, s in registry.REGISTRY.items() if task in s.tasks and s.kind == "splits")
    with pytest.raises(RnnkitError, match=f"'{other}' is a .* dataset, not one for {task} \\(known: {known}\\)"):
        task_cls(config).prepare(tmp_path)


def test_a_config_names_a_dataset_of_its_task():
    from rnnkit.tasks.runner import resolve_config

    for task, other in (("language-model", "brown-pos"), ("tagging", "cmudict"), ("seq2seq", "ptb")):
        with pytest.raises(RnnkitError, match=f"{task} datasets are .*, not '{other}'"):
            resolve_config(task, overrides=[f"data.dataset={other}"])
