"""Chorales: pitch names, the chord-event encoding and its inverse, key transposition, reading a score built with
music21 (ties, rests, chords, part names), MIDI writing read back by mido and music21, and the registry's
installed-package dataset (cache, manifest, rebuild on a new version, the install hint)."""

from __future__ import annotations

import json
from fractions import Fraction as F

import pytest

from rnnkit.data import chorales as ch
from rnnkit.data import registry
from rnnkit.errors import RnnkitError


def record(voices, tonic=0, mode="major"):
    """A record from voices given as [(onset, duration, midi)] with Fraction-able numbers."""
    return {
        "voices": {
            v: [[str(F(s)), str(F(d)), m] for s, d, m in notes] for v, notes in zip(ch.VOICES, voices, strict=True)
        },
        "key": {"tonic": tonic, "mode": mode, "name": "x"},
    }


# S: G4 half, A4 quarter; A: D4 whole... ; the bass rests first
TINY = [
    [(0, 2, 67), (2, 1, 69), (3, 1, 67)],
    [(0, 4, 62)],
    [(0, 1, 59), (1, F(1, 2), 60), (F(3, 2), F(5, 2), 59)],
    [(0, 1, None), (1, 3, 43)],
]
TINY_EVENTS = (
    "S:G4 A:D4 T:B3 B:R d:1",
    "S:_ A:_ T:C4 B:G2 d:1/2",
    "S:_ A:_ T:B3 B:_ d:1/2",
    "S:A4 A:_ T:_ B:_ d:1",
    "S:G4 A:_ T:_ B:_ d:1",
)
TINY_TOKENS = [t for event in TINY_EVENTS for t in event.split()]


def test_pitch_names_round_trip():
    assert [ch.pitch_name(m) for m in (60, 61, 43, 0, 127)] == ["C4", "C#4", "G2", "C-1", "G9"]
    assert all(ch.pitch_number(ch.pitch_name(m)) == m for m in range(128))
    with pytest.raises(ValueError, match="not a pitch name"):
        ch.pitch_number("H4")


def test_events_are_five_tokens_per_onset_and_invert_exactly():
    r = record(TINY)
    assert ch.record_tokens(r, "none") == TINY_TOKENS
    assert ch.tokens_to_voices(TINY_TOKENS) == ch.record_voices(r)
    assert [ch.token_slot(t) for t in TINY_TOKENS[:6]] == [0, 1, 2, 3, 4, 0]
    assert ch.token_slot("<eos>") is None and ch.token_slot("X:C4") is None
    # a trailing partial event is dropped; a token out of its slot is an error
    assert ch.tokens_to_voices(TINY_TOKENS + ["S:C5", "A:C4"]) == ch.record_voices(r)
    with pytest.raises(ValueError, match="not an event"):
        ch.tokens_to_voices(["A:C4", "S:C4", "T:C4", "B:C4", "d:1"])


def test_a_hold_with_nothing_to_hold_is_a_rest_and_rests_merge():
    events = ("S:_ A:R T:C4 B:C3 d:1", "S:C5 A:_ T:R B:_ d:1", "S:_ A:R T:_ B:_ d:1")
    voices = ch.tokens_to_voices(" ".join(events).split())
    assert voices[0] == [(0, 1, None), (1, 2, 72)]
    assert voices[1] == [(0, 3, None)]
    assert voices[2] == [(0, 1, 60), (1, 2, None)]


def test_fill_rests_fills_gaps_cuts_overlaps_and_pads_to_the_end():
    notes = [(F(1), F(1), 60), (F(3, 2), F(1), 62), (F(4), F(1), None), (F(5), F(1), None)]
    assert ch.fill_rests(notes, end=F(8)) == [(0, 1, None), (1, 1, 60), (2, F(1, 2), 62), (F(5, 2), F(11, 2), None)]


