r"""Four-voice chorales as note events: reading (music21), the token encoding, and MIDI writing (mido).

**Reading.** A score becomes a *record*: its four voices (the parts named Soprano, Alto, Tenor, Bass,
else the first four parts top to bottom), each a list of ``[onset, duration, midi]`` notes in quarter
lengths (exact fractions, written ``"3/2"``), ``midi`` null for a rest. Ties are merged (one note),
a chord in a part keeps its highest pitch, grace notes are dropped, gaps and a voice that stops early
are filled with rests, and consecutive rests merge, so each voice covers ``[0, end)`` without holes.
The key (music21's ``analyze("key")``: tonic pitch class and mode) is stored beside the voices.
The 371 Bach chorales come from ``music21.corpus.chorales.Iterator()`` (the corpus inside the
installed music21; nothing is downloaded); their record also holds the title and Riemenschneider number.

**Encoding** (onset-sliced chord events, in the spirit of BachBot, Liang 2016). A chorale is cut at
every onset of any voice. One *event* = what each voice does at that moment plus how long until the
next onset, five tokens always in this order::

    S:<x> A:<x> T:<x> B:<x> d:<duration>     x = a pitch (C4, F#3: a new note), R (a new rest) or _ (hold)

e.g. ``S:G4 A:D4 T:B3 B:G2 d:1`` then ``S:A4 A:_ T:_ B:_ d:1/2`` (the soprano moves, the others hold).
Pitch names use sharps (MIDI number ``n`` -> ``NAMES[n % 12]`` + octave ``n // 12 - 1``), so the same key
always gives the same token. A chorale's token stream ends with ``<eos>``. With ``transpose="key"`` every
chorale is first moved to C major or A minor (by the smallest shift, -6..+5 semitones), which shrinks
the vocabulary of a small corpus; ``"none"`` keeps the written keys.

:func:`tokens_to_voices` inverts :func:`record_tokens` (a hold with nothing to hold is a rest), and
:func:`write_midi` writes the voices as a four-track MIDI file at 480 ticks per quarter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import RnnkitError
from ..fileio import atomic_write_bytes

log = logging.getLogger("rnnkit")

VOICES = ("S", "A", "T", "B")
VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
DUR = "d"
HOLD, REST = "_", "R"
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: slots of one event: the four voices, then the duration
SLOTS = (*VOICES, DUR)
TICKS_PER_QUARTER = 480
#: General MIDI programs of the four tracks (Choir Aahs)
PROGRAM = 52
INSTALL_HINT = 'pip install "rnnkit[music]"'

Note = tuple[Fraction, Fraction, int | None]  # onset, duration (quarter lengths), MIDI pitch or None = rest


def require(module: str):
    """Import ``music21`` or ``mido``, or say in one line how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RnnkitError(f"the music tasks need {module}: {INSTALL_HINT}") from None


# -- pitches and durations as text -------------------------------------------------------------------------
def pitch_name(midi: int) -> str:
    return f"{NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_number(name: str) -> int:
    """``"C#4"`` -> 61 (the inverse of :func:`pitch_name`)."""
    split = 2 if len(name) > 1 and name[1] == "#" else 1
    try:
        return NAMES.index(name[:split]) + 12 * (int(name[split:]) + 1)
    except ValueError:
        raise ValueError(f"not a pitch name like C4 or F#3: {name!r}") from None


def fraction(x: Any) -> Fraction:
    """A music21 offset/quarter length (float or Fraction) or ``"3/2"`` -> an exact Fraction."""
    return Fraction(x).limit_denominator(96) if not isinstance(x, str) else Fraction(x)


def fmt(q: Fraction) -> str:
    return str(q)  # "1", "1/2", "3/2"


# -- scores -> records -------------------------------------------------------------------------------------
def _voice_notes(part) -> list[Note]:
    """One music21 part -> its notes and rests, ties merged, gaps filled with rests, rests merged."""
    flat = part.flatten().stripTies()
    raw: list[Note] = []
    for el in flat.notesAndRests:
        q = fraction(el.quarterLength)
        if q <= 0:  # grace notes
            continue
        if el.isRest:
            midi = None
        elif el.isChord:
            midi = max(p.midi for p in el.pitches)
        else:
            midi = el.pitch.midi
        raw.append((fraction(el.offset), q, midi))
    raw.sort(key=lambda n: n[0])
    return fill_rests(raw)


