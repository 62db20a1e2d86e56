"""ASGI middleware: request body size and time limits, and security headers on every response.

A body whose ``Content-Length`` is over ``max_body_bytes`` is refused (413) before a byte of it is read; a
chunked body is counted as it arrives and refused once it passes the limit. A client that sends its headers
and then stalls (or trickles the body) gets 408 once ``body_timeout_s`` has passed since the request began;
the event loop serves other clients meanwhile. Errors are JSON like the app's own.

With ``allowed_hosts``, a request whose ``Host`` header names another host is refused (400) before the app
sees it: a web page on another site whose name an attacker points at 127.0.0.1 (DNS rebinding) sends its
own name as ``Host``, so it cannot read the server's answers. An IP address (any) is allowed when
``allow_ip_hosts``: rebinding needs a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time
from typing import Any

HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # the page loads its own script, style and images only (no other site, no inline script)
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    ),
]

#: a body over the limit but under this many times it is read and dropped before the 413 (a larger one is not read)
DRAIN_FACTOR = 8


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def host_name(header: bytes) -> str | None:
    """The host of a ``Host`` header without its port (``[::1]:80`` -> ``::1``), lower case; None if malformed."""
    try:
        text = header.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return text[1:end]
    name, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class SecurityAndLimits:
    def __init__(
        self,
        app,
        max_body_bytes: int,
        body_timeout_s: float,
        allowed_hosts: tuple[str, ...] | None = None,
        allow_ip_hosts: bool = False,
    ) -> None:
        self.app, self.max_body_bytes, self.body_timeout_s = app, max_body_bytes, body_timeout_s
        self.allowed_hosts = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.allow_ip_hosts = allow_ip_hosts

    def host_allowed(self, scope) -> bool:
        if self.allowed_hosts is None or "*" in self.allowed_hosts:
            return True
        hosts = [v for k, v in scope.get("headers", []) if k == b"host"]
        if len(hosts) != 1:
            return False
        name = host_name(hosts[0])
        return name is not None and (name in self.allowed_hosts or (self.allow_ip_hosts and _is_ip(name)))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.host_allowed(scope):
            await _send_error(
                send, 400, "this server does not answer for that Host header (see rnnkit serve --allowed-host)"
            )
            return
        started = False
        refused: _Refused | None = None

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal started
            if refused is not None:
                return  # the app's answer to a body it could not read is replaced by ours
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if int(length) > self.max_body_bytes:
                if int(length) <= DRAIN_FACTOR * self.max_body_bytes:
                    await self._drain(receive)  # so the client reads the 413 instead of a reset connection
                await _send_error(send, 413, f"request body of {int(length)} bytes is over {self.max_body_bytes}")
                return

        deadline = time.monotonic() + self.body_timeout_s
        received, body_done = 0, False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, body_done, refused
            if body_done:  # after the body only a disconnect can come: no deadline then
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                refused = _Refused(408, f"request body not received within {self.body_timeout_s:g} s")
                raise refused from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused = _Refused(413, f"request body is over {self.max_body_bytes} bytes")
                    raise refused
                body_done = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except Exception:
            if refused is None:
                raise
        if refused is not None and not started:
            await _send_error(send, refused.status, refused.message)

    async def _drain(self, receive) -> None:
        """Read and drop a refused body (bounded by ``DRAIN_FACTOR`` x the limit and by the timeout)."""
        deadline = time.monotonic() + self.body_timeout_s
        with contextlib.suppress(asyncio.TimeoutError):
            while True:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *HEADERS]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
