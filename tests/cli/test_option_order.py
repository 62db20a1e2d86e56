"""``rnnkit predict`` and ``rnnkit generate`` take their options before, between or after their inputs
(argparse's intermixed parsing): every option of both commands in every position parses to the same
arguments, a finished run answers the same whichever order the command line uses, and usage errors stay
one line naming what is wrong."""

from __future__ import annotations

import csv
import json

import pytest

from rnnkit.cli.main import build_parser, main, parse_arguments

# every option of the two commands with a value that differs from its default
OPTIONS = {
    "predict": [["--file", "inputs.txt"], ["--format", "table"], ["--quantize", "int8"]],
    "generate": [
        ["--file", "prompts.txt"], ["--max-tokens", "7"], ["--temperature", "0.5"], ["--top-k", "3"],
        ["--top-p", "0.9"], ["--beam", "2"], ["--num", "2"], ["--seed", "1"], ["--out", "samples"],
        ["--format", "text"],
    ],
}  # fmt: skip
POSITIONALS = ["runs/x", "first input", "second input"]


def orders(option: list[str]) -> list[list[str]]:
    """The option before the run folder, right after it, between the inputs and at the end."""
    return [POSITIONALS[:i] + option + POSITIONALS[i:] for i in range(len(POSITIONALS) + 1)]


def parsed(command: str, argv: list[str]) -> dict:
    args = vars(parse_arguments(build_parser(), [command, *argv]))
    return {k: (str(v) if k in {"run_dir", "file", "out"} and v is not None else v) for k, v in args.items()}


@pytest.mark.parametrize(
    ("command", "option"), [(c, o) for c, options in OPTIONS.items() for o in options], ids=lambda x: str(x)
)
def test_an_option_means_the_same_in_every_position(command, option):
    results = [parsed(command, argv) for argv in orders(option)]
    assert all(r == results[0] for r in results[1:])
    first = results[0]
    assert first["command"] == command and first["run_dir"] == "runs/x"
    assert first["inputs" if command == "predict" else "prompts"] == ["first input", "second input"]
    default = parsed(command, POSITIONALS)
    changed = {k for k in first if first[k] != default[k]}
    assert len(changed) == 1  # the option took its value, and nothing else moved


@pytest.mark.parametrize("command", ["predict", "generate"])
def test_all_options_at_once_in_mixed_positions(command):
    options = [a for o in OPTIONS[command] for a in o]
    half = len(options) // 2 // 2 * 2  # split between two options, not between an option and its value
    mixed = [POSITIONALS[0], *options[:half], POSITIONALS[1], *options[half:], POSITIONALS[2]]
    assert parsed(command, mixed) == parsed(command, [*POSITIONALS, *options])
    assert parsed(command, mixed) == parsed(command, [*options, *POSITIONALS])


def test_inputs_that_look_like_options_follow_a_double_dash():
    args = parse_arguments(build_parser(), ["predict", "runs/x", "--format", "table", "--", "--not-an-option", "-1"])
    assert args.inputs == ["--not-an-option", "-1"] and args.format == "table"
    assert parse_arguments(build_parser(), ["generate", "runs/x", "-5"]).prompts == ["-5"]


def test_the_default_input_list_is_not_shared_between_parses():
    first = parse_arguments(build_parser(), ["predict", "runs/x"])
    first.inputs.append("x")
    assert parse_arguments(build_parser(), ["predict", "runs/x"]).inputs == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["predict"], "the following arguments are required: RUN\n"),
        (["generate", "--seed", "1"], "the following arguments are required: RUN\n"),
        (["predict", "runs/x", "--format", "tablex", "a"], "argument --format: invalid choice: 'tablex'"),
        (["predict", "runs/x", "a", "--quantize", "int4"], "argument --quantize: invalid choice: 'int4'"),
        (["generate", "runs/x", "a", "--max-tokens", "0"], "argument --max-tokens: expected a positive integer, got 0"),
        (["predict", "runs/x", "a", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rnnkit " + argv[0]) and "Traceback" not in err
    (message,) = [line for line in err.splitlines() if line.startswith(f"rnnkit {argv[0]}: error: ")]
    assert fragment in message + "\n"


# -- end to end on finished runs ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from rnnkit.tasks.runner import train

    folder = tmp_path_factory.mktemp("option-order")
    reviews = folder / "reviews.csv"
    with open(reviews, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(120):
            w.writerow([f"{'great' if i % 2 else 'dull'} film {i}", "pos" if i % 2 else "neg"])
    text = folder / "pangram.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    small = ["train.epochs=1", "model.embed_dim=8", "model.hidden_size=8", "train.batch_size=8"]
    lm = ["data.level=char", "data.bptt=20", "model.num_layers=1", "model.dropout=0.0"]
    train("text-classification", data=reviews, runs_dir=folder, name="clf", quiet=True, overrides=small)
    train("language-model", data=text, runs_dir=folder, name="lm", quiet=True, overrides=small + lm)
    (folder / "inputs.txt").write_text("a great film\n\ndull\n")
    return folder


def run_cli(capsys, argv: list[str]) -> str:
    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_predict_answers_the_same_in_every_order(runs, capsys):
    clf, inputs = str(runs / "clf"), str(runs / "inputs.txt")
    for option in [["--format", "table"], ["--file", inputs], ["--quantize", "int8"]]:
        before, between, after = (
            run_cli(capsys, ["predict", *argv])
            for argv in ([clf, *option, "good", "bad"], [clf, "good", *option, "bad"], [clf, "good", "bad", *option])
        )
        assert before == between == after
        if option[0] == "--format":
            assert "good" in before and "{" not in before  # a table, not JSON lines
        else:
            texts = [json.loads(line)["text"] for line in before.splitlines()]
            assert texts == ["good", "bad", *(["a great film", "dull"] if option[0] == "--file" else [])]


def test_generate_answers_the_same_in_every_order(runs, capsys):
    lm = str(runs / "lm")
    options = ["--max-tokens", "5", "--temperature", "0.7", "--seed", "3", "--num", "2", "--format", "text"]
    outputs = [
        run_cli(capsys, ["generate", *argv])
        for argv in ([lm, *options, "the ", "a "], [lm, "the ", *options, "a "], [*options, lm, "the ", "a "])
    ]
    assert outputs[0] == outputs[1] == outputs[2]
    samples = outputs[0].split("\n\n")
    assert len(samples) == 4 and samples[0].startswith("the ") and samples[2].startswith("a ")
