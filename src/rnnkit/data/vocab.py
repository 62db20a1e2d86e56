"""A plain token vocabulary (strings <-> ids) for tasks whose tokens are given, not learned by a tokenizer.

Tagging reads tokens the user's file already separated; a language model and seq2seq read whitespace
words or characters, captioning lowercased words. None wants the normalizing, punctuation-splitting
``tokenizers`` model of :mod:`rnnkit.data.text`, so they use this: special tokens first (``<pad>`` is
always id 0, the embedding's ``padding_idx``), then the training tokens seen at least ``min_frequency``
times, most frequent first (ties in code-point order), so the same training data always gives the same ids.
Saved as plain JSON in the run folder (``vocab.json``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import RnnkitError
from ..fileio import atomic_write_json

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


class Vocabulary:
    """``tokens[i]`` is the string of id ``i``; unknown strings map to ``unk`` (when the vocabulary has one)."""

    def __init__(self, tokens: Sequence[str], unk: str | None = UNK) -> None:
        tokens = list(tokens)
        if not tokens or tokens[0] != PAD:
            raise ValueError(f"Vocabulary: id 0 must be {PAD!r} (the embedding's padding_idx), got {tokens[:1]}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("Vocabulary: tokens must be unique")
        if unk is not None and unk not in tokens:
            raise ValueError(f"Vocabulary: the unknown token {unk!r} is not among the tokens")
        self.tokens = tokens
        self.unk = unk
        self.index = {t: i for i, t in enumerate(tokens)}
        self.unk_id = self.index[unk] if unk is not None else None

    @classmethod
    def build(
        cls,
        sequences: Iterable[Iterable[str]],
        *,
        specials: Sequence[str] = (PAD, UNK),
        min_frequency: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Count the tokens of ``sequences`` (training data only) and keep the frequent ones.

        ``max_size`` caps the vocabulary, specials included. Specials found in the data (``<unk>`` in
        already-normalized corpora such as PTB) stay special: they are never added twice.
        """
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        kept = [t for t, c in counts.items() if c >= min_frequency and t not in specials]
        kept.sort(key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(specials))]
        return cls([*specials, *kept], unk=UNK if UNK in specials else None)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def encode(self, tokens: Iterable[str]) -> list[int]:
        if self.unk_id is None:
            return [self.index[t] for t in tokens]
        get, unk = self.index.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    # -- files ------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"tokens": self.tokens, "unk": self.unk}

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> Vocabulary:
        """The vocabulary :meth:`save` wrote to ``path``, or with ``key`` the one under that key of a JSON
        object holding several (seq2seq's ``{"source": ..., "target": ...}``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if key is not None:
                data = data[key]
            return cls(data["tokens"], unk=data["unk"])
        except FileNotFoundError:
            raise RnnkitError("missing; the run folder is incomplete", where=str(path)) from None
        except (ValueError, KeyError, TypeError) as e:
            raise RnnkitError(f"not a vocabulary file: {e}", where=str(path)) from None
