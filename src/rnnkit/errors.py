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


def short_text(text: object, limit: int = 80) -> str:
    """``str(text)`` for an error message: characters that are not printable (line ends, terminal escapes)
    written as escapes, cut to ``limit`` characters (``...`` marks a cut)."""
    text = str(text)[: limit + 1]
    text = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, built with :mod:`reprlib` so that a huge or deeply nested
    value costs no more than its first few items."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring = r.maxother = r.maxlong = limit
    r.maxlevel = 3
    try:
        text = r.repr(value)
    except ValueError:  # an int of more than 4300 digits
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
