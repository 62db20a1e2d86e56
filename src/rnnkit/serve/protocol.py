"""The HTTP connection guard under ``rnnkit serve``: a header-read timeout and a cap on open connections.

uvicorn (h11) bounds neither: a client may open a connection and send nothing, or trickle its request line
and headers a byte at a time, forever (its keep-alive timer is cancelled by any byte received), and its
``limit_concurrency`` answers 503 only once a request's headers have been read, so stalled connections
still hold a file descriptor each until the process can accept no more. :class:`GuardedH11Protocol` adds:

- **header timeout**: a connection must deliver a complete request line and headers within
  ``header_timeout_s`` of opening (and of the end of its previous response, on keep-alive); otherwise it
  is closed (with a JSON 408 when it had sent part of a request). The body has its own limit
  (:mod:`rnnkit.serve.limits`).
- **connection cap**: at most ``max_connections`` connections are open. A new one over the cap closes the
  connection that has waited longest for a request's headers (stalled or idle keep-alive); if every
  connection is busy with a request, the new one is answered 503 and closed. Open file descriptors stay
  bounded, and a new client is never locked out by clients that only hold connections open.

:func:`uvicorn_config` builds the ``uvicorn.Config`` that ``rnnkit serve`` (and the tests) run.
"""

from __future__ import annotations

import json
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import HEADERS

#: file descriptors kept free for everything else (the run's files, logs, the worker's temporary files)
SPARE_FDS = 64
#: the listening socket's backlog, which is also how many connections asyncio accepts in one go (before the
#: connections closed to make room release their descriptors): kept small so the cap holds
BACKLOG = 32


def _raw_error(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close", *(f"{k.decode()}: {v.decode()}" for k, v in HEADERS)]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout and a connection cap (module docstring)."""

    header_timeout_s: float = 10.0
    max_connections: int = 128

    @classmethod
    def with_limits(cls, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
        if not header_timeout_s > 0 or max_connections < 1:
            raise ValueError(f"bad connection limits: {header_timeout_s}, {max_connections}")
        return type(cls.__name__, (cls,), {"header_timeout_s": header_timeout_s, "max_connections": max_connections})

    # -- the header timer --------------------------------------------------------------------------------
    def _awaiting_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._waiting_since = time.monotonic()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._on_header_timeout)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or not self._awaiting_headers():
            return
        if self.conn.trailing_data[0]:  # part of a request arrived, never all of its headers
            message = f"request headers not received within {self.header_timeout_s:g} s"
            self.transport.write(_raw_error(408, "Request Timeout", message))
        self.transport.close()

    # -- the cap -----------------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        if len(self.connections) <= self.max_connections:
            return
        idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol)
                and c._awaiting_headers() and not c.transport.is_closing()]  # fmt: skip
        if idle:
            oldest = min(idle, key=lambda c: c._waiting_since)
            oldest._disarm()
            oldest.transport.close()
            return
        self._disarm()
        transport.write(_raw_error(503, "Service Unavailable", "the server is busy (too many connections); try again"))
        transport.close()

    # -- hooks into the request cycle --------------------------------------------------------------------
    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # a request's headers are in: the body and the answer have their own limits

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._awaiting_headers() and self.conn.our_state is not h11.ERROR:
            self._arm()  # keep-alive: the next request's headers are due within the timeout too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def fd_limit() -> int | None:
    """This process's soft limit on open files, or None where unknown."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(max_connections: int) -> int:
    """``max_connections``, lowered so that the connections (and one accept burst) fit this process's file
    descriptor limit."""
    limit = fd_limit()
    if limit is None:
        return max_connections
    return max(1, min(max_connections, limit - SPARE_FDS - BACKLOG))


def uvicorn_config(app, host: str, port: int, header_timeout_s: float, max_connections: int, **kw: Any):
    """The ``uvicorn.Config`` for ``app``: h11 with :class:`GuardedH11Protocol`, no server header."""
    import uvicorn

    protocol = GuardedH11Protocol.with_limits(header_timeout_s, connection_cap(max_connections))
    options: dict[str, Any] = {"loop": "asyncio", "lifespan": "on", "server_header": False, "log_level": "info",
                               "timeout_keep_alive": max(1, int(header_timeout_s)), "backlog": BACKLOG}  # fmt: skip
    options |= kw
    return uvicorn.Config(app, host=host, port=port, http=protocol, **options)


__all__ = ["GuardedH11Protocol", "connection_cap", "uvicorn_config"]
