"""Data: the dataset registry (real data from package archives), tokenization and batching."""

from .registry import REGISTRY, SPLITS, DatasetSpec, fetch, get_spec, load_splits, rnnkit_home, split_by_hash
from .text import (
    PAD_ID,
    UNK_ID,
    BucketBatchSampler,
    encode_texts,
    load_tokenizer,
    pad_collate,
    save_tokenizer,
    train_word_tokenizer,
)

__all__ = [
    "REGISTRY",
    "SPLITS",
    "DatasetSpec",
    "fetch",
    "get_spec",
    "load_splits",
    "rnnkit_home",
    "split_by_hash",
    "PAD_ID",
    "UNK_ID",
    "BucketBatchSampler",
    "encode_texts",
    "load_tokenizer",
    "pad_collate",
    "save_tokenizer",
    "train_word_tokenizer",
]
