"""Small file helpers: atomic writes and checksums.

Every file rnnkit writes for later use (cached datasets, run folders, checkpoints) goes through
:func:`atomic_write_bytes` or :func:`atomic_write_file`: the bytes land in a hidden temporary file beside
the target (``.<name>.tmp-<pid>-<random>``), are flushed and fsynced, moved into place with
:func:`os.replace`, and the folder is fsynced so the rename itself survives a power cut. A reader never
sees half a file, even after ``kill -9`` or Ctrl-C; a temporary file left by a killed process is
removed by :func:`remove_temporaries` (``rnnkit train --resume`` does so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk. A no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _tmp_name(path: Path) -> Path:
    # Same folder, so os.replace never crosses a filesystem.
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_file(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Atomically create ``path`` with ``write(tmp_path)`` (e.g. ``safetensors.torch.save_model``): the writer
    fills a temporary file in the same folder, which is fsynced, renamed onto ``path``, and the folder fsynced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``, fsync of
    the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # open("xb") respects the umask (mkstemp is 0600).
    tmp = _tmp_name(path)
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the hidden temporary files and folders (``.<name>.tmp-...``) that a killed writer left in
    ``folder`` (not recursive). Only call this while no other process writes into ``folder``."""
    import shutil

    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            removed.append(p)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()
