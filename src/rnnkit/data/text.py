"""Text to tensors: a word-level tokenizer, pretrained WordPiece tokenizers, padding and collate, and a
length-bucketing batch sampler.

The word tokenizer is a Hugging Face ``tokenizers`` word-level model (NFKC + lowercase, split on whitespace
and punctuation, ``[PAD]`` = 0, ``[UNK]`` = 1). It is trained on the training split only and saved as plain
JSON (``tokenizer.json``), so a run folder can rebuild it without pickle.

A pretrained WordPiece tokenizer (BERT-style ``tokenizer.json``, e.g. the ``minilm-wordpiece`` dataset) is
read with :func:`load_wordpiece` (no special tokens added, no padding or truncation) and can be cut down to
the pieces a corpus uses with :func:`trim_wordpiece`, which renumbers them ``[PAD]`` = 0, ``[UNK]`` = 1, ...
and says which row of the pretrained matrix each new id takes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer
from torch import Tensor
from torch.utils.data import Sampler

from rnnkit.errors import RnnkitError, short_text
from rnnkit.fileio import atomic_write_text

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1


def train_word_tokenizer(texts: Iterable[str], *, min_frequency: int = 2, max_vocab: int | None = None) -> Tokenizer:
    """A word-level tokenizer whose vocabulary is the words seen at least ``min_frequency`` times.

    ``max_vocab`` caps the vocabulary (special tokens included), keeping the most frequent words.
    Pass only training texts: words seen only in validation/test must map to ``[UNK]``.
    """
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
    if max_vocab is not None and max_vocab < 3:
        raise ValueError(f"max_vocab must be >= 3 (two special tokens and one word), got {max_vocab}")
    tok = Tokenizer(WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    trainer = WordLevelTrainer(
        vocab_size=max_vocab if max_vocab is not None else 1 << 30,
        min_frequency=min_frequency,
        special_tokens=[PAD, UNK],  # ids 0 and 1, in this order
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if tok.token_to_id(PAD) != PAD_ID or tok.token_to_id(UNK) != UNK_ID:  # guards the embedding's padding_idx
        raise RuntimeError("tokenizer special tokens are not [PAD]=0, [UNK]=1")
    return tok


def save_tokenizer(tokenizer: Tokenizer, path) -> None:
    """Write ``tokenizer.json`` atomically (plain JSON: vocabulary, normalizer, pre-tokenizer)."""
    atomic_write_text(path, tokenizer.to_str(pretty=True))


def load_tokenizer(path) -> Tokenizer:
    """A ``tokenizer.json`` written by :func:`save_tokenizer`; a missing, unreadable or invalid file is one
    :class:`RnnkitError` line naming it (the ``tokenizers`` library raises a bare ``Exception``)."""
    from .textfile import check_regular_file

    path = Path(path)
    check_regular_file(path)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - tokenizers raises plain Exception on a bad file
        raise RnnkitError(f"not a valid tokenizer.json: {short_text(e, 200)}", where=str(path)) from None


def load_wordpiece(path: str | Path) -> Tokenizer:
    """A BERT-style WordPiece ``tokenizer.json`` for use as a plain text -> ids map: no ``[CLS]``/``[SEP]``
    template, no padding, no truncation (the file may ask for all three). Needs ``[PAD]`` and ``[UNK]``."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RnnkitError(f"cannot read tokenizer JSON: {short_text(e, 200)}", where=str(path)) from None
    except RecursionError:
        raise RnnkitError("cannot read tokenizer JSON: nested too deeply", where=str(path)) from None
    model = spec.get("model") if isinstance(spec, dict) else None
    if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
        raise RnnkitError("expected a WordPiece tokenizer.json (model.type 'WordPiece' with a vocab)", where=str(path))
    for special in (PAD, UNK):
        if special not in model["vocab"]:
            raise RnnkitError(f"the WordPiece vocabulary has no {special}", where=str(path))
    spec.update(post_processor=None, padding=None, truncation=None)
    try:
        return Tokenizer.from_str(json.dumps(spec))
    except Exception as e:  # tokenizers raises plain Exception subclasses on bad specs
        raise RnnkitError(f"not a valid tokenizer: {short_text(e, 200)}", where=str(path)) from None


