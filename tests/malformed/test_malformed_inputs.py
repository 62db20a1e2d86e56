"""Bad input (issue #9, item 4): every file in this folder is malformed in one way, and so are a few inputs built
here (10⁶-token lines, too big to keep in git; damaged copies of a trained run). The CLI runs in-process on each
and must answer with exit status 2, one line on stderr naming the file (and line or field where there is one),
no traceback, and no partial output: ``train`` leaves no run folder behind, and a run folder given to
``--resume``, ``predict`` or ``evaluate`` is left byte for byte as it was.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from rnnkit.cli.main import main
from rnnkit.fileio import sha256_file
from rnnkit.tasks import text_classification

HERE = Path(__file__).parent
MILLION = 1_000_000

#: small models, so that a reader that wrongly accepted its input would still fail fast
SMALL = {
    "text-classification": ["model.embed_dim=8", "model.hidden_size=8"],
    "series-classification": ["model.hidden_size=8"],
    "forecasting": ["model.hidden_size=8", "data.window=2", "model.horizon=1"],
    "tagging": ["model.embed_dim=8", "model.hidden_size=8"],
    "seq2seq": ["model.embed_dim=8", "model.hidden_size=8"],
    "language-model": ["model.embed_dim=8", "model.hidden_size=8"],
    "image-classification": ["model.hidden_sizes=[8]"],
    "captioning": ["model.embed_dim=8", "model.hidden_size=8"],
}


def tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def write_reviews(path: Path, n: int = 80) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            w.writerow([f"{'a great' if i % 2 else 'a dull'} film number {i}", "pos" if i % 2 else "neg"])
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The inputs built here: 10⁶-token lines (malformed in a way found only at their end or in their middle),
    a trained run, and an unfinished run whose data file can be spoiled."""
    tmp = tmp_path_factory.mktemp("made")
    words = " ".join(["w"] * MILLION)
    (tmp / "long_ragged.csv").write_text(f'text,label\na fine film,pos\n"{words}",neg,surplus\n')
    (tmp / "long_no_tab.tsv").write_text(f"cat\tK AE T\n{words}\n")
    (tmp / "long_wordtag.txt").write_text("The/DT cat/NN\n" + " ".join(["w/NN"] * MILLION) + " bad\n")
    (tmp / "long_token.txt").write_text("The/DT cat/NN\n" + "x" * MILLION + "\n")
    (tmp / "long_value.csv").write_text(f"month,value\n2000-01,1.0\n2000-02,{'9' * MILLION}x\n")
    (tmp / "long_time.csv").write_text(f"month,value\n2000-01,1.0\n{'2' * MILLION}x,2.0\n")
    (tmp / "long_pixel.csv").write_text(f"p1,p2,label\n0,1,a\n0,{'7' * MILLION}x,b\n")
    data = write_reviews(tmp / "long_reviews.csv")  # "long_": found under made/ (a valid file)
    args = ["--runs-dir", str(tmp / "runs"), "--quiet", "--set", "train.epochs=1", "train.batch_size=16",
            *SMALL["text-classification"]]  # fmt: skip
    assert main(["train", "text-classification", "--data", str(data), "--name", "done", *args]) == 0
    resumable = write_reviews(tmp / "resumable.csv")
    original = text_classification.TextClassification.trainer_task

    def signalling(self):  # SIGINT in the middle of training: a checkpoint, no meta.json
        task = original(self)
        inner = task.train_step

        def step(model, batch, carry):
            if not hasattr(step, "sent"):
                step.sent = os.kill(os.getpid(), signal.SIGINT)
            return inner(model, batch, carry)

        task.train_step = step
        return task

    text_classification.TextClassification.trainer_task = signalling
    try:
        assert main(["train", "text-classification", "--data", str(resumable), "--name", "cut", *args]) == 130
    finally:
        text_classification.TextClassification.trainer_task = original
    return tmp


def train_on(task: str, file: str, *extra: str):
    def argv(ctx):
        path = ctx["made"] / file if file.startswith("long_") else HERE / file
        return ["train", task, "--data", str(path), "--runs-dir", str(ctx["runs"]), "--quiet",
                "--set", "train.epochs=1", *SMALL[task], *extra]  # fmt: skip

    return argv


def with_config(file: str):
    return lambda ctx: ["train", "text-classification", "--data", str(ctx["made"] / "long_reviews.csv"), "--config",
                        str(HERE / file), "--runs-dir", str(ctx["runs"]), "--quiet"]  # fmt: skip


