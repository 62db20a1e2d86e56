"""A fork server for the crash-safety tests: imports rnnkit, torch and matplotlib once, then forks a child per
command that runs ``rnnkit.cli.main.main(argv)`` (what ``python -m rnnkit`` runs) and exits with its status.

Starting ``python -m rnnkit`` costs seconds of imports (torch, its compiler stack on the first optimizer,
matplotlib); forking a warm process makes the 20+ SIGKILLs of ``test_crash_safety.py`` affordable. A forked
child is a real process: SIGKILL/SIGINT/SIGTERM reach it exactly as they would reach ``python -m rnnkit``.
The parent starts no threads and runs no torch operation before forking.

Protocol (one line each way, on stdin/stdout)::

    run <json: {"argv": [...], "stdout": path, "stderr": path}>   ->  pid <N>
    poll <N>                                                       ->  running | exit <status>
    wait <N>                                                       ->  exit <status>
    quit

``status`` is the exit code, or minus the signal number that ended the child.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _status(raw: int) -> int:
    return -os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)


def _child(spec: dict) -> None:
    out = os.open(spec["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(spec["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(out)
    os.close(err)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 1
    try:
        from rnnkit.cli.main import main

        code = main(spec["argv"])
    except BaseException:  # noqa: BLE001 - report, then exit like python would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def serve() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torch

    import rnnkit.cli.main  # noqa: F401
    import rnnkit.tasks  # noqa: F401

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # imports the optimizer's compiler stack once
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "run":
            pid = os.fork()
            if pid == 0:
                _child(json.loads(arg))
            print(f"pid {pid}", flush=True)
        elif cmd == "poll":
            done, raw = os.waitpid(int(arg), os.WNOHANG)
            print("running" if done == 0 else f"exit {_status(raw)}", flush=True)
        elif cmd == "wait":
            _, raw = os.waitpid(int(arg), 0)
            print(f"exit {_status(raw)}", flush=True)
        elif cmd == "quit":
            return


if __name__ == "__main__":
    serve()
