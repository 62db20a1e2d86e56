"""Reading the user's text files: decoding errors name the file (and line), and train/validation/test folders.

A task that accepts ``--data FOLDER`` finds its three split files with :func:`split_files`: each file
name (without its folder) is cut at ``-``, ``_``, ``.`` and spaces, and a part equal to ``train``,
``dev``/``val``/``valid``/``validation`` or ``test`` says its split (``en_ewt-ud-train.conllu``,
``ptb.valid.txt``, ``dev.txt``). Hidden files are ignored; each split needs exactly one file.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import RnnkitError

#: The longest line (bytes, line end excluded) and the largest CSV field a reader of the user's files accepts.
#: A line or field holds a whole document at most; past this, tokenizing it would take gigabytes
#: (docs/reliability.md).
MAX_LINE_BYTES = 8 << 20

# A CSV field may hold a whole document: lift the csv module's 128 KiB default to MAX_LINE_BYTES, so a long
# text is read, and a malformed row after it is reported with its line number.
csv.field_size_limit(MAX_LINE_BYTES)

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


def check_regular_file(path: Path) -> None:
    """``path`` must be a regular file (or a link to one). Checked with ``os.stat``, which never opens it, so a
    FIFO or a device is refused instead of blocking or being read without end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise RnnkitError("no such file", where=str(path)) from None
    except OSError as e:  # not a folder on the way, permissions, a name too long
        raise RnnkitError(f"cannot open: {e.strerror or e}", where=str(path)) from None
    if stat.S_ISDIR(mode):
        raise RnnkitError("is a folder, not a file", where=str(path))
    if not stat.S_ISREG(mode):
        raise RnnkitError("not a regular file (a FIFO, socket or device)", where=str(path))


def check_line_lengths(path: Path, limit: int | None = None) -> None:
    """Refuse a file with a line longer than ``limit`` bytes (default :data:`MAX_LINE_BYTES`) as
    ``file:line: line longer than N bytes``, reading it in 1 MiB chunks (so the check itself stays small)."""
    limit = MAX_LINE_BYTES if limit is None else limit
    line, current = 1, 0  # the line number and the length so far of the line that the next chunk continues
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                parts = chunk.split(b"\n")
                first = current + len(parts[0])
                if first > limit or (len(parts) > 2 and max(map(len, parts[1:-1])) > limit):
                    lengths = [first, *map(len, parts[1:])]
                    bad = next(i for i, n in enumerate(lengths) if n > limit)
                    raise RnnkitError(f"line longer than {limit:,} bytes", where=f"{path}:{line + bad}")
                line += len(parts) - 1
                current = first if len(parts) == 1 else len(parts[-1])
    except OSError as e:
        raise RnnkitError(f"cannot read: {e.strerror or e}", where=str(path)) from None
    if current > limit:
        raise RnnkitError(f"line longer than {limit:,} bytes", where=f"{path}:{line}")


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Around a reader of the user's UTF-8 file ``path``: a missing file, one that is not a regular file, a line
    longer than :data:`MAX_LINE_BYTES`, bytes that are not UTF-8 and malformed CSV (a field over the same limit
    included) become :class:`RnnkitError` naming the file (the reader's own errors name the line)."""
    check_regular_file(path)
    check_line_lengths(path)
    try:
        yield
    except UnicodeDecodeError as e:
        raise RnnkitError(f"not valid UTF-8 (byte {e.start})", where=str(path)) from None
    except csv.Error as e:
        raise RnnkitError(f"malformed CSV: {e}", where=str(path)) from None


def read_lines(path: Path, encoding: str = "utf-8", hint: str = "; set data.encoding") -> list[str]:
    """The file's lines without their line ends (``\\n``, ``\\r\\n``), a leading BOM dropped.

    A byte that does not decode, or a line longer than :data:`MAX_LINE_BYTES`, is reported with its line
    number; a path that is not a regular file is refused unopened. A final line end does not start another
    (empty) line.
    """
    check_regular_file(path)
    check_line_lengths(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RnnkitError(f"cannot read: {e.strerror or e}", where=str(path)) from None
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