def test_transposing_to_c_major_or_a_minor_by_the_smallest_shift():
    assert ch.key_shift({"tonic": 7, "mode": "major"}) == 5  # G -> C up a fourth
    assert ch.key_shift({"tonic": 2, "mode": "major"}) == -2  # D -> C
    assert ch.key_shift({"tonic": 4, "mode": "minor"}) == 5  # E minor -> A minor
    assert ch.key_shift({"tonic": 9, "mode": "minor"}) == 0
    r = record(TINY, tonic=7)
    shifted = ch.tokens_to_voices(ch.record_tokens(r, "key"))
    assert shifted == ch.transpose_voices(ch.record_voices(r), 5)
    assert ch.record_tokens(r, "key")[0] == "S:C5"


def test_midi_round_trip_with_mido(tmp_path):
    pytest.importorskip("mido", reason="mido comes with rnnkit[music]")
    voices = ch.record_voices(record(TINY))
    path = ch.write_midi(voices, tmp_path / "x.mid")
    assert ch.read_midi(path) == [[n for n in v] for v in voices]
    import mido

    mid = mido.MidiFile(str(path))
    assert [t.name for t in mid.tracks[1:]] == list(ch.VOICE_NAMES)


music21 = pytest.importorskip("music21", reason="music21 comes with rnnkit[music] (CI installs it)")


def tiny_score(names=ch.VOICE_NAMES, key="G"):
    """Four parts: a tie across a bar, a rest, a chord, a grace note."""
    from music21 import chord, meter, note, stream
    from music21 import key as m21key

    score = stream.Score()
    parts = []
    for name in names:
        p = stream.Part()
        p.partName = name
        p.id = name
        p.append(meter.TimeSignature("4/4"))
        p.append(m21key.Key(key))
        parts.append(p)
    s, a, t, b = parts
    s.append([note.Note("G4", quarterLength=3), note.Note("A4", quarterLength=1)])
    tied1, tied2 = note.Note("B4", quarterLength=2), note.Note("B4", quarterLength=2)
    tied1.tie, tied2.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    s.append([tied1, tied2])
    a.append([note.Note("D4", quarterLength=4), note.Note("D4", quarterLength=4)])
    t.append([note.Rest(quarterLength=1), chord.Chord(["B3", "D4"], quarterLength=3)])
    grace = note.Note("C4").getGrace()
    t.append([grace, note.Note("B3", quarterLength=4)])
    b.append([note.Note("G2", quarterLength=4), note.Note("G2", quarterLength=2), note.Note("D3", quarterLength=2)])
    for p in parts:
        score.insert(0, p)
    return score


def test_reading_a_score_merges_ties_keeps_chord_tops_drops_grace_notes():
    r = ch.score_record(tiny_score())
    assert r["key"]["mode"] == "major" and r["key"]["tonic"] == 7  # G major
    voices = ch.record_voices(r)
    assert voices[0] == [(0, 3, 67), (3, 1, 69), (4, 4, 71)]  # the tied B4 is one note
    assert voices[1] == [(0, 4, 62), (4, 4, 62)]  # re-struck, not tied: two notes
    assert voices[2] == [(0, 1, None), (1, 3, 62), (4, 4, 59)]  # chord top D4; grace note gone
    assert voices[3] == [(0, 4, 43), (4, 2, 43), (6, 2, 50)]
    tokens = ch.record_tokens(r, "none")
    assert " ".join(tokens[:10]) == "S:G4 A:D4 T:R B:G2 d:1 S:_ A:_ T:D4 B:_ d:2"


def test_parts_are_found_by_name_else_the_top_four(tmp_path):
    score = tiny_score(names=("Bass", "Tenor", "Alto", "Soprano"))  # listed bottom-up: names win
    named = ch.score_record(score)
    assert ch.record_voices(named)[3][0] == (0, 3, 67)  # the part named Soprano is S even listed first
    unnamed = ch.score_record(tiny_score(names=("P1", "P2", "P3", "P4")))
    assert ch.record_voices(unnamed)[0][0] == (0, 3, 67)  # else score order, top first
    three = music21.stream.Score([p for p in tiny_score().parts][:3])
    with pytest.raises(RnnkitError, match="expected four voices"):
        ch.score_record(three, where="three.xml")


