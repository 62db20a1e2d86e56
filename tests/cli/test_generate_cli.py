"""``rnnkit generate`` and :func:`rnnkit.tasks.runner.generate`: language models (sampling, seeds, beams,
options over the run's settings, files, formats), captioning (beam n-best and sampling), and every error
path as one line with exit status 2."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from rnnkit.cli.main import main
from rnnkit.errors import RnnkitError
from rnnkit.tasks.base import GenerateOptions
from rnnkit.tasks.runner import generate, load_run, predict, resolve_config, train

PANGRAM = "the quick brown fox jumps over the lazy dog\n"
SMALL = ["model.embed_dim=16", "model.hidden_size=32", "model.num_layers=1", "model.dropout=0.0", "train.lr=0.01",
         "train.batch_size=8", "train.epochs=2"]  # fmt: skip


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    data = tmp_path_factory.mktemp("data") / "pangram.txt"
    data.write_text(PANGRAM * 300)
    runs = tmp_path_factory.mktemp("runs")
    sets = [*SMALL, "data.level=char", "data.bptt=20", "generate.max_tokens=30"]
    return train("language-model", data=data, runs_dir=runs, name="lm", quiet=True, overrides=sets).path


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("data") / "reviews.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(120):
            w.writerow([f"{'great' if i % 2 else 'dull'} film {i}", "pos" if i % 2 else "neg"])
    runs = tmp_path_factory.mktemp("runs")
    sets = ["train.epochs=1", "model.embed_dim=8", "model.hidden_size=8"]
    return train("text-classification", data=data, runs_dir=runs, name="clf", quiet=True, overrides=sets).path


def lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def one_line_error(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


# -- language models --------------------------------------------------------------------------------------
def test_greedy_continuation_matches_predict_and_the_learned_text(char_lm, capsys):
    assert main(["generate", str(char_lm), "the quick", "--temperature", "1e-9"]) == 0
    (row,) = lines(capsys)
    assert row["prompt"] == "the quick" and row["sample"] == 0 and row["tokens"] == 30  # the run's max_tokens
    assert row["continuation"].startswith(" brown fox jumps over the lazy")
    assert row["log_prob"] <= 0 and row["finished"] is False
    # no options: the run's own generate section, exactly what predict answers
    assert main(["generate", str(char_lm), "lazy"]) == 0
    assert lines(capsys)[0]["continuation"] == predict(char_lm, ["lazy"])[0]["continuation"]


def test_samples_seeds_and_every_sampling_flag_has_an_effect(char_lm):
    hot = {"temperature": 5.0, "max_tokens": 12}
    a = generate(char_lm, ["the"], {**hot, "num_samples": 4, "seed": 1})
    assert [r["sample"] for r in a] == [0, 1, 2, 3] and all(len(r["continuation"]) == 12 for r in a)
    assert len({r["continuation"] for r in a}) > 1  # the samples differ from each other
    assert generate(char_lm, ["the"], {**hot, "num_samples": 4, "seed": 1}) == a  # seeded
    assert generate(char_lm, ["the"], {**hot, "num_samples": 4, "seed": 2}) != a  # --seed
    # top-k 1 and a tiny nucleus leave only the most likely token: greedy at any temperature
    greedy = generate(char_lm, ["the"], {"temperature": 1e-9, "max_tokens": 12})[0]["continuation"]
    assert generate(char_lm, ["the"], {**hot, "top_k": 1})[0]["continuation"] == greedy
    assert generate(char_lm, ["the"], {**hot, "top_p": 1e-6})[0]["continuation"] == greedy
    assert generate(char_lm, ["the"], {**hot, "top_k": 0, "num_samples": 4, "seed": 1}) == a  # 0: every token
    assert len(generate(char_lm, ["the"], {"max_tokens": 5})[0]["continuation"]) == 5


def test_beam_search_gives_the_n_best_best_first(char_lm):
    rows = generate(char_lm, ["the quick", "lazy"], GenerateOptions(beam_size=3, num_samples=2, max_tokens=10))
    assert [(r["prompt"], r["sample"]) for r in rows] == [("the quick", 0), ("the quick", 1), ("lazy", 0), ("lazy", 1)]
    assert rows[0]["log_prob"] >= rows[1]["log_prob"] and rows[0]["continuation"] != rows[1]["continuation"]
    greedy = generate(char_lm, ["the quick"], {"temperature": 1e-9, "max_tokens": 10})[0]
    assert rows[0]["continuation"] == greedy["continuation"]  # the learned text is the most likely one
    assert rows[0]["log_prob"] >= greedy["log_prob"] - 1e-4


def test_no_prompt_generates_from_scratch_and_files_and_text_format(char_lm, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the\n\nlazy\n")
    out = tmp_path / "samples"
    assert main(["generate", str(char_lm), "--file", str(prompts), "--out", str(out), "--max-tokens", "8"]) == 0
    rows = lines(capsys)
    assert [r["prompt"] for r in rows] == ["the", "lazy"]
    assert [json.loads(line) for line in (out / "generated.jsonl").read_text().splitlines()] == rows
    assert main(["generate", str(char_lm), "--format", "text", "--max-tokens", "8", "--num", "2", "--temperature",
                 "1e-9"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    first = generate(char_lm, [], {"max_tokens": 8, "temperature": 1e-9})[0]
    assert first["prompt"] == "" and text == f"{first['continuation']}\n\n{first['continuation']}\n"


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--num", "3", "--beam", "2"], ["num_samples (3) cannot exceed the beam size (2)"]),
        (["--temperature", "-1"], ["generate options: temperature", "greater than 0"]),
        (["--top-p", "1.5"], ["generate options: top_p"]),
        (["--beam", "65"], ["generate options: beam_size"]),
        (["--file", "nowhere.txt"], ["nowhere.txt: no such file"]),
    ],
)
def test_bad_options_are_one_line_errors(char_lm, capsys, flags, fragments):
    assert main(["generate", str(char_lm), "the", *flags]) == 2
    one_line_error(capsys, *fragments)


def test_a_task_that_does_not_generate_and_a_missing_run(classifier_run, tmp_path, capsys):
    assert main(["generate", str(classifier_run), "a prompt"]) == 2
    one_line_error(capsys, "task 'text-classification' does not generate", "rnnkit predict")
    assert main(["generate", str(tmp_path / "nope")]) == 2
    one_line_error(capsys, "no run folder")
    with pytest.raises(RnnkitError, match="num_samples"):
        generate(classifier_run, ["x"], {"num_samples": 0})


# -- captioning (an untrained model: the search contract, not the captions' quality) ------------------------
@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    from PIL import Image

    from rnnkit.tasks.captioning import Captioning

    folder = tmp_path_factory.mktemp("caps")
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(40):
        name = f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / name)
        images.append({"id": i, "file_name": name})
        annotations.append({"image_id": i, "caption": ["a bar", "a dot", "a bar and a dot"][i % 3]})
    (folder / "captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    sets = ["data.image_size=[8,8]", "model.cnn_channels=[4]", "model.cond_dim=8", "model.embed_dim=8",
            "model.hidden_size=8"]  # fmt: skip
    _, config = resolve_config("captioning", overrides=sets)
    task = Captioning(config, folder / "captions.json")
    task.prepare(folder)
    torch.manual_seed(0)
    return task, task.build_model().eval(), [str(folder / "im0.png"), str(folder / "im1.png")]


def test_captioning_beam_n_best_and_seeded_samples(captioner):
    task, model, images = captioner
    assert type(task).can_generate
    beams = task.generate_outputs(model, images, GenerateOptions(num_samples=3, max_tokens=4))
    assert [(r["image"], r["sample"]) for r in beams] == [(p, i) for p in images for i in range(3)]
    assert beams[0]["log_prob"] >= beams[1]["log_prob"] >= beams[2]["log_prob"]
    assert all(len(r["caption"].split()) <= 4 for r in beams)
    plain = task.predict(model, images)  # the run's decode settings: predict's caption is the best beam
    assert [r["caption"] for r in beams if r["sample"] == 0] == [r["caption"] for r in plain]
    opts = GenerateOptions(temperature=2.0, num_samples=4, seed=3, max_tokens=4)
    a = task.generate_outputs(model, images, opts)
    assert len(a) == 8 and a == task.generate_outputs(model, images, opts)
    assert len({r["caption"] for r in a}) > 1
    assert all(t not in r["caption"].split() for r in a for t in ("<pad>", "<bos>"))
    with pytest.raises(RnnkitError, match="give image files"):
        task.generate_outputs(model, [""], GenerateOptions())
    with pytest.raises(RnnkitError, match="cannot exceed the beam size"):
        task.generate_outputs(model, images, GenerateOptions(beam_size=2, num_samples=3))


def test_load_run_still_predicts_a_language_model(char_lm):
    run = load_run(char_lm)
    assert type(run.task).can_generate and run.task.predict(run.model, ["the"])[0]["prompt"] == "the"


def test_input_file_that_is_not_utf8_names_its_line(tmp_path, capsys):
    from rnnkit.cli.main import main

    bad = tmp_path / "prompts.txt"
    bad.write_bytes(b"fine\nstill fine\ncaf\xe9\n")
    assert main(["predict", str(tmp_path / "no-run"), "--file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"rnnkit: error: {bad}:3: not valid utf-8 (byte 19)" and err.count("\n") == 1
