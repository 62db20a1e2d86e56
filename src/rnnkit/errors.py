"""User-facing errors.

Anything a user can cause with bad input (a malformed file, a wrong config key, a missing run
folder) raises :class:`RnnkitError` with a one-line message that names the file/line/field and
what was wrong. The CLI prints it without a traceback and exits with status 2.
"""

from __future__ import annotations


class RnnkitError(Exception):
    """A problem with the user's input, reported as one line (exit status 2 on the command line)."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