def fill_rests(notes: Iterable[Note], end: Fraction | None = None) -> list[Note]:
    """Notes sorted by onset -> the same voice with every gap (and ``[last end, end)``) a rest, overlaps cut,
    and consecutive rests merged."""
    out: list[Note] = []
    t = Fraction(0)

    def add(start: Fraction, dur: Fraction, midi: int | None) -> None:
        if dur <= 0:
            return
        if midi is None and out and out[-1][2] is None:
            out[-1] = (out[-1][0], out[-1][1] + dur, None)
        else:
            out.append((start, dur, midi))

    for start, dur, midi in notes:
        if start > t:
            add(t, start - t, None)
        elif start < t:  # overlapping notes in one voice: the later note starts when the earlier ends
            dur -= t - start
            start = t
        add(start, dur, midi)
        t = max(t, start + dur)
    if end is not None and end > t:
        add(t, end - t, None)
    return out


def _pick_parts(score, where: str) -> list:
    parts = list(score.parts)
    by_name = {}
    for p in parts:
        by_name.setdefault(str(p.partName or p.id or "").strip().lower(), p)
    named = [by_name.get(v.lower()) for v in VOICE_NAMES]
    if all(p is not None for p in named):
        return named
    if len(parts) < 4:
        raise RnnkitError(f"expected four voices (parts), found {len(parts)}", where=where)
    return parts[:4]


def score_record(score, where: str = "score") -> dict[str, Any]:
    """A music21 score -> ``{"voices": {S, A, T, B: [[onset, dur, midi]]}, "key": {...}}`` (module docstring)."""
    voices = [_voice_notes(p) for p in _pick_parts(score, where)]
    end = max((n[0] + n[1] for v in voices for n in v), default=Fraction(0))
    if end == 0:
        raise RnnkitError("the score has no notes", where=where)
    voices = [fill_rests(v, end) for v in voices]
    key = score.analyze("key")
    return {
        "voices": {name: [[fmt(s), fmt(d), m] for s, d, m in v] for name, v in zip(VOICES, voices, strict=True)},
        "key": {"tonic": key.tonic.pitchClass, "mode": key.mode, "name": f"{key.tonic.name} {key.mode}"},
    }


def read_score_file(path: Path) -> dict[str, Any]:
    """A MusicXML / MIDI / ABC / kern file (anything music21 reads) -> a record named by its file."""
    music21 = require("music21")
    try:
        score = music21.converter.parse(str(path))
    except Exception as e:  # music21 raises many kinds for unreadable files
        raise RnnkitError(f"music21 cannot read this score: {e}", where=str(path)) from None
    if not hasattr(score, "parts"):
        raise RnnkitError("not a score with parts", where=str(path))
    return {"title": path.name, **score_record(score, where=str(path))}


def read_corpus_chorales(*, where: str = "music21 corpus") -> list[dict[str, Any]]:
    """The 371 chorales of ``music21.corpus.chorales.Iterator()`` as records (1-4 minutes of parsing)."""
    music21 = require("music21")
    records = []
    it = music21.corpus.chorales.Iterator(returnType="stream")
    for i, score in enumerate(it, 1):
        title = score.metadata.title or f"chorale {i}"
        try:
            record = score_record(score, where=f"{where}: chorale {i} ({title})")
        except RnnkitError as e:
            log.warning("skipping %s", e)
            continue
        records.append({"number": i, "title": title, **record})
        if i % 50 == 0:
            log.info("chorales: parsed %d", i)
    if not records:
        raise RnnkitError("no chorales found", where=where)
    return records


# -- records <-> tokens ------------------------------------------------------------------------------------
def record_voices(record: dict[str, Any]) -> list[list[Note]]:
    return [[(fraction(s), fraction(d), m) for s, d, m in record["voices"][v]] for v in VOICES]


def key_shift(key: dict[str, Any]) -> int:
    """Semitones (-6..+5) that move ``key`` to C major or A minor."""
    target = 9 if key.get("mode") == "minor" else 0
    return (target - int(key["tonic"]) + 6) % 12 - 6


