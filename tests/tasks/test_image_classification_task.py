"""image-classification: the pixel CSV reader (mnist-5k layout, headers, label columns, errors), the split and
scaling rules, and the CLI contract train -> run folder -> predict (CSV rows and image files) -> evaluate."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.tasks.image_classification import ImageClassification, read_pixel_csv
from rnnkit.tasks.runner import resolve_config

CLASSES = ("row", "column", "diagonal")


def shape_image(kind: str, rng: np.random.Generator, side: int = 8) -> np.ndarray:
    """A dark noisy ``side x side`` image with one bright row, column or diagonal (uint8)."""
    a = rng.integers(0, 60, (side, side))
    k = int(rng.integers(0, side))
    if kind == "row":
        a[k, :] = 255
    elif kind == "column":
        a[:, k] = 255
    else:
        a[np.arange(side), np.arange(side)] = 255
    return a.astype(np.uint8)


def write_pixel_rows(path, n=300, seed=0, labels=("0", "1", "2"), header=None, label_first=False):
    """``n`` images in the mnist_5k.csv.gz layout (64 pixels then the label, no header), gzipped for ``.gz``."""
    rng = np.random.default_rng(seed)
    lines = [header] if header else []
    for i in range(n):
        pixels = [str(v) for v in shape_image(CLASSES[i % 3], rng).ravel()]
        label = labels[i % 3]
        lines.append(",".join([label, *pixels] if label_first else [*pixels, label]))
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def make_task(path, *overrides):
    _, config = resolve_config("image-classification", overrides=list(overrides))
    return ImageClassification(config, path)


# -- reader -------------------------------------------------------------------------------------------
def test_mnist_layout_gzipped_without_header(tmp_path):
    path = write_pixel_rows(tmp_path / "digits.csv.gz", n=12)
    data = read_pixel_csv(path)
    assert data["pixels"].shape == (12, 64) and data["pixels"].dtype == np.float32
    assert data["labels"][:4] == ["0", "1", "2", "0"] and data["lines"][:2] == [1, 2]
    assert data["pixels"].max() == 255


def test_header_label_column_and_string_labels(tmp_path):
    header = ",".join(["label", *(f"p{i}" for i in range(64))])
    path = write_pixel_rows(tmp_path / "with_header.csv", n=6, header=header, label_first=True)
    data = read_pixel_csv(path)  # 'label' found by name, header detected
    assert data["pixels"].shape == (6, 64) and data["labels"][:3] == ["0", "1", "2"] and data["lines"][0] == 2
    # no header and word labels in the last column: still data, not a header
    words = write_pixel_rows(tmp_path / "words.csv", n=6, labels=CLASSES)
    data = read_pixel_csv(words)
    assert data["labels"][:3] == list(CLASSES) and len(data["pixels"]) == 6
    # a column index for a headerless file with the label first
    first = write_pixel_rows(tmp_path / "first.csv", n=6, label_first=True)
    assert read_pixel_csv(first, label_column=0)["labels"][:2] == ["0", "1"]
    # header: false reads a first row of numbers as data even with a non-number label
    assert len(read_pixel_csv(words, header=False)["pixels"]) == 6


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        ("", {}, "no examples found"),
        ("1,2,3,a\n1,2,3\n", {}, "bad.csv:2: expected 4 fields (like the first row), got 3"),
        ("1,2,3,a\n1,x,3,b\n", {}, "bad.csv:2: column 2: not a number: 'x'"),
        ("1,2,3,a\n1,nan,3,b\n", {}, "bad.csv:2: pixel 2 is not finite"),
        ("1,2,3,a\n1,2,3, \n", {}, "bad.csv:2: empty label (column 4)"),
        ("1,2,3,a\n", {"label_column": "digit", "header": False}, "names a header column, but the file has no header"),
        ("1,2,3,a\n", {"label_column": 7}, "data.label_column=7 is outside the row's 4 columns"),
        ("a,b,label\n1,2,3\n", {"label_column": "digit"}, "bad.csv:1: no column 'digit' in the header"),
    ],
)
def test_reader_errors_name_file_and_line(tmp_path, content, kwargs, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(RnnkitError) as e:
        read_pixel_csv(path, **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(RnnkitError, match="no such file"):
        read_pixel_csv(tmp_path / "missing.csv")
    bad_gz = tmp_path / "broken.csv.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(RnnkitError, match="broken.csv.gz: cannot read"):
        read_pixel_csv(bad_gz)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"1,2,\xff\xfe\n")
    with pytest.raises(RnnkitError, match="not valid UTF-8"):
        read_pixel_csv(binary)


# -- task: split, scaling, shapes ---------------------------------------------------------------------------
def test_split_rule_scale_and_square_shape(tmp_path):
    task = make_task(write_pixel_rows(tmp_path / "d.csv", n=30))
    info = task.prepare(tmp_path)
    assert info["sizes"] == {"train": 24, "validation": 3, "test": 3}
    assert task.splits["test"]["rows"] == [0, 10, 20] and task.splits["validation"]["rows"] == [1, 11, 21]
    assert task.image_shape == [8, 8] and task.scale == pytest.approx(1 / 255) and task.labels == ["0", "1", "2"]
    assert task.splits["train"]["x"].shape == (24, 8, 8) and float(task.splits["train"]["x"].max()) == 1.0
    assert task.build_model().config.input_shape == [8, 8]


def test_scale_shape_and_label_options(tmp_path):
    # pixels already in [0, 1]: scale 1 (no division), unless data.scale says otherwise
    path = tmp_path / "unit.csv"
    rng = np.random.default_rng(0)
    path.write_text("".join(",".join([*(f"{v:.3f}" for v in rng.random(6)), str(i % 2)]) + "\n" for i in range(20)))
    task = make_task(path)
    task.prepare(tmp_path)
    assert task.scale == 1.0 and task.image_shape is None and task.input_shape == [6]
    task = make_task(path, "data.scale=2", "data.image_shape=[2,3]")
    task.prepare(tmp_path)
    assert task.scale == 2.0 and task.input_shape == [2, 3]
    with pytest.raises(RnnkitError, match=r"data.image_shape \[4, 4\] holds 16 pixels but rows have 6"):
        make_task(path, "data.image_shape=[4,4]").prepare(tmp_path)
    # labels are ordered numerically when they are numbers
    path.write_text("".join(f"{i},{i * 2},{[2, 10, 1][i % 3]}\n" for i in range(30)))
    task = make_task(path)
    task.prepare(tmp_path)
    assert task.labels == ["1", "2", "10"]


def test_label_seen_only_outside_train_is_an_error(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{i},{i},{'odd' if i == 10 else 'a' if i % 2 else 'b'}\n" for i in range(30)))
    with pytest.raises(RnnkitError, match=r"labels \['odd'\] appear only outside the train split"):
        make_task(path).prepare(tmp_path)


# -- the command line -----------------------------------------------------------------------------------
def test_train_predict_evaluate_contract(tmp_path, capsys):
    from PIL import Image

    data = write_pixel_rows(tmp_path / "shapes.csv.gz", n=300)
    runs = tmp_path / "runs"
    args = ["train", "image-classification", "--data", str(data), "--runs-dir", str(runs), "--name", "img", "--quiet"]
    sets = ["train.epochs=6", "train.lr=0.01", "train.batch_size=32", "model.hidden_sizes=[32]", "model.dropout=0"]
    assert main([*args, "--set", *sets]) == 0
    capsys.readouterr()
    run = runs / "img"
    for name in ("meta.json", "model.safetensors", "config.yaml", "predictions.jsonl", "metrics.jsonl"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task"] == "image-classification" and meta["model"]["kind"] == "mlp"
    assert meta["task_state"]["image_shape"] == [8, 8] and meta["dataset"]["sizes"]["test"] == 30
    assert sorted(meta["plots"]) == [
        "plots/confusion_matrix.png",
        "plots/learning_curves.png",
        "plots/test_examples.png",
    ]
    assert all((run / p).stat().st_size > 0 for p in meta["plots"])
    assert meta["metrics"]["test"]["accuracy"] >= 0.9  # the tiny task was learned
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 30 and preds[0]["row"] == 0 and {"label", "predicted", "probability"} <= set(preds[0])

    # inputs: a CSV of rows without labels (one per class) and a larger PNG of a column, resized to 8 x 8
    rng = np.random.default_rng(7)
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(",".join(map(str, shape_image(k, rng).ravel())) + "\n" for k in CLASSES))
    png = tmp_path / "column.png"
    column = np.zeros((8, 8), np.uint8)
    column[:, 3] = 255
    Image.fromarray(column).resize((32, 32), Image.Resampling.NEAREST).save(png)
    assert main(["predict", str(run), str(rows), str(png)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in out] == [f"{rows}:1", f"{rows}:2", f"{rows}:3", str(png)]
    assert [r["label"] for r in out] == ["0", "1", "2", "1"]
    assert all(0 < r["probability"] <= 1 for r in out)

    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["accuracy"] == pytest.approx(meta["metrics"]["test"]["accuracy"])

    # a prediction file that still has its label column: one line naming the file
    assert main(["predict", str(run), str(data)]) == 2
    err = capsys.readouterr().err
    assert "shapes.csv.gz:1: expected 64 pixel values, got 65 (drop the label column" in err and err.count("\n") == 1
    assert main(["predict", str(run), str(tmp_path / "nope.png")]) == 2
    assert "nope.png: no such image file" in capsys.readouterr().err


# -- the registry dataset (mlp-digits on mnist-5k) ----------------------------------------------------------
def test_registry_dataset_uses_its_split(tmp_path, monkeypatch):
    from rnnkit.data import registry

    rng = np.random.default_rng(0)
    splits = {s: [{"pixels": shape_image(CLASSES[i % 3], rng).ravel().tolist(), "label": i % 3} for i in range(n)]
              for s, n in (("train", 60), ("validation", 9), ("test", 12))}  # fmt: skip
    monkeypatch.setattr(registry, "load_splits", lambda name: splits)
    task = make_task(None, "data.dataset=mnist-5k")
    info = task.prepare(tmp_path)
    assert info == {"source": "dataset mnist-5k", "sizes": {"test": 12, "validation": 9, "train": 60}}
    assert task.labels == ["0", "1", "2"] and task.image_shape == [8, 8] and task.scale == pytest.approx(1 / 255)
    first_test = torch.tensor(splits["test"][0]["pixels"], dtype=torch.float32).view(8, 8) / 255
    torch.testing.assert_close(task.splits["test"]["x"][0], first_test)
    monkeypatch.setattr(registry, "load_splits", lambda name: {"train": [{"text": "a", "label": "x"}]})
    with pytest.raises(RnnkitError, match="'mnist-5k' is not an image dataset"):  # records without pixels
        make_task(None, "data.dataset=mnist-5k").prepare(tmp_path)
    with pytest.raises(RnnkitError, match="'rotten-tomatoes' is a text-classification dataset, not one for image-"):
        make_task(None, "data.dataset=rotten-tomatoes").prepare(tmp_path)
    with pytest.raises(RnnkitError, match="or set data.dataset"):
        make_task(None).prepare(tmp_path)


def test_mlp_digits_recipe():
    _, config = resolve_config("mlp-digits")
    assert config.task == "image-classification" and config.data.dataset == "mnist-5k"
    assert config.model.hidden_sizes and config.train.monitor == "accuracy"
