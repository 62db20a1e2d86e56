"""captioning: the COCO-style reader and its errors, image folders and loading, the split, vocabulary and
match statistics, and the CLI contract train -> run folder -> predict -> evaluate on a tiny shapes task."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.tasks.captioning import BOS_ID, EOS_ID, UNK_ID, Captioning, match_stats, read_caption_json, tokenize
from rnnkit.tasks.runner import resolve_config

H, W = 12, 24


def shapes_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A dark noisy 12 x 24 image with a 2 x 8 bar, a 3 x 3 dot, or a bar on the left and a dot on the right."""
    a = rng.uniform(0, 40, (H, W))
    if kind in ("bar", "both"):
        r = rng.integers(0, H - 2)
        c = rng.integers(0, W // 2 - 7) if kind == "both" else rng.integers(0, W - 8)
        a[r : r + 2, c : c + 8] = 255
    if kind in ("dot", "both"):
        r = rng.integers(0, H - 3)
        c = rng.integers(W // 2 + 1, W - 3) if kind == "both" else rng.integers(0, W - 3)
        a[r : r + 3, c : c + 3] = 255
    return a.astype(np.uint8)


CAPTIONS = {"bar": ["A bar."], "dot": ["dot"], "both": ["bar dot", "Dot, bar"]}  # two references for both


def write_shapes_dataset(folder, n=180, seed=0, subfolder="images"):
    """``captions.json`` + ``<subfolder>/shape###.png``: what is in each image, said in words."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / subfolder).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        kind = ("bar", "dot", "both")[i % 3]
        name = f"shape{i:03d}.png"
        Image.fromarray(shapes_image(kind, rng)).save(folder / subfolder / name)
        images.append({"id": i, "file_name": name})
        annotations += [{"image_id": i, "caption": c} for c in CAPTIONS[kind]]
    path = folder / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def make_task(path, *overrides):
    _, config = resolve_config("captioning", overrides=["data.image_size=[12,24]", *overrides])
    return Captioning(config, path)


# -- reader ---------------------------------------------------------------------------------------------
def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A dog's toy, on the Sofa!") == ["a", "dog's", "toy", "on", "the", "sofa"]
    assert tokenize(" ... ") == []


def test_read_groups_captions_by_image(tmp_path):
    path = tmp_path / "c.json"
    doc = {
        "images": [{"id": 7, "file_name": "a.png"}, {"id": "x", "file_name": "b.png"}, {"id": 9, "file_name": "c.png"}],
        "annotations": [{"image_id": 7, "caption": "one"}, {"image_id": "x", "caption": "two"},
                        {"image_id": 7, "caption": "three"}],
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    images, captions = read_caption_json(path)
    assert [im["file_name"] for im in images] == ["a.png", "b.png", "c.png"]
    assert captions == {7: ["one", "three"], "x": ["two"]}  # image 9 has no caption (skipped by the task)


GOOD_IMAGES = [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"images": [\n  {"id": 1,]}', "c.json:2: invalid JSON"),
        ("[1, 2]", 'expected an object with lists "images" and "annotations"'),
        ({"images": [{"id": 1}], "annotations": []}, "images[0]: expected"),
        ({"images": [*GOOD_IMAGES, {"id": 1, "file_name": "c.png"}], "annotations": []}, "images[2]: id 1 repeats"),
        ({"images": [{"id": [1], "file_name": "a.png"}], "annotations": []}, "images[0]: id must be"),
        (
            {"images": GOOD_IMAGES, "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 3, "caption": "x"}]},
            'annotations[1]: image_id 3 is not an id in "images"',
        ),
        ({"images": GOOD_IMAGES, "annotations": [{"image_id": 1}]}, "annotations[0]: expected"),
        ({"images": GOOD_IMAGES, "annotations": [{"image_id": 2, "caption": "?!"}]}, "annotations[0]: caption '?!'"),
        ({"images": GOOD_IMAGES, "annotations": []}, "no captions found"),
    ],
)
def test_reader_errors_name_file_and_entry(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RnnkitError) as e:
        read_caption_json(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value) and "\n" not in str(e.value)


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    path = write_shapes_dataset(tmp_path, n=12)
    (tmp_path / "images" / "shape004.png").unlink()
    with pytest.raises(RnnkitError) as e:
        make_task(path).prepare(tmp_path)
    assert f"{tmp_path / 'images' / 'shape004.png'}: no such image file (images[4], id 4" in str(e.value)
    (tmp_path / "images" / "shape004.png").write_bytes(b"not a png")
    with pytest.raises(RnnkitError, match="shape004.png: cannot read image"):
        make_task(path).prepare(tmp_path)


# -- task: folders, split, vocabulary, images -------------------------------------------------------------
def test_image_folder_split_vocabulary_and_channels(tmp_path):
    path = write_shapes_dataset(tmp_path / "default", n=60)
    task = make_task(path)
    info = task.prepare(tmp_path)
    assert info["image_dir"] == str(tmp_path / "default" / "images")
    assert sum(info["sizes"].values()) == 60 and all(info["sizes"].values())
    from rnnkit.data.registry import text_hash

    assert all(text_hash(n) % 10 == 0 for n in task.splits["test"]["names"])
    assert all(text_hash(n) % 10 == 1 for n in task.splits["validation"]["names"])
    assert task.vocab.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and set(task.vocab.tokens[4:]) == {
        "bar",
        "dot",
        "a",
    }
    assert (tmp_path / "vocab.json").is_file()
    assert task.splits["train"]["images"].shape[1:] == (1, 12, 24)
    assert task.splits["train"]["images"].dtype == torch.uint8 and int(task.splits["train"]["images"].max()) == 255
    both = task.splits["train"]["texts"][task.splits["train"]["names"].index("shape002.png")]
    assert both == ["bar dot", "dot bar"]  # every caption of an image is kept (and normalized)
    n_pairs = sum(len(r) for r in task.splits["train"]["refs"])
    assert len(task.splits["train"]["pairs"]) == n_pairs

    # images next to the JSON, RGB, another size
    flat = write_shapes_dataset(tmp_path / "flat", n=30, subfolder=".")
    task = make_task(flat, "data.channels=3", "data.image_size=[8,16]")
    assert task.prepare(tmp_path)["image_dir"] == str(tmp_path / "flat")
    assert task.splits["train"]["images"].shape[1:] == (3, 8, 16)
    # data.image_dir, relative to the JSON's folder
    moved = write_shapes_dataset(tmp_path / "moved", n=30, subfolder="pics")
    assert make_task(moved, "data.image_dir=pics").prepare(tmp_path)["image_dir"] == str(tmp_path / "moved" / "pics")


def test_batches_hold_bos_eos_and_every_reference(tmp_path):
    task = make_task(write_shapes_dataset(tmp_path, n=30), "train.batch_size=4")
    task.prepare(tmp_path)
    b = next(task._batches("train", 0))
    assert b["images"].shape == (4, 1, 12, 24) and (b["tgt_in"][:, 0] == BOS_ID).all()
    assert b["images"].dtype == torch.float32 and float(b["images"].max()) == 1.0
    for out, n in zip(b["tgt_out"], b["lengths"], strict=True):
        assert out[n - 1] == EOS_ID and (out[n:] == 0).all()
    ev = next(task._batches("test", 0))
    assert ev["beam"] == task.config.decode.beam_size and next(task._batches("validation", 0))["beam"] == 1
    assert ev["refs"].shape[:2] == ev["ref_lengths"].shape and ev["refs"].shape[0] == ev["images"].shape[0]


def test_match_stats():
    bar, dot = 4, 5
    s = match_stats([[bar, dot], [dot], [bar]], [[[dot, bar], [bar, dot]], [[bar]], [[UNK_ID]]])
    assert s["exact"] == 1 and s["images"] == 3  # a match with any reference; <unk> never matches
    # tokens (eos included, over the longer): 3/3 for the first, 1/2 (eos) for the second, 1/2 for the third
    assert s["tok_correct"] == 5 and s["tok_total"] == 7


def test_image_size_too_small_for_the_encoder_is_a_config_error(tmp_path, capsys):
    path = write_shapes_dataset(tmp_path, n=3)
    args = ["train", "captioning", "--data", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert main([*args, "--set", "data.image_size=[3,24]"]) == 2
    err = capsys.readouterr().err
    assert "too small for 2 pooling blocks" in err and err.count("\n") == 1


def test_columns_image_encoder_is_built_from_the_model_config(tmp_path, capsys):
    from rnnkit.models.generator import ColumnImageEncoder, ImageEncoder

    path = write_shapes_dataset(tmp_path, n=30)
    task = make_task(path, "model.image_encoder=columns", "model.column_hidden=7", "model.cnn_channels=[4,8]")
    task.prepare(tmp_path)
    model = task.build_model()
    assert isinstance(model.cond_encoder, ColumnImageEncoder) and model.cond_encoder.reader.hidden_size == 7
    assert model.attention is None
    attending = make_task(path, "model.image_encoder=columns", "model.attend_columns=true")
    attending.prepare(tmp_path / "attending")
    assert attending.build_model().attention is not None
    assert model.cond_encoder.columns(torch.rand(2, 1, 12, 24)).shape == (2, 6, 8 * 3)  # 24 / 4 columns of 8 x 3
    plain = make_task(path)
    plain.prepare(tmp_path / "plain")
    assert isinstance(plain.build_model().cond_encoder, ImageEncoder)  # the default stays the flat encoder
    args = ["train", "captioning", "--data", str(path), "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert main([*args, "--set", "model.column_hidden=8"]) == 2
    err = capsys.readouterr().err
    assert "model.column_hidden needs model.image_encoder=columns" in err and err.count("\n") == 1
    assert main([*args, "--set", "model.attend_columns=true"]) == 2
    assert "model.attend_columns needs model.image_encoder=columns" in capsys.readouterr().err
    assert main([*args, "--set", "model.image_encoder=rows"]) == 2
    assert "image_encoder" in capsys.readouterr().err


def test_columns_run_reloads_with_its_encoder(tmp_path, capsys):
    """A run with the columns encoder and attention is saved with them: evaluate rebuilds the same model."""
    path = write_shapes_dataset(tmp_path / "shapes", n=60)
    runs = tmp_path / "runs"
    args = ["train", "captioning", "--data", str(path), "--runs-dir", str(runs), "--name", "cols", "--quiet"]
    sets = ["train.epochs=2", "train.batch_size=16", "data.image_size=[12,24]", "model.cnn_channels=[4,8]",
            "model.image_encoder=columns", "model.column_hidden=6", "model.attend_columns=true", "model.cond_dim=8",
            "model.embed_dim=8", "model.hidden_size=8", "decode.beam_size=2"]  # fmt: skip
    assert main([*args, "--set", *sets]) == 0
    capsys.readouterr()
    meta = json.loads((runs / "cols" / "meta.json").read_text())
    config = meta["model"]["config"]
    assert config["image_encoder"] == "columns" and config["column_hidden"] == 6 and config["attend_columns"]
    assert main(["evaluate", str(runs / "cols"), "--data", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(meta["metrics"]["test"])


# -- the command line -----------------------------------------------------------------------------------
def test_train_predict_evaluate_contract(tmp_path, capsys):
    path = write_shapes_dataset(tmp_path / "shapes")
    runs = tmp_path / "runs"
    args = ["train", "captioning", "--data", str(path), "--runs-dir", str(runs), "--name", "cap", "--quiet"]
    sets = ["train.epochs=16", "train.lr=0.01", "train.batch_size=16", "data.image_size=[12,24]",
            "model.cnn_channels=[8,16]", "model.cond_dim=32", "model.embed_dim=16", "model.hidden_size=32",
            "model.dropout=0", "decode.beam_size=2"]  # fmt: skip
    assert main([*args, "--set", *sets]) == 0
    capsys.readouterr()
    run = runs / "cap"
    for name in ("meta.json", "model.safetensors", "vocab.json", "config.yaml", "predictions.jsonl"):
        assert (run / name).is_file(), name
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task"] == "captioning" and meta["model"]["kind"] == "conditional_generator"
    assert meta["model"]["config"]["image_channels"] == 1 and meta["model"]["config"]["image_size"] == [12, 24]
    assert sorted(meta["plots"]) == ["plots/captions.png", "plots/learning_curves.png"]
    assert all((run / p).stat().st_size > 0 for p in meta["plots"])
    test = meta["metrics"]["test"]
    assert set(test) == {"loss", "exact_match", "token_accuracy"}
    assert test["exact_match"] >= 0.8 and test["token_accuracy"] >= 0.8  # the tiny task was learned
    preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == meta["dataset"]["sizes"]["test"]
    assert all(p["correct"] == (p["caption"] in p["references"]) for p in preds)
    assert sum(p["correct"] for p in preds) / len(preds) == pytest.approx(test["exact_match"])

    # fresh images, one of each kind
    from PIL import Image

    rng = np.random.default_rng(99)
    inputs = []
    for kind in ("bar", "dot", "both"):
        inputs.append(str(tmp_path / f"new_{kind}.png"))
        Image.fromarray(shapes_image(kind, rng)).save(inputs[-1])
    assert main(["predict", str(run), *inputs]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in out] == inputs
    assert out[0]["caption"] == "a bar" and out[1]["caption"] == "dot" and out[2]["caption"] in ("bar dot", "dot bar")

    assert main(["evaluate", str(run), "--data", str(path)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == pytest.approx(test)

    assert main(["predict", str(run), str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert "missing.png: no such image file" in err and err.count("\n") == 1
