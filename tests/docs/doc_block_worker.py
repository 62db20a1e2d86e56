"""Runs the ```python blocks of one document, in order, in one namespace (so a block may use the names an
earlier block of the same page defined, as a reader following the page does).

Protocol: one JSON object per line on stdin, ``{"name": "README.md:70", "code": "..."}``; for each, one JSON
line ``{"ok": bool, "stdout": str, "error": str}`` on the process's stdout as it was at start. From then on
file descriptor 1 is stderr, so nothing a block, a library or C code prints can break the protocol.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
import types


def main() -> None:
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever writes to fd 1 from here on (C code, subprocesses) lands on stderr
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), encoding="utf-8", write_through=True)
    # the blocks run as a script's top level: their module is __main__ (pydantic, dataclasses and pickle look
    # classes' names up in sys.modules[cls.__module__]), a fresh one rather than this file's
    page = types.ModuleType("__main__")
    sys.modules["__main__"] = page
    namespace = page.__dict__
    for line in sys.stdin:
        request = json.loads(line)
        out = io.StringIO()
        reply = {"ok": True, "stdout": "", "error": ""}
        try:
            code = compile(request["code"], request["name"], "exec")
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
        except BaseException:  # noqa: BLE001 - a failing block is reported, then the next one runs
            reply.update(ok=False, error=traceback.format_exc())
        reply["stdout"] = out.getvalue()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()
