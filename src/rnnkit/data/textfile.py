"""Reading the user's text files: decoding errors name the file (and line), and train/validation/test folders.

A task that accepts ``--data FOLDER`` finds its three split files with :func:`split_files`: each file
name (without its folder) is cut at ``-``, ``_``, ``.`` and spaces, and a part equal to ``train``,
``dev``/``val``/``valid``/``validation`` or ``test`` says its split (``en_ewt-ud-train.conllu``,
``ptb.valid.txt``, ``dev.txt``). Hidden files are ignored; each split needs exactly one file.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import RnnkitError

# A CSV field may hold a whole document: lift the csv module's 128 KiB default (a safety limit, not a rule of
# the format), so a long text is read, and a malformed row after it is reported with its line number.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))

SPLIT_WORDS = {
    "train": ("train",),
    "validation": ("dev", "val", "valid", "validation"),
    "test": ("test",),
}


def check_encoding(name: str) -> str:
    """A codec name Python knows (for config validators)."""
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown text encoding {name!r} (e.g. utf-8, latin-1)") from None
    return name


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Around a reader of the user's UTF-8 file ``path``: a missing file, bytes that are not UTF-8 and
    malformed CSV become :class:`RnnkitError` naming the file (the reader's own errors name the line)."""
    if not path.is_file():
        raise RnnkitError("no such file", where=str(path))
    try:
        yield
    except UnicodeDecodeError as e:
        raise RnnkitError(f"not valid UTF-8 (byte {e.start})", where=str(path)) from None
    except csv.Error as e:
        raise RnnkitError(f"malformed CSV: {e}", where=str(path)) from None


def read_lines(path: Path, encoding: str = "utf-8", hint: str = "; set data.encoding") -> list[str]:
    """The file's lines without their line ends (``\\n``, ``\\r\\n``), a leading BOM dropped.

    A byte that does not decode is reported with its line number. A final line end does not start
    another (empty) line.
    """
    if not path.is_file():
        raise RnnkitError("no such file", where=str(path))
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise RnnkitError(f"not valid {encoding} (byte {e.start}){hint}", where=f"{path}:{line}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def split_files(folder: Path) -> dict[str, Path]:
    """``{"train": ..., "validation": ..., "test": ...}`` from the file names in ``folder`` (module docstring)."""
    found: dict[str, list[Path]] = {s: [] for s in SPLIT_WORDS}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        parts = set(re.split(r"[-_. ]", p.name.lower()))
        for split, words in SPLIT_WORDS.items():
            if parts & set(words):
                found[split].append(p)
    for split, paths in found.items():
        if len(paths) != 1:
            names = ", ".join(p.name for p in paths) or "none"
            words = "/".join(SPLIT_WORDS[split])
            raise RnnkitError(
                f"expected exactly one {split} file (a name with a part {words}), found {names}", where=str(folder)
            )
    return {s: paths[0] for s, paths in found.items()}