def transpose_voices(voices: list[list[Note]], shift: int) -> list[list[Note]]:
    return [[(s, d, None if m is None else m + shift) for s, d, m in v] for v in voices]


def voices_to_events(voices: Sequence[Sequence[Note]]) -> list[list[str]]:
    """Voices (each covering ``[0, end)``) -> events of five tokens (module docstring)."""
    starts = [{s: m for s, _, m in v} for v in voices]
    end = max((s + d for v in voices for s, d, _ in v), default=Fraction(0))
    onsets = sorted({s for v in voices for s, _, _ in v} | {end})
    events = []
    for t, nxt in zip(onsets[:-1], onsets[1:], strict=True):
        event = []
        for name, st in zip(VOICES, starts, strict=True):
            if t in st:
                event.append(f"{name}:{REST if st[t] is None else pitch_name(st[t])}")
            else:
                event.append(f"{name}:{HOLD}")
        event.append(f"{DUR}:{fmt(nxt - t)}")
        events.append(event)
    return events


def record_tokens(record: dict[str, Any], transpose: str = "key") -> list[str]:
    """A record -> its token stream (events flattened; no boundary tokens)."""
    voices = record_voices(record)
    if transpose == "key":
        voices = transpose_voices(voices, key_shift(record["key"]))
    return [t for event in voices_to_events(voices) for t in event]


def token_slot(token: str) -> int | None:
    """The slot (0-3 a voice, 4 the duration) of an event token, or None for anything else."""
    head, sep, _ = token.partition(":")
    return SLOTS.index(head) if sep and head in SLOTS else None


def tokens_to_voices(tokens: Sequence[str]) -> list[list[Note]]:
    """Event tokens (whole events; a trailing partial event is ignored) -> four voices of notes."""
    voices: list[list[Note]] = [[] for _ in VOICES]
    t = Fraction(0)
    for k in range(0, len(tokens) - len(SLOTS) + 1, len(SLOTS)):
        event = tokens[k : k + len(SLOTS)]
        if [token_slot(x) for x in event] != list(range(len(SLOTS))):
            raise ValueError(f"tokens {k}..{k + 4} are not an event S A T B d: {' '.join(event)}")
        dur = Fraction(event[-1].split(":", 1)[1])
        for v, token in enumerate(event[:-1]):
            x = token.split(":", 1)[1]
            if x == HOLD and voices[v]:
                s, d, m = voices[v][-1]
                voices[v][-1] = (s, d + dur, m)
            else:
                voices[v].append((t, dur, None if x in (REST, HOLD) else pitch_number(x)))
        t += dur
    return [fill_rests(v) for v in voices]


# -- MIDI ----------------------------------------------------------------------------------------------------
def write_midi(voices: Sequence[Sequence[Note]], path: Path, *, tempo_bpm: float = 80.0) -> Path:
    """Four voices -> a type-1 MIDI file (a tempo track and one track per voice), written atomically."""
    import io

    mido = require("mido")
    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    meta.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.append(meta)
    for channel, (name, notes) in enumerate(zip(VOICE_NAMES, voices, strict=True)):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        track.append(mido.Message("program_change", program=PROGRAM, channel=channel, time=0))
        now = 0  # ticks of the last message
        for start, dur, midi in notes:
            if midi is None:
                continue
            on, off = round(start * TICKS_PER_QUARTER), round((start + dur) * TICKS_PER_QUARTER)
            track.append(mido.Message("note_on", note=midi, velocity=80, channel=channel, time=on - now))
            track.append(mido.Message("note_off", note=midi, velocity=0, channel=channel, time=off - on))
            now = off
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_midi(path: Path) -> list[list[Note]]:
    """The voices of a MIDI file :func:`write_midi` wrote (rests filled), for checking a round trip."""
    mido = require("mido")
    mid = mido.MidiFile(str(path))
    tpq = mid.ticks_per_beat
    voices = []
    for track in mid.tracks[1:]:
        now, on, notes = 0, {}, []
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                on[msg.note] = now
            elif msg.type in ("note_off", "note_on") and msg.note in on:
                start = on.pop(msg.note)
                notes.append((Fraction(start, tpq), Fraction(now - start, tpq), msg.note))
        voices.append(fill_rests(sorted(notes)))
    return voices
