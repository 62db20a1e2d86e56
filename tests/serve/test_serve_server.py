"""A real uvicorn server on a free loopback port: a client that sends headers and stalls gets 408 after the
timeout while other clients are answered at once."""

from __future__ import annotations

import socket
import threading
import time

import httpx
from serve_helpers import running_server

from rnnkit.serve.app import ServeSettings, create_app


def test_a_stalled_client_does_not_hold_up_others(attention_run):
    app = create_app(attention_run, ServeSettings(timeout_s=1.5))
    with running_server(app) as url:
        host, port = url.removeprefix("http://").split(":")
        stalled = socket.create_connection((host, int(port)), timeout=10)
        stalled.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"inputs\": [")  # fmt: skip
        t0 = time.monotonic()
        answer = {}

        def read_all():  # the server closes the connection after its answer
            chunks = []
            while chunk := stalled.recv(4096):
                chunks.append(chunk)
            answer["raw"] = b"".join(chunks)

        threading.Thread(target=read_all, daemon=True).start()
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(5):  # other clients are served while the stalled one waits
                assert client.post("/predict", json={"inputs": ["a great film"]}).status_code == 200
            assert time.monotonic() - t0 < 1.5 and "raw" not in answer
            deadline = time.monotonic() + 8
            while "raw" not in answer and time.monotonic() < deadline:
                time.sleep(0.05)
            assert answer["raw"].startswith(b"HTTP/1.1 408 "), answer
            assert b'"error": "request body not received within 1.5 s"' in answer["raw"]
            assert time.monotonic() - t0 >= 1.4
            assert client.get("/health").json()["status"] == "ok"
        stalled.close()
