"""music: the n-gram baselines against a hand computation, and the contract train -> run folder -> generate /
predict / evaluate on tiny synthetic chorales (MIDI files that parse back, piano-roll PNGs, the event grammar,
every generate option), plus a folder of MusicXML scores as --data and its errors."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from rnnkit.data import chorales as ch
from rnnkit.data import registry
from rnnkit.data.splits import split_by_hash
from rnnkit.errors import RnnkitError
from rnnkit.tasks import runner
from rnnkit.tasks.base import GenerateOptions
from rnnkit.tasks.music import MusicTask, ngram_log_probs
from rnnkit.tasks.runner import resolve_config

mido = pytest.importorskip("mido", reason="mido comes with rnnkit[music] (CI installs it)")


def test_ngram_baselines_match_a_hand_computation():
    ids = torch.tensor([2, 3, 4, 3, 4, 2])  # V = 5, id 0 padding: targets 3 4 3 4 2 after contexts 2 3 4 3 4
    uni, bi = ngram_log_probs(ids, 5, 0.5)
    support = 4  # every id but padding
    assert uni[3].item() == pytest.approx(math.log((2 + 0.5) / (5 + 0.5 * support)))
    assert uni[1].item() == pytest.approx(math.log(0.5 / 7))  # unseen <unk> keeps k
    assert bi[3, 4].item() == pytest.approx(math.log((2 + 0.5) / (2 + 0.5 * support)))
    assert bi[3, 2].item() == pytest.approx(math.log(0.5 / 4))
    assert bi[0, 3].item() == pytest.approx(math.log(0.25))  # a context never seen: uniform over the support
    assert uni[0] == -math.inf and bi[2, 0] == -math.inf
    assert torch.allclose(bi[:, 1:].exp().sum(1), torch.ones(5)) and uni[1:].exp().sum().item() == pytest.approx(1)


# -- synthetic chorales ---------------------------------------------------------------------------------------
def synthetic_records(n: int = 40, seed: int = 0) -> list[dict]:
    """Cadence-like four-voice pieces in random keys: chords in quarter and half notes, some voices holding."""
    rng = random.Random(seed)
    chords = [(72, 67, 64, 48), (74, 65, 62, 55), (72, 67, 64, 48), (71, 67, 62, 43), (72, 64, 60, 48)]
    records = []
    for i in range(n):
        tonic = rng.randrange(12)
        shift = (tonic + 6) % 12 - 6
        voices = [[] for _ in range(4)]
        t = 0
        for c in chords * rng.choice((1, 2)):
            dur = rng.choice((1, 1, 2))
            for v in range(4):
                if voices[v] and voices[v][-1][2] == c[v] + shift and rng.random() < 0.5:  # hold
                    s, d, m = voices[v][-1]
                    voices[v][-1] = (s, d + dur, m)
                else:
                    voices[v].append((t, dur, c[v] + shift))
            t += dur
        records.append(
            {
                "title": f"piece {i}",
                "number": i,
                "voices": {
                    v: [[str(s), str(d), m] for s, d, m in notes] for v, notes in zip(ch.VOICES, voices, strict=True)
                },
                "key": {"tonic": tonic, "mode": "major", "name": ""},
            }
        )
    return records


SPLITS = split_by_hash(synthetic_records(), key="title")


def patch_chorales(monkeypatch):
    real = registry.load_splits
    monkeypatch.setattr(registry, "load_splits", lambda name: SPLITS if name == "chorales" else real(name))


@pytest.fixture
def fake_chorales(monkeypatch):
    patch_chorales(monkeypatch)
    return SPLITS


TINY = [
    "model.embed_dim=8",
    "model.hidden_size=24",
    "model.num_layers=1",
    "model.dropout=0.0",
    "train.epochs=3",
    "train.batch_size=4",
    "train.lr=0.01",
    "data.bptt=20",
    "generate.max_events=6",
    "generate.samples=2",
]


@pytest.fixture(scope="module")
def music_run(tmp_path_factory):
    """One tiny run shared by the tests that only read it."""
    with pytest.MonkeyPatch.context() as mp:
        patch_chorales(mp)
        return runner.train("music", overrides=TINY, runs_dir=tmp_path_factory.mktemp("runs"), name="m", quiet=True)


def test_training_reports_the_model_beside_both_baselines_on_the_same_targets(music_run, fake_chorales):
    m, run = music_run.metrics, music_run.path
    assert {"loss", "perplexity", "nll_per_event", "unigram_loss", "bigram_loss", "unigram_nll_per_event",
            "bigram_nll_per_event"} <= set(m)  # fmt: skip
    # the baselines recomputed by hand over the test stream
    loaded = runner.load_run(run)
    vocab = loaded.task.vocab
    stream = lambda s: vocab.encode(["<eos>", *(t for r in fake_chorales[s] for t in [*ch.record_tokens(r), "<eos>"])])  # noqa: E731
    uni, bi = ngram_log_probs(torch.tensor(stream("train")), len(vocab), 0.1)
    test = torch.tensor(stream("test"))
    events = sum(len(ch.record_tokens(r)) // 5 for r in fake_chorales["test"])
    assert m["bigram_loss"] == pytest.approx(-bi[test[:-1], test[1:]].double().mean().item(), rel=1e-5)
    assert m["unigram_loss"] == pytest.approx(-uni[test[1:]].double().mean().item(), rel=1e-5)
    assert m["nll_per_event"] == pytest.approx(m["loss"] * (len(test) - 1) / events, rel=1e-5)
    assert m["bigram_nll_per_event"] == pytest.approx(m["bigram_loss"] * (len(test) - 1) / events, rel=1e-5)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["dataset"]["pieces"] == {s: len(fake_chorales[s]) for s in ("train", "validation", "test")}
    assert meta["dataset"]["transpose"] == "key" and "plots/piano_roll.png" in meta["plots"]
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["files"]) == 2 and (run / r["files"][0]).is_file() for r in rows)
    # the evaluate path rebuilds the same streams with the run's vocabulary
    assert runner.evaluate(run)["bigram_loss"] == pytest.approx(m["bigram_loss"])


def grammar_ok(tokens: list[str]) -> bool:
    return [ch.token_slot(t) for t in tokens] == [i % 5 for i in range(len(tokens))]


def test_generate_writes_midi_and_piano_rolls_that_read_back(music_run, tmp_path):
    from PIL import Image

    run = runner.load_run(music_run.path)
    rows = run.task.generate_outputs(run.model, [""], GenerateOptions(num_samples=3, seed=1), tmp_path)
    assert [r["sample"] for r in rows] == [0, 1, 2]
    for r in rows:
        tokens = r["tokens"].split()
        assert grammar_ok(tokens) and 1 <= r["events"] <= 6 and len(tokens) == 5 * r["events"]
        midi, png = map(type(tmp_path), r["files"])
        assert (midi.suffix, png.suffix) == (".mid", ".png") and midi.parent == tmp_path
        voices = ch.tokens_to_voices(tokens)
        assert [[n for n in v if n[2] is not None] for v in ch.read_midi(midi)] == [
            [n for n in v if n[2] is not None] for v in voices
        ]
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 200
    # no out_dir: no files
    assert run.task.generate_outputs(run.model, [""], GenerateOptions(), None)[0]["files"] == []


def test_every_generate_option_has_an_effect(music_run):
    run = runner.load_run(music_run.path)

    def gen(prompt="", **kw):
        return [r["tokens"] for r in run.task.generate_outputs(run.model, [prompt], GenerateOptions(**kw))]

    assert gen(seed=3, num_samples=4) == gen(seed=3, num_samples=4)
    assert gen(seed=3, num_samples=4) != gen(seed=4, num_samples=4)
    assert len(gen(num_samples=4)) == 4
    assert all(len(t.split()) <= 5 * 2 for t in gen(max_tokens=2, num_samples=4))
    greedy = gen(temperature=1e-4, num_samples=3)
    assert len(set(greedy)) == 1  # nearly greedy: every sample the same
    assert gen(top_k=1, num_samples=3, seed=0) == gen(top_k=1, num_samples=3, seed=9)  # top-1 is greedy
    assert len(set(gen(top_p=1e-6, num_samples=3))) == 1
    first = gen(seed=0, num_samples=1)[0].split()[:5]
    continued = gen(" ".join(first), seed=5)[0].split()
    assert continued[:5] == first and grammar_ok(continued)


def test_bad_prompts_and_options_are_one_line_errors(music_run):
    run = runner.load_run(music_run.path)
    task, model = run.task, run.model
    first = task.generate_outputs(model, [""], GenerateOptions())[0]["tokens"].split()[:5]
    with pytest.raises(RnnkitError, match="prompt token 1 .'A:C4'. should be a S: token"):
        task.generate_outputs(model, ["A:C4"], GenerateOptions())
    with pytest.raises(RnnkitError, match="not in the run's vocabulary"):
        task.generate_outputs(model, ["S:C0 A:C0 T:C0 B:C0 d:1"], GenerateOptions())
    with pytest.raises(RnnkitError, match="ends inside an event"):
        task.generate_outputs(model, [" ".join(first[:3])], GenerateOptions())
    with pytest.raises(RnnkitError, match="beam_size does not apply"):
        task.generate_outputs(model, [""], GenerateOptions(beam_size=2))
    assert task.can_generate
    rows = task.predict(model, ["", " ".join(first)])
    assert len(rows) == 2 and rows[1]["tokens"].split()[:5] == first and rows[0]["files"] == []


def test_transpose_none_keeps_the_written_keys(fake_chorales, tmp_path):
    _, keyed = resolve_config("music", overrides=TINY)
    _, written = resolve_config("music", overrides=[*TINY, "data.transpose=none"])
    a, b = MusicTask(keyed), MusicTask(written)
    info_a, info_b = a.prepare(tmp_path / "a"), b.prepare(tmp_path / "b")
    assert info_a["vocabulary"] < info_b["vocabulary"]  # random keys spread the pitches
    assert info_a["events"] == info_b["events"]


def test_min_frequency_and_baseline_k_have_an_effect(fake_chorales, tmp_path):
    _, cfg = resolve_config("music", overrides=TINY)
    _, rare = resolve_config("music", overrides=[*TINY, "data.min_frequency=50"])
    _, smooth = resolve_config("music", overrides=[*TINY, "data.baseline_k=5"])
    tasks = [MusicTask(c) for c in (cfg, rare, smooth)]
    for i, t in enumerate(tasks):
        t.prepare(tmp_path / str(i))
    assert len(tasks[1].vocab) < len(tasks[0].vocab)
    assert not torch.allclose(tasks[2].baselines[1][2:, 2:], tasks[0].baselines[1][2:, 2:])


# -- a folder of scores ---------------------------------------------------------------------------------------
def names_for_every_split(n_train: int = 2) -> list[str]:
    """File names whose h(name) % 10 puts one in test, one in validation and ``n_train`` in train."""
    want, names, i = {0: 1, 1: 1, "train": n_train}, [], 0
    while any(want.values()):
        name = f"piece{i}.musicxml"
        b = registry.text_hash(name) % 10
        key = b if b in (0, 1) else "train"
        if want[key]:
            want[key] -= 1
            names.append(name)
        i += 1
    return names


def test_a_folder_of_musicxml_scores_trains(tmp_path):
    music21 = pytest.importorskip("music21", reason="music21 comes with rnnkit[music] (CI installs it)")
    folder = tmp_path / "scores"
    folder.mkdir()
    for k, name in enumerate(names_for_every_split()):
        score = music21.stream.Score()
        for v, base in zip(ch.VOICE_NAMES, (72, 67, 64, 48), strict=True):
            part = music21.stream.Part()
            part.partName = v
            part.append([music21.note.Note(base + k + j % 3, quarterLength=1) for j in range(8)])
            score.insert(0, part)
        score.write("musicxml", fp=str(folder / name))
    (folder / "notes.txt").write_text("not a score: ignored")
    summary = runner.train("music", overrides=TINY[:-1], data=folder, runs_dir=tmp_path / "runs", quiet=True)
    meta = json.loads((summary.path / "meta.json").read_text())
    assert meta["dataset"]["pieces"] == {"train": 2, "validation": 1, "test": 1}
    assert meta["dataset"]["source"] == str(folder)


def test_folder_errors(tmp_path):
    _, cfg = resolve_config("music", overrides=TINY)
    with pytest.raises(RnnkitError, match="expected a folder of score files"):
        MusicTask(cfg, tmp_path / "x.mid").prepare(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RnnkitError, match="no score files"):
        MusicTask(cfg, empty).prepare(tmp_path)
    pytest.importorskip("music21")
    one = tmp_path / "one"
    one.mkdir()
    (one / names_for_every_split(0)[0]).write_text("<broken")
    with pytest.raises(RnnkitError, match="music21 cannot read this score"):
        MusicTask(cfg, one).prepare(tmp_path)
    _, none = resolve_config("music", overrides=["data.dataset=null"])
    with pytest.raises(RnnkitError, match="no data: give --data FOLDER"):
        MusicTask(none).prepare(tmp_path)


def test_recipes():
    task, cfg = resolve_config("chorales")
    assert task is MusicTask and cfg.data.dataset == "chorales" and cfg.data.transpose == "key"
    _, cap = resolve_config("captions")
    assert cap.data.dataset == "mnist-5k-strips" and tuple(cap.data.image_size) == (28, 28 * cap.data.max_digits)
    assert cap.train.monitor == "exact_match"
