"""Property-based tests of padding, masking and batching (issue #9, item 5): ``pad_ids``, ``pad_collate``,
``lengths_to_mask``, ``mask_padded``, ``reverse_padded``, ``last_valid`` and ``BucketBatchSampler``."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.text import BucketBatchSampler, pad_collate, pad_ids
from rnnkit.layers.masking import last_valid, lengths_to_mask, mask_padded, reverse_padded

ids = st.lists(st.integers(0, 50), max_size=9)


@given(st.lists(ids, max_size=7), st.integers(-3, 3))
def test_pad_ids_keeps_each_row_and_pads_the_rest(seqs, value):
    out = pad_ids(seqs, value)
    assert out.dtype == torch.long and out.shape == (len(seqs), max((len(s) for s in seqs), default=0))
    for row, s in zip(out.tolist(), seqs, strict=True):
        assert row[: len(s)] == s and all(v == value for v in row[len(s) :])


@given(st.lists(st.tuples(st.lists(st.integers(2, 50), min_size=1, max_size=9), st.integers(0, 4)), min_size=1))
def test_pad_collate_gives_ids_lengths_and_labels(batch):
    x, lengths, labels = pad_collate(batch)
    assert lengths.tolist() == [len(s) for s, _ in batch] and labels.tolist() == [y for _, y in batch]
    assert (x != 0).sum(1).tolist() == lengths.tolist()  # ids >= 2: the non-pad ids are exactly the real steps


@st.composite
def padded(draw, feature_dims=(3,)):
    """A (B, T, *features) float batch and lengths in [1, T]."""
    B, T = draw(st.integers(1, 5)), draw(st.integers(1, 8))
    lengths = torch.tensor(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    return torch.randn(B, T, *feature_dims, generator=g), lengths


@given(padded(), st.integers(0, 3))
def test_lengths_to_mask_marks_exactly_the_real_steps(batch, extra):
    x, lengths = batch
    T = x.shape[1] + extra
    mask = lengths_to_mask(lengths, T)
    assert mask.shape == (len(lengths), T) and mask.sum(1).tolist() == lengths.tolist()
    for b, n in enumerate(lengths.tolist()):
        assert mask[b, :n].all() and not mask[b, n:].any()
    assert lengths_to_mask(lengths).shape[1] == int(lengths.max())


@given(padded(feature_dims=(2, 3)))
def test_mask_padded_zeroes_padding_only(batch):
    x, lengths = batch
    out = mask_padded(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n], x[b, :n]) and not out[b, n:].any()


@given(padded())
def test_reverse_padded_reverses_within_each_length(batch):
    x, lengths = batch
    out = reverse_padded(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b, :n], x[b, :n].flip(0))
        assert torch.equal(out[b, n:], x[b, n:])  # padding stays in place
    assert torch.equal(reverse_padded(out, lengths), x)  # an involution
    assert torch.equal(reverse_padded(x, None), x.flip(1))


@given(padded())
def test_last_valid_picks_the_last_real_step(batch):
    x, lengths = batch
    out = last_valid(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(out[b], x[b, n - 1])
    assert torch.equal(last_valid(x, None), x[:, -1])


@given(
    st.lists(st.integers(1, 30), max_size=60),
    st.integers(1, 9),
    st.integers(1, 4),
    st.booleans(),
    st.integers(0, 5),
    st.integers(0, 3),
)
def test_bucket_sampler_covers_every_index_once(lengths, batch_size, bucket_batches, shuffle, seed, epoch):
    sampler = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed, bucket_batches=bucket_batches)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert len(batches) == len(sampler) and all(1 <= len(b) <= batch_size for b in batches)
    again = BucketBatchSampler(lengths, batch_size, shuffle=shuffle, seed=seed, bucket_batches=bucket_batches)
    again.set_epoch(epoch)
    assert list(again) == batches  # the order is a function of (seed, epoch): resumable
    if not shuffle:
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat)

    dropping = BucketBatchSampler(
        lengths, batch_size, shuffle=shuffle, seed=seed, bucket_batches=bucket_batches, drop_last=True
    )
    dropping.set_epoch(epoch)
    full = list(dropping)
    seen = [i for b in full for i in b]
    assert len(seen) == len(set(seen)) and all(len(b) == batch_size for b in full) and len(full) == len(dropping)


def test_the_ci_profile_is_reproducible():
    """Without HYPOTHESIS_PROFILE the examples are derived from the tests (tests/conftest.py), not drawn anew."""
    import os

    from hypothesis import settings

    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci":
        assert settings().derandomize and settings().deadline is None and settings().print_blob