def trim_wordpiece(tokenizer: Tokenizer, keep: Iterable[int]) -> tuple[Tokenizer, list[int]]:
    """The WordPiece ``tokenizer`` restricted to the ids ``keep`` (plus ``[PAD]`` and ``[UNK]``), renumbered
    ``[PAD]`` = 0, ``[UNK]`` = 1, then ``keep`` in increasing id order.

    Returns the new tokenizer and ``rows``: new id ``i`` was old id ``rows[i]`` (so ``weight[rows]`` is the
    trimmed embedding matrix). A word whose pieces were all kept is split exactly as before (greedy longest
    match over a subset of the vocabulary finds the same pieces); other words are split into kept pieces,
    or become ``[UNK]``.
    """
    spec = json.loads(tokenizer.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    pad, unk = vocab[PAD], vocab[UNK]
    rows = [pad, unk] + sorted(set(keep) - {pad, unk})
    by_id = {i: t for t, i in vocab.items()}
    missing = [i for i in rows if i not in by_id]
    if missing:
        raise ValueError(f"trim_wordpiece: ids {missing[:5]} are not in the vocabulary")
    spec["model"]["vocab"] = {by_id[old]: new for new, old in enumerate(rows)}
    new_id = {old: new for new, old in enumerate(rows)}
    spec["added_tokens"] = [
        {**t, "id": new_id[t["id"]]} for t in spec.get("added_tokens") or [] if t.get("id") in new_id
    ]
    return Tokenizer.from_str(json.dumps(spec)), rows


def encode_texts(
    tokenizer: Tokenizer, texts: Sequence[str], *, max_length: int | None = None, unk_id: int = UNK_ID
) -> list[list[int]]:
    """Token ids per text (no special tokens added), cut to ``max_length``. A text with no tokens becomes
    ``[unk_id]`` (length >= 1)."""
    out = []
    for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids = enc.ids[:max_length] if max_length is not None else enc.ids
        out.append(ids if ids else [unk_id])
    return out


def pad_ids(seqs: Sequence[Sequence[int]], value: int = PAD_ID) -> Tensor:
    """Id lists -> (B, T) long, each row filled with ``value`` past its length (T: the longest; 0 for no rows)."""
    out = torch.full((len(seqs), max((len(s) for s in seqs), default=0)), value, dtype=torch.long)
    for b, seq in enumerate(seqs):
        out[b, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def pad_collate(batch: Sequence[tuple[Sequence[int], int]]) -> tuple[Tensor, Tensor, Tensor]:
    """``[(ids, label), ...]`` -> ``ids`` (B, T) long padded with ``PAD_ID``, ``lengths`` (B,), ``labels`` (B,)."""
    lengths = torch.tensor([len(ids) for ids, _ in batch], dtype=torch.long)
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    return pad_ids([seq for seq, _ in batch]), lengths, labels


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths, so padding stays small.

    With ``shuffle``: each epoch permutes the indices, cuts them into chunks of ``bucket_batches`` batches,
    sorts each chunk by length, cuts it into batches and shuffles the batches. The order depends only on
    ``seed`` and the epoch (:meth:`set_epoch`; it also advances by itself after each full pass).
    Without ``shuffle``: all indices sorted by length (stable), for evaluation.
    Every index appears exactly once per pass (the last batch may be smaller unless ``drop_last``).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_batches: int = 50,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_batches < 1:
            raise ValueError(f"bucket_batches must be >= 1, got {bucket_batches}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=self.lengths.__getitem__)
            batches = [order[i : i + bs] for i in range(0, n, bs)]
        else:
            rng = random.Random(self.seed * 1_000_003 + self.epoch)
            order = list(range(n))
            rng.shuffle(order)
            chunk = bs * self.bucket_batches
            batches = []
            for start in range(0, n, chunk):
                part = sorted(order[start : start + chunk], key=self.lengths.__getitem__)
                batches.extend(part[i : i + bs] for i in range(0, len(part), bs))
            rng.shuffle(batches)
        if self.drop_last:
            batches = [b for b in batches if len(b) == bs]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        if self.shuffle:
            self.epoch += 1
        yield from batches

    def __len__(self) -> int:
        n, bs = len(self.lengths), self.batch_size
        if not self.drop_last:
            return -(-n // bs)
        # Full batches only: with shuffle, each chunk can end in a partial batch.
        if not self.shuffle:
            return n // bs
        chunk = bs * self.bucket_batches
        return sum(min(chunk, n - s) // bs for s in range(0, n, chunk))
