"""Run folders: pick a name that never clobbers an earlier run, build the folder aside, publish it whole.

A run is written into ``<runs_dir>/.<name>.tmp-<pid>`` and renamed to ``<runs_dir>/<name>`` only when it
is complete, so an interrupted or failed run never leaves a half-written folder under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from rnnkit.errors import RnnkitError

logger = logging.getLogger("rnnkit")


def check_run_name(name: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or os.sep in name:
        raise RnnkitError(f"invalid run name {name!r}: use a plain folder name, not a path or a hidden name")
    return name


def next_free_name(runs_dir: Path, base: str) -> str:
    """``base`` if ``runs_dir/base`` does not exist, else ``base-2``, ``base-3``, ..."""
    name, i = base, 2
    while (runs_dir / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


class RunFolder:
    """Where a run goes, and the staging folder it is built in.

    ``RunFolder(runs_dir, name=None, default="quickstart")`` picks the first free ``default``,
    ``default-2``, ... An explicit ``name`` that exists is refused unless ``overwrite``.
    Use as a context manager: yields the staging folder; on success it is renamed into place, on error
    it is removed and nothing under the final name changes.
    """

    def __init__(
        self, runs_dir: str | Path, name: str | None = None, *, default: str = "quickstart", overwrite: bool = False
    ) -> None:
        self.runs_dir = Path(runs_dir)
        self.auto_name = name is None
        self.base = check_run_name(default if name is None else name)
        self.overwrite = overwrite
        if self.runs_dir.exists() and not self.runs_dir.is_dir():
            raise RnnkitError(f"runs folder {self.runs_dir} exists and is not a folder")
        if self.auto_name:
            self.name = next_free_name(self.runs_dir, self.base)
        else:
            self.name = self.base
            if self.path.exists() and not overwrite:
                raise RnnkitError(f"run folder {self.path} already exists; choose another --name or pass --overwrite")
        self.staging = self.runs_dir / f".{self.base}.tmp-{os.getpid()}"

    @property
    def path(self) -> Path:
        return self.runs_dir / self.name

    def __enter__(self) -> Path:
        if self.staging.exists():  # left by an earlier process that had our pid and was killed
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        return self.staging

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        try:
            self._publish()
        except BaseException:
            shutil.rmtree(self.staging, ignore_errors=True)
            raise

    def _publish(self) -> None:
        if not self.auto_name and self.overwrite and self.path.exists():
            old = self.runs_dir / f".{self.name}.old-{os.getpid()}"
            os.rename(self.path, old)
            os.rename(self.staging, self.path)
            shutil.rmtree(old, ignore_errors=True)
            return
        while True:
            # rename() onto an existing non-empty folder fails, so a folder that appeared meanwhile
            # (another run with the same name) is never replaced.
            try:
                if self.path.exists():
                    raise FileExistsError(errno.EEXIST, "exists", str(self.path))
                os.rename(self.staging, self.path)
                return
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) and not isinstance(e, FileExistsError):
                    raise
                if not self.auto_name:
                    raise RnnkitError(f"run folder {self.path} appeared while training; not replacing it") from e
                self.name = next_free_name(self.runs_dir, self.base)
                logger.info("run folder taken meanwhile; publishing as %s", self.path)


@contextlib.contextmanager
def staged_run(
    runs_dir: str | Path, name: str | None = None, *, default: str = "quickstart", overwrite: bool = False
) -> Iterator[tuple[RunFolder, Path]]:
    """``with staged_run(...) as (run, staging):`` — build in ``staging``; ``run.path`` is final afterwards."""
    run = RunFolder(runs_dir, name, default=default, overwrite=overwrite)
    with run as staging:
        yield run, staging
