"""Entity tags in the ``tagging`` task: the scheme detected from the train sentences, seqeval's strict entity
precision/recall/F1 beside token accuracy, ``data.metric``, and a CRF that decodes only valid transitions.

The data is a hand-written CoNLL NER fixture (``tests/fixtures/ner``: train/dev/test files, IOB2 tags)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from rnnkit.cli.main import main
from rnnkit.fileio import read_jsonl
from rnnkit.tasks.runner import resolve_config
from rnnkit.tasks.tagging import Tagging

NER = Path(__file__).resolve().parents[1] / "fixtures" / "ner"
SMALL = ["model.embed_dim=16", "model.hidden_size=24", "model.dropout=0", "train.batch_size=4", "train.lr=0.02",
         "data.min_frequency=1"]  # fmt: skip


def task_for(data: Path, *overrides: str) -> Tagging:
    return Tagging(config_for(*overrides), data)


def config_for(*overrides: str):
    return resolve_config("tagging", overrides=list(overrides))[1]


def to_iobes(tags: list[str]) -> list[str]:
    """IOB2 -> IOBES (single-token entities S-, last tokens E-)."""
    out = []
    for i, tag in enumerate(tags):
        nxt = tags[i + 1] if i + 1 < len(tags) else "O"
        ends = nxt != f"I-{tag[2:]}"
        if tag.startswith("B-"):
            out.append(("S-" if ends else "B-") + tag[2:])
        elif tag.startswith("I-"):
            out.append(("E-" if ends else "I-") + tag[2:])
        else:
            out.append(tag)
    return out


def rewrite(folder: Path, convert) -> Path:
    """The NER fixture with every sentence's tags converted (a copy in ``folder``)."""
    folder.mkdir()
    for src in NER.iterdir():
        blocks = src.read_text().split("\n\n")
        out = []
        for block in blocks:
            rows = [line.split("\t") for line in block.splitlines() if line]
            if rows and rows[0][0] != "-DOCSTART-":
                tags = convert([t for _, t in rows])
                rows = [[w, t] for (w, _), t in zip(rows, tags, strict=True)]
            out.append("\n".join("\t".join(r) for r in rows))
        (folder / src.name).write_text("\n\n".join(out))
    return folder


def pos_folder(tmp_path: Path) -> Path:
    """Part-of-speech tags (not entity tags) in train/dev/test files."""
    folder = tmp_path / "pos"
    folder.mkdir()
    for name in ("train.conll", "dev.conll", "test.conll"):
        (folder / name).write_text("The\tDET\ndog\tNOUN\nbarks\tVERB\n\nA\tDET\ncat\tNOUN\n")
    return folder


def test_the_scheme_is_detected_from_the_train_sentences(tmp_path):
    task = task_for(NER)
    task.prepare(tmp_path / "a")
    assert task.tag_scheme == "IOB2"
    assert task.metric_set()["reported"] == ["loss", "accuracy", "entity_precision", "entity_recall", "entity_f1"]
    iobes = task_for(rewrite(tmp_path / "iobes", to_iobes))
    iobes.prepare(tmp_path / "b")
    assert iobes.tag_scheme == "IOBES" and {"S-PER", "E-LOC"} <= set(iobes.tags)
    # IOB1: entities start with I- (B- only between two entities of one type)
    iob1 = task_for(rewrite(tmp_path / "iob1", lambda tags: [t.replace("B-", "I-") for t in tags]))
    iob1.prepare(tmp_path / "c")
    assert iob1.tag_scheme == "IOB1"
    # POS tags are not entity tags: no scheme, no entity metrics
    plain = task_for(pos_folder(tmp_path))
    plain.prepare(tmp_path / "d")
    assert plain.tag_scheme is None and "entity_f1" not in plain.metric_set()["reported"]


def test_data_metric_sets_the_monitored_metric_and_is_checked(tmp_path, capsys):
    config = config_for("data.metric=entity_f1", "train.monitor=loss")
    assert (config.train.monitor, config.train.monitor_mode) == ("entity_f1", "max")
    config = config_for("data.metric=loss")
    assert (config.train.monitor, config.train.monitor_mode) == ("loss", "min")
    # not a metric of this task: one line naming the choices, exit status 2
    runs = tmp_path / "runs"
    assert main(["train", "tagging", "--data", str(NER), "--set", "data.metric=bleu", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.metric" in err and "entity_f1" in err
    # an entity metric on tags that are not entity tags
    pos = pos_folder(tmp_path)
    code = main(["train", "tagging", "--data", str(pos), "--set", "data.metric=entity_f1", "--runs-dir", str(runs),
                 "--quiet"])  # fmt: skip
    assert code == 2 and not (runs / "tagging").exists()  # no half-made run folder is left
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not entity tags" in err and "choose one of loss, accuracy" in err


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory) -> Path:
    """A BiLSTM-CRF trained on the NER fixture with entity F1 as the validation metric."""
    runs = tmp_path_factory.mktemp("ner") / "runs"
    args = [*SMALL, "train.epochs=6", "model.crf=true", "data.metric=entity_f1"]
    assert main(["train", "tagging", "--data", str(NER), "--set", *args, "--runs-dir", str(runs), "--quiet"]) == 0
    return runs / "tagging"


def test_train_and_evaluate_report_seqeval_entity_scores(ner_run, capsys):
    run = ner_run
    meta = json.loads((run / "meta.json").read_text())
    test = meta["metrics"]["test"]
    assert set(test) == {"loss", "accuracy", "entity_precision", "entity_recall", "entity_f1"}
    assert meta["task_state"]["tag_scheme"] == "IOB2"
    assert meta["task_state"]["metric_set"]["validation"] == "entity_f1"
    assert meta["model"]["config"]["tag_scheme"] == "IOB2"
    assert test["entity_f1"] > 0.5  # it learned something; the exact value is checked against seqeval below

    rows = read_jsonl(run / "predictions.jsonl")
    gold, pred = [r["tags"] for r in rows], [r["predicted"] for r in rows]
    expected = {
        "entity_precision": precision_score(gold, pred, mode="strict", scheme=IOB2),
        "entity_recall": recall_score(gold, pred, mode="strict", scheme=IOB2),
        "entity_f1": f1_score(gold, pred, mode="strict", scheme=IOB2),
    }
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(NER)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    for name, value in expected.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-12), name
        assert test[name] == pytest.approx(value, abs=1e-12), name
    # the constrained CRF never starts an entity with I- (IOB2)
    for tags in pred:
        for prev, tag in zip(["O", *tags], tags, strict=False):
            assert not tag.startswith("I-") or (prev[2:] == tag[2:] and prev[:1] in "BI"), tags


def test_a_run_without_a_recorded_scheme_reads_it_off_its_tags(ner_run, tmp_path, capsys):
    """Runs trained before schemes were detected have no task_state.tag_scheme: evaluate still scores entities."""
    old = tmp_path / "old"
    shutil.copytree(ner_run, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["task_state"]["tag_scheme"]
    (old / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["evaluate", str(old), "--data", str(NER)]) == 0
    assert json.loads(capsys.readouterr().out)["entity_f1"] == pytest.approx(meta["metrics"]["test"]["entity_f1"])
