"""Run folders: their names, and reading one as untrusted input (below tasks, export and serve).

A new run never takes the name of an existing folder (see :mod:`rnnkit.tasks.runner`). A run folder may come
from someone else, so nothing in it may make rnnkit read outside it, write through a link, run code or spend
memory and time before a cheap check refuses it: every file it names is a plain name inside the folder, a
regular file (no symbolic link, FIFO, device or folder), size-bounded where it is parsed, and has the SHA-256
that ``meta.json`` records (:func:`open_run`); the weights' header is read, with a size cap, before a model is
built (:func:`weights_header`); ``rnnkit train --resume`` holds :class:`RunLock` and refuses links anywhere in
the folder (:func:`check_tree`). The threat model is in docs/reliability.md.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rnnkit.errors import RnnkitError, short_repr

logger = logging.getLogger("rnnkit")


MAX_RUN_NAME = 100


def check_run_name(name: str) -> str:
    """``name`` if it is a plain folder name: not empty, not hidden, no path separator, only printable
    characters (no control characters or line ends), at most :data:`MAX_RUN_NAME` characters."""
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or os.sep in name:
        raise RnnkitError(f"invalid run name {short_repr(name)}: use a plain folder name, not a path or a hidden name")
    if len(name) > MAX_RUN_NAME:
        raise RnnkitError(f"invalid run name {short_repr(name)}: longer than {MAX_RUN_NAME} characters")
    if not name.isprintable():
        raise RnnkitError(f"invalid run name {short_repr(name)}: use printable characters only (no control characters)")
    return name


def next_free_name(runs_dir: Path, base: str) -> str:
    """``base`` if ``runs_dir/base`` does not exist, else ``base-2``, ``base-3``, ..."""
    name, i = base, 2
    while (runs_dir / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


# -- a run folder as untrusted input ----------------------------------------------------------------------
#: ``meta.json``'s format; a run folder of another version is refused
FORMAT_VERSION = 1
#: size caps, checked before a file is parsed (a run's own files are far below them)
META_MAX_BYTES = 16 << 20
CONFIG_MAX_BYTES = 1 << 20
STATE_FILE_MAX_BYTES = 256 << 20  # a tokenizer or vocabulary named in task_state
HEADER_MAX_BYTES = 16 << 20  # the JSON header of a safetensors file
#: at most this many weight elements (8 GB of float32) in one run
MAX_ELEMENTS = 2_000_000_000
LOCK_NAME = ".lock"

_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "U16": 2,
                "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


def is_plain_name(name: Any) -> bool:
    """A file name directly inside a folder: not empty, not hidden, no separator (so no ``..``), printable
    (no NUL, no line end), at most 255 characters."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 255
        and name.isprintable()
        and not name.startswith(".")
        and not any(c in name for c in ("/", "\\"))
    )


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))  # fmt: skip
    for test, kind in kinds:
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: str | os.PathLike, max_bytes: int | None = None) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (not a symbolic link, FIFO, device or folder: checked
    on the opened descriptor, so it cannot be swapped in between) of at most ``max_bytes``; else a one-line
    :class:`RnnkitError` naming it."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise RnnkitError("missing; the run folder is incomplete", where=str(path)) from None
    except OSError as e:
        raise RnnkitError(f"cannot read: {e.strerror or e}", where=str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise RnnkitError("is a symbolic link; a run folder's files must be regular files inside it", where=str(path))
    if not stat.S_ISREG(st.st_mode):  # never open a FIFO or a device: opening alone may block or act
        raise RnnkitError(f"is {_kind(st.st_mode)}, not a regular file", where=str(path))
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RnnkitError("is a symbolic link; a run folder's files must be regular files inside it",
                              where=str(path)) from None  # fmt: skip
        raise RnnkitError(f"cannot read: {e.strerror or e}", where=str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RnnkitError(f"is {_kind(st.st_mode)}, not a regular file", where=str(path))
    if max_bytes is not None and st.st_size > max_bytes:
        os.close(fd)
        raise RnnkitError(f"is {st.st_size:,} bytes; a run folder's file of this kind has at most {max_bytes:,}",
                          where=str(path))  # fmt: skip
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, max_bytes: int) -> bytes:
    with open_regular(path, max_bytes) as f:
        return f.read(max_bytes + 1)


def sha256_regular(path: str | os.PathLike) -> str:
    """The SHA-256 of a regular file (:func:`open_regular`'s checks)."""
    h = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class RunFiles:
    """A finished run folder whose ``meta.json`` parsed and whose listed files match their SHA-256."""

    path: Path  #: as the user gave it
    meta: dict[str, Any]
    #: file name -> path, every file meta.json lists (all checked)
    files: dict[str, Path]


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut to ``limit`` characters."""
    text = "; ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_meta(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``RUN/meta.json``, checked for the fields every loader needs (one-line errors naming the field)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RnnkitError(f"no run folder {run_dir}")
    meta_path = run_dir / "meta.json"
    if not os.path.lexists(meta_path):
        unfinished = (run_dir / "config.yaml").exists()
        hint = " (training did not finish; continue it with rnnkit train --resume)" if unfinished else ""
        raise RnnkitError(f"{run_dir} is not a finished run folder: no meta.json{hint}")
    try:
        meta = json.loads(read_regular(meta_path, META_MAX_BYTES).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise RnnkitError(f"invalid JSON: {one_line(e)}", where=str(meta_path)) from None
    except OSError as e:
        raise RnnkitError(f"cannot read: {one_line(e)}", where=str(meta_path)) from None
    if not isinstance(meta, dict):
        raise RnnkitError(f"expected a JSON object, got {type(meta).__name__}", where=str(meta_path))
    if meta.get("format_version") != FORMAT_VERSION:
        version = meta.get("format_version")
        raise RnnkitError(f"format_version {version!r} is not {FORMAT_VERSION}", where=str(meta_path))
    for key, kind in (("task", str), ("model", dict), ("task_state", dict), ("files", dict)):
        if not isinstance(meta.get(key), kind):
            raise RnnkitError(f"field {key!r} is missing or not a {kind.__name__} (damaged file)", where=str(meta_path))
    if not isinstance(meta["model"].get("kind"), str) or not isinstance(meta["model"].get("config"), dict):
        raise RnnkitError("field 'model' needs 'kind' and 'config' (damaged file)", where=str(meta_path))
    if "model.safetensors" not in meta["files"]:
        raise RnnkitError("field 'files' has no 'model.safetensors' (damaged file)", where=str(meta_path))
    return meta


def open_run(run_dir: str | os.PathLike, state_files: tuple[str, ...] = ()) -> RunFiles:
    """Check a finished run folder before anything in it is parsed beyond ``meta.json``: every file in
    ``meta.json``'s ``files`` is a plain name, a regular file inside the folder and has its SHA-256; every
    ``task_state`` key in ``state_files`` names one of those files; ``config.yaml`` is a regular file of at
    most :data:`CONFIG_MAX_BYTES` (with a SHA-256 in runs written since rnnkit records it; an older run
    without one still loads: its config is validated like any config file)."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    meta_path = run_dir / "meta.json"
    files: dict[str, Path] = {}
    for name, entry in meta["files"].items():  # every file the run reads, checked before anything is loaded
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(digest, str) or not is_plain_name(name):
            raise RnnkitError(
                f"files.{short_repr(name)}: expected a plain file name with a sha256", where=str(meta_path)
            )
        path = run_dir / name
        if sha256_regular(path) != digest:
            raise RnnkitError("does not match the SHA-256 in meta.json (damaged or altered)", where=str(path))
        files[name] = path
    state = meta["task_state"]
    for key in state_files:
        if key not in state:
            continue
        value = state[key]
        if not is_plain_name(value):
            raise RnnkitError(
                f"task_state.{key}: {short_repr(value)} is not a plain file name inside the run folder "
                "(paths are refused)",
                where=str(meta_path),
            )
        if value not in files:
            raise RnnkitError(
                f"task_state.{key}: {short_repr(value)} has no SHA-256 in field 'files'", where=str(meta_path)
            )
        with open_regular(files[value], STATE_FILE_MAX_BYTES):  # parsed whole by the task: bounded first
            pass
    config = run_dir / "config.yaml"
    with open_regular(config, CONFIG_MAX_BYTES):
        pass
    return RunFiles(run_dir, meta, files)


def weights_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors file's header, read with a size cap and checked against
    the file's size (no tensor is loaded); a one-line error for a file that is not consistent safetensors."""
    path = Path(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > HEADER_MAX_BYTES or 8 + n > size:
            raise RnnkitError("not a safetensors file (bad header length)", where=str(path))
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise RnnkitError(f"not a safetensors file (header: {one_line(e)})", where=str(path)) from None
    if not isinstance(header, dict):
        raise RnnkitError("not a safetensors file (header is not an object)", where=str(path))
    data_bytes = size - 8 - n
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        ok = (
            dtype in _DTYPE_BYTES
            and isinstance(shape, list)
            and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
        )
        if ok:
            numel = 1
            for d in shape:
                numel *= d
            ok = 0 <= offsets[0] <= offsets[1] <= data_bytes and offsets[1] - offsets[0] == numel * _DTYPE_BYTES[dtype]
        if not ok:
            raise RnnkitError(f"not a consistent safetensors file (tensor {short_repr(name)})", where=str(path))
        total += numel
        out[name] = (dtype, tuple(shape))
    if total > MAX_ELEMENTS:
        raise RnnkitError(f"holds {total:,} weights, more than rnnkit loads ({MAX_ELEMENTS:,})", where=str(path))
    return out


def check_tree(run_dir: str | os.PathLike) -> None:
    """Refuse a run folder that holds a symbolic link, a FIFO or a device anywhere inside it (before
    ``--resume`` writes ``train.log``, ``metrics.jsonl``, ``plots/`` or a checkpoint there: rnnkit never
    writes through a link)."""
    stack = [Path(run_dir)]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                path = Path(entry.path)
                shown = str(path) if str(path).isprintable() else short_repr(str(path), 200)
                if entry.is_symlink():
                    raise RnnkitError("is a symbolic link; rnnkit does not write through links in a run folder "
                                      "(replace it with a regular file or remove it)", where=shown)  # fmt: skip
                if entry.is_dir(follow_symlinks=False):
                    stack.append(path)
                elif not entry.is_file(follow_symlinks=False):
                    mode = entry.stat(follow_symlinks=False).st_mode
                    raise RnnkitError(f"is {_kind(mode)}, not a regular file or folder", where=shown)


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``RUN/.lock`` while a process trains into the folder: a second
    ``--resume`` of the same run is one line naming the holder's pid. The file is removed on release."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the lock is advisory anyway
            return self
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        while True:
            try:
                fd = os.open(self.path, flags, 0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise RnnkitError("is a symbolic link; remove it", where=str(self.path)) from None
                raise RnnkitError(f"cannot create the lock file: {e.strerror or e}", where=str(self.path)) from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise RnnkitError(f"is {_kind(st.st_mode)}, not a lock file", where=str(self.path))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                holder = holder if holder.isdigit() else "unknown"
                raise RnnkitError(
                    f"run folder is in use by another process (pid {holder})", where=str(self.path.parent)
                ) from None
            try:  # the holder before us may have removed the file after we opened it: lock the one on disk
                same = os.stat(self.path, follow_symlinks=False).st_ino == st.st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class LoadedRun:
    """A finished run, loaded: what ``predict``, ``evaluate``, ``generate``, ``serve`` and ``export`` use
    (:func:`rnnkit.tasks.runner.load_run` builds it)."""

    path: Path
    meta: dict[str, Any]
    config: Any  #: the task's RecipeConfig
    task: Any  #: the task (a TaskKind) with the run's preprocessing
    model: Any  #: the model, weights loaded, in eval mode
    #: the preprocessing files named in task_state (plain names, checked against meta.json's SHA-256)
    state_files: list[str] = field(default_factory=list)