def on_run(*args: str, copy: bool = False):
    def argv(ctx):
        run = ctx["run"]
        return [a.format(run=run, here=HERE, made=ctx["made"]) for a in args]

    argv.copy = copy
    return argv


def damaged(change):
    """A copy of the trained run, changed by ``change(run)`` before the command."""

    def argv(ctx):
        change(ctx["run"])
        return ["predict", str(ctx["run"]), "a fine film"]

    argv.copy = True
    return argv


def _spoil_data(ctx):
    (ctx["made"] / "resumable.csv").write_bytes(b"text,label\n\xff,pos\n")


def _replace_data(ctx):  # valid, but not the data the run started on: another vocabulary
    path = ctx["made"] / "resumable.csv"
    path.write_text(path.read_text().replace("great", "superb").replace("dull", "tedious"))


# (case id, command, where the error must point: "{file}" is the input's path, then the message's gist)
CASES = [
    # -- text classification: CSV / JSONL
    ("text bad UTF-8", train_on("text-classification", "text_bad_utf8.csv"), "{here}/text_bad_utf8.csv", "UTF-8"),
    ("text empty file", train_on("text-classification", "empty.csv"), "{here}/empty.csv", "no column 'text'"),
    ("text ragged row", train_on("text-classification", "text_ragged.csv"), "{here}/text_ragged.csv:3", "more fields"),
    ("text wrong columns", train_on("text-classification", "text_wrong_columns.csv"),
     "{here}/text_wrong_columns.csv:1", "no column 'text'"),
    ("text zero-length text", train_on("text-classification", "text_empty_text.csv"),
     "{here}/text_empty_text.csv:3", "empty 'text'"),
    ("jsonl bad JSON", train_on("text-classification", "text_bad_json.jsonl"), "{here}/text_bad_json.jsonl:2",
     "invalid JSON"),
    ("jsonl not an object", train_on("text-classification", "text_not_object.jsonl"),
     "{here}/text_not_object.jsonl:2", "JSON object"),
    ("text NUL byte, too few rows", train_on("text-classification", "text_nul_byte.csv"),
     "{here}/text_nul_byte.csv", "split is empty"),
    ("text 10^6-token ragged line", train_on("text-classification", "long_ragged.csv"), "{made}/long_ragged.csv:3",
     "more fields"),
    ("text unknown text column", train_on("text-classification", "text_ragged.csv", "data.text_column=body"),
     "{here}/text_ragged.csv:1", "no column 'body'"),
    # -- series classification: .ts
    ("ts no @data", train_on("series-classification", "ts_no_data.ts"), "{here}/ts_no_data.ts", "no @data"),
    ("ts bad @dimensions", train_on("series-classification", "ts_bad_dimensions.ts"),
     "{here}/ts_bad_dimensions.ts:2", "@dimensions"),
    ("ts undeclared label", train_on("series-classification", "ts_unknown_label.ts"), "{here}/ts_unknown_label.ts:5",
     "'c' is not one of"),
    ("ts channel count", train_on("series-classification", "ts_wrong_channels.ts"), "{here}/ts_wrong_channels.ts:6",
     "channel(s)"),
    ("ts zero-length series", train_on("series-classification", "ts_empty_channel.ts"),
     "{here}/ts_empty_channel.ts:5", "no values"),
    ("ts infinite value", train_on("series-classification", "ts_infinite.ts"), "{here}/ts_infinite.ts:5", "infinite"),
    ("ts bad UTF-8", train_on("series-classification", "ts_bad_utf8.ts"), "{here}/ts_bad_utf8.ts", "UTF-8"),
    ("ts data before @data", train_on("series-classification", "ts_data_before_header.ts"),
     "{here}/ts_data_before_header.ts:2", "@tag header"),
    # -- forecasting: series CSV
    ("series NaN", train_on("forecasting", "series_nan.csv"), "{here}/series_nan.csv:6", "missing value"),
    ("series inf", train_on("forecasting", "series_inf.csv"), "{here}/series_inf.csv:3", "not a finite number"),
    ("series ragged row", train_on("forecasting", "series_ragged.csv"), "{here}/series_ragged.csv:3", "fields"),
    ("series wrong column", train_on("forecasting", "series_wrong_columns.csv", "data.value_column=value"),
     "{here}/series_wrong_columns.csv:1", "no value column 'value'"),
    ("series time order", train_on("forecasting", "series_unordered.csv"), "{here}/series_unordered.csv:3",
     "increasing time order"),
    ("series no rows", train_on("forecasting", "series_header_only.csv"), "{here}/series_header_only.csv",
     "no data rows"),
    ("series empty file", train_on("forecasting", "empty.csv"), "{here}/empty.csv", "empty file"),
    ("series 10^6-digit value", train_on("forecasting", "long_value.csv"), "{made}/long_value.csv:3", "number"),
    ("series 10^6-digit time", train_on("forecasting", "long_time.csv"), "{made}/long_time.csv:3", "time"),
    # -- tagging: CoNLL, CoNLL-U, word/tag
    ("conll column count", train_on("tagging", "conll_bad_columns.conll"), "{here}/conll_bad_columns.conll:3",
     "columns"),
    ("conllu column count", train_on("tagging", "conllu_bad_columns.conllu"), "{here}/conllu_bad_columns.conllu:3",
     "10 tab-separated columns"),
    ("word/tag bad token", train_on("tagging", "wordtag_bad_token.txt", "data.format=wordtag"),
     "{here}/wordtag_bad_token.txt:2", "word/tag"),
    ("word/tag 10^6-token line", train_on("tagging", "long_wordtag.txt", "data.format=wordtag"),
     "{made}/long_wordtag.txt:2", "'bad'"),
    ("word/tag 10^6-character token", train_on("tagging", "long_token.txt", "data.format=wordtag"),
     "{made}/long_token.txt:2", "word/tag"),
    ("tagging empty file", train_on("tagging", "empty.csv"), "{here}/empty.csv", "no tagged sentences"),
    # -- seq2seq: TSV pairs
    ("pairs no tab", train_on("seq2seq", "pairs_no_tab.tsv"), "{here}/pairs_no_tab.tsv:2", "no tab"),
    ("pairs three fields", train_on("seq2seq", "pairs_three_fields.tsv"), "{here}/pairs_three_fields.tsv:2",
     "3 tab-separated fields"),
    ("pairs zero-length target", train_on("seq2seq", "pairs_empty_target.tsv"), "{here}/pairs_empty_target.tsv:2",
     "empty target"),
    ("pairs 10^6-token line", train_on("seq2seq", "long_no_tab.tsv"), "{made}/long_no_tab.tsv:2", "no tab"),
    ("pairs empty file", train_on("seq2seq", "empty.csv"), "{here}/empty.csv", "empty file"),
    # -- language model: text
    ("lm only blank lines", train_on("language-model", "lm_blank_lines.txt"), "{here}/lm_blank_lines.txt", "no text"),
    ("lm bad UTF-8", train_on("language-model", "lm_bad_utf8.txt"), "{here}/lm_bad_utf8.txt:2", "utf-8"),
    ("lm empty file", train_on("language-model", "empty.csv"), "{here}/empty.csv", "no text"),
    # -- images: pixel CSV, COCO captions
    ("pixels ragged row", train_on("image-classification", "pixels_ragged.csv"), "{here}/pixels_ragged.csv:3",
     "fields"),
    ("pixels wrong image size", train_on("image-classification", "pixels_not_square.csv", "data.image_shape=[2,2]"),
     "data.image_shape [2, 2]", "rows have 5"),
    ("pixels NaN", train_on("image-classification", "pixels_nan.csv"), "{here}/pixels_nan.csv:3", "not finite"),
    ("pixels 10^6-digit value", train_on("image-classification", "long_pixel.csv"), "{made}/long_pixel.csv:3",
     "not a number"),
    ("captions bad JSON", train_on("captioning", "captions_bad_json.json"), "{here}/captions_bad_json.json:2",
     "invalid JSON"),
    ("captions image not an image", train_on("captioning", "captions_broken_image/captions.json"),
     "{here}/captions_broken_image/images/img", "cannot read image"),
    # -- configs
    ("config unknown key", with_config("config_unknown_key.yaml"), "{here}/config_unknown_key.yaml",
     "train.epochz: unknown key"),
    ("config wrong type", with_config("config_wrong_type.yaml"), "{here}/config_wrong_type.yaml",
     "train.lr: Input should be a valid number"),
    ("config not a mapping", with_config("config_not_mapping.yaml"), "{here}/config_not_mapping.yaml", "mapping"),
    ("config bad YAML", with_config("config_bad_yaml.yaml"), "{here}/config_bad_yaml.yaml:", "invalid YAML"),
    ("config bad UTF-8", with_config("config_bad_utf8.yaml"), "{here}/config_bad_utf8.yaml", "cannot read"),
    ("--set wrong type", train_on("text-classification", "long_reviews.csv", "train.epochs=many"), "train.epochs",
     "valid integer"),
    ("--set unknown device", train_on("text-classification", "long_reviews.csv", "train.device=gpu"), "train.device",
     "not a device"),
    # -- run folders
    ("predict missing run", on_run("predict", "{made}/no-such-run", "x"), "{made}/no-such-run", "no run folder"),
    ("evaluate missing run", on_run("evaluate", "{made}/no-such-run"), "{made}/no-such-run", "no run folder"),
    ("resume missing run", on_run("train", "--resume", "{made}/no-such-run"), "{made}/no-such-run",
     "not a run folder"),
    ("evaluate unseen labels", on_run("evaluate", "{run}", "--data", "{here}/text_unseen_labels.csv"),
     "{here}/text_unseen_labels.csv", "['neutral'] the model was not trained on"),
    ("evaluate bad UTF-8 data", on_run("evaluate", "{run}", "--data", "{here}/text_bad_utf8.csv"),
     "{here}/text_bad_utf8.csv", "UTF-8"),
    ("evaluate ragged data", on_run("evaluate", "{run}", "--data", "{here}/text_ragged.csv"),
     "{here}/text_ragged.csv:3", "more fields"),
    ("predict bad UTF-8 inputs", on_run("predict", "{run}", "--file", "{here}/predict_inputs_bad_utf8.txt"),
     "{here}/predict_inputs_bad_utf8.txt:2", "not valid utf-8"),
    ("truncated safetensors", damaged(lambda run: (run / "model.safetensors").write_bytes(
        (run / "model.safetensors").read_bytes()[:100])), "{run}/model.safetensors", "SHA-256"),
    ("broken meta.json", damaged(lambda run: (run / "meta.json").write_text('{"format_version": 1, "task": ')),
     "{run}/meta.json", "invalid JSON"),
    ("meta.json without model", damaged(lambda run: (run / "meta.json").write_text(
        json.dumps({**json.loads((run / "meta.json").read_text()), "model": None}))), "{run}/meta.json", "'model'"),
    ("unfinished run predicted", damaged(lambda run: (run / "meta.json").unlink()), "{run}", "did not finish"),
    # -- --resume on bad input: the run folder must stay exactly as it was
    ("resume with spoiled data", "resume", "{made}/resumable.csv", "UTF-8"),
    ("resume with other data", "resume", "{cut}", "the data changed since this run started"),
    ("resume with a wrong --set", "resume", "{cut}", "train.lr"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, made, tmp_path, capsys):
    name, command, where, gist = case
    ctx = {"made": made, "runs": tmp_path / "runs", "run": made / "runs" / "done", "cut": made / "runs" / "cut"}
    watched = None
    if command == "resume":  # an unfinished run, with its data or the command spoiled
        shutil.copyfile(made / "resumable.csv", tmp_path / "resumable.csv")  # restored after the case
        if name == "resume with spoiled data":
            _spoil_data(ctx)
        elif name == "resume with other data":
            _replace_data(ctx)
        watched = ctx["cut"]
        extra = ["--set", "train.lr=fast"] if "wrong --set" in name else []
        argv = ["train", "--resume", str(watched), "--quiet", *extra]
    else:
        if getattr(command, "copy", False):
            ctx["run"] = shutil.copytree(ctx["run"], tmp_path / "run")
        if name.startswith(("evaluate", "predict")) and "missing" not in name:
            watched = ctx["run"]
        argv = command(ctx)
    before = tree(watched) if watched is not None else None
    capsys.readouterr()
    try:
        code = main(argv)
    finally:
        if command == "resume":
            shutil.copyfile(tmp_path / "resumable.csv", made / "resumable.csv")
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("rnnkit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and len(err) < 1000, err[:2000]
    assert where.format(here=HERE, made=made, run=ctx["run"], cut=ctx["cut"]) in err, err
    assert gist in err, err
    if argv[0] == "train" and "--resume" not in argv:
        assert not ctx["runs"].exists() or not any(ctx["runs"].iterdir())  # no half-made run folder
    if watched is not None:
        assert tree(watched) == before


def test_the_corpus_is_all_used():
    """Every file in this folder is the input of a case above."""
    source = Path(__file__).read_text(encoding="utf-8")
    for p in HERE.iterdir():
        if p.suffix != ".py" and not p.name.startswith((".", "__")):
            assert f"{p.name}" in source, p.name