def test_read_score_file_reads_musicxml_and_names_bad_files(tmp_path):
    path = tmp_path / "tiny.musicxml"
    tiny_score().write("musicxml", fp=str(path))
    r = ch.read_score_file(path)
    assert r["title"] == "tiny.musicxml"
    assert ch.record_voices(r) == ch.record_voices(ch.score_record(tiny_score()))
    bad = tmp_path / "bad.musicxml"
    bad.write_text("<not really music")
    with pytest.raises(RnnkitError, match="bad.musicxml: music21 cannot read this score"):
        ch.read_score_file(bad)


def test_music21_reads_the_midi_back(tmp_path):
    pytest.importorskip("mido")
    voices = ch.record_voices(ch.score_record(tiny_score()))
    path = ch.write_midi(voices, tmp_path / "t.mid")
    score = music21.converter.parse(str(path))
    assert len(score.parts) == 4
    top = [n.pitch.midi for n in score.parts[0].flatten().notes]
    assert top == [67, 69, 71]


# -- the registry's installed-package dataset ----------------------------------------------------------------
def test_chorales_is_a_registry_dataset_read_in_place(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path))
    spec = registry.get_spec("chorales")
    assert spec.client == "installed" and spec.source.startswith("installed music21>=")
    assert 'pip install "rnnkit[music]"' in spec.source
    calls = []

    def fake_read(*, where):
        calls.append(where)
        return [{"title": f"chorale {i}", "number": i, **record(TINY)} for i in range(40)]

    monkeypatch.setattr(ch, "read_corpus_chorales", fake_read)
    monkeypatch.setattr(registry, "_installed_version", lambda spec, required=True: "10.5.1")
    splits = registry.load_splits("chorales")
    assert calls == ["music21 10.5.1"] and sum(len(v) for v in splits.values()) == 40
    for s, rows in splits.items():  # split by h(title)
        bucket = {"test": {0}, "validation": {1}}.get(s, set(range(2, 10)))
        assert all(registry.text_hash(r["title"]) % 10 in bucket for r in rows)
    manifest = json.loads((tmp_path / "datasets" / "chorales" / "manifest.json").read_text())
    assert manifest["installed_version"] == "10.5.1" and manifest["source"] == "installed:music21==10.5.1"
    registry.load_splits("chorales")
    assert len(calls) == 1  # cached
    monkeypatch.setattr(registry, "_installed_version", lambda spec, required=True: "11.0")
    assert registry.cache_manifest("chorales") is None  # another music21: parse again
    registry.load_splits("chorales")
    assert len(calls) == 2
    # without music21 the cache still serves
    monkeypatch.setattr(registry, "_installed_version", lambda spec, required=True: None)
    assert registry.cache_manifest("chorales") is not None


def test_a_missing_or_old_package_says_how_to_install_it(monkeypatch, tmp_path):
    import dataclasses

    monkeypatch.setenv("RNNKIT_HOME", str(tmp_path))
    spec = dataclasses.replace(registry.get_spec("chorales"), package="no-such-package-rnnkit")
    monkeypatch.setitem(registry.REGISTRY, "chorales", spec)
    with pytest.raises(
        RnnkitError, match=r"read from the no-such-package-rnnkit package: pip install \"rnnkit\[music\]\""
    ):
        registry.fetch("chorales")
    old = dataclasses.replace(registry.get_spec("chorales"), package="music21", version="999.0")
    monkeypatch.setitem(registry.REGISTRY, "chorales", old)
    with pytest.raises(RnnkitError, match=r"needs music21>=999.0, found"):
        registry.fetch("chorales")
    with pytest.raises(ValueError, match="client 'installed' goes with archive 'installed'"):
        dataclasses.replace(old, archive="wheel")
