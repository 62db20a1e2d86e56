"""``Vocabulary`` files: one vocabulary per file, or several under keys of one JSON object (seq2seq)."""

from __future__ import annotations

import pytest

from rnnkit.data.vocab import BOS, EOS, PAD, UNK, Vocabulary
from rnnkit.errors import RnnkitError
from rnnkit.fileio import atomic_write_json


def test_save_load_and_load_by_key(tmp_path):
    source = Vocabulary.build([["b", "a", "b"]], specials=(PAD, UNK, BOS, EOS))
    target = Vocabulary.build([["x"]])
    assert source.tokens == [PAD, UNK, BOS, EOS, "b", "a"] and source.unk_id == 1
    assert Vocabulary.load(source.save(tmp_path / "one.json")).tokens == source.tokens
    both = tmp_path / "both.json"
    atomic_write_json(both, {"source": source.to_json(), "target": target.to_json()})
    assert Vocabulary.load(both, "source").tokens == source.tokens
    assert Vocabulary.load(both, "target").tokens == target.tokens
    with pytest.raises(RnnkitError, match="not a vocabulary file") as err:
        Vocabulary.load(both, "labels")
    assert str(err.value).startswith(f"{both}: ")
    with pytest.raises(RnnkitError, match="missing; the run folder is incomplete"):
        Vocabulary.load(tmp_path / "nope.json", "source")
