"""Helpers for the serve tests: a seasonal series as CSV text, a real uvicorn server in a thread."""

from __future__ import annotations

import contextlib
import math
import threading
import time


def seasonal_csv(n: int) -> str:
    rows = [f"{1950 + i // 12}-{i % 12 + 1:02d},{10 + 3 * math.sin(2 * math.pi * i / 12):.5f}" for i in range(n)]
    return "month,value\n" + "\n".join(rows) + "\n"


@contextlib.contextmanager
def running_server(app, timeout: float = 20.0, header_timeout_s: float = 10.0, max_connections: int = 128):
    """``app`` served by uvicorn (as ``rnnkit serve`` runs it) on a free loopback port in a thread; yields its
    base URL."""
    import uvicorn

    from rnnkit.serve.protocol import uvicorn_config

    config = uvicorn_config(app, "127.0.0.1", 0, header_timeout_s, max_connections, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
