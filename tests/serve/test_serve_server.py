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


def _read_until_closed(sock: socket.socket, limit_s: float = 15.0) -> bytes:
    sock.settimeout(limit_s)
    chunks = []
    try:
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    return b"".join(chunks)


def test_stalled_connections_cannot_lock_out_a_new_client(attention_run):
    app = create_app(attention_run)
    with running_server(app, header_timeout_s=60, max_connections=4) as url:
        host, port = url.removeprefix("http://").split(":")
        stalled = []
        for _ in range(12):  # three times the cap, each holding a connection with half a request line
            s = socket.create_connection((host, int(port)), timeout=10)
            s.sendall(b"GET /health HTTP/1.1\r\nHo")
            stalled.append(s)
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/health").json()["status"] == "ok"
            assert client.post("/predict", json={"inputs": ["a great film"]}).status_code == 200
        # the longest-waiting stalled connections were closed to make room (no answer: they sent no request)
        assert _read_until_closed(stalled[0]) == b"" and _read_until_closed(stalled[1]) == b""
        for s in stalled:
            s.close()


def test_headers_must_arrive_within_the_header_timeout(attention_run):
    app = create_app(attention_run)
    with running_server(app, header_timeout_s=0.5) as url:
        host, port = url.removeprefix("http://").split(":")
        partial = socket.create_connection((host, int(port)), timeout=10)
        partial.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        idle = socket.create_connection((host, int(port)), timeout=10)
        answer = _read_until_closed(partial)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b'{"error": "request headers not received within 0.5 s"}' in answer
        assert _read_until_closed(idle) == b""  # a connection that never sent anything is closed
        # keep-alive: the next request's headers are due within the timeout too, byte by byte or not
        kept = socket.create_connection((host, int(port)), timeout=10)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nG")  # then one byte of the next
        answer = _read_until_closed(kept)
        assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer
        for s in (partial, idle, kept):
            s.close()
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/health").status_code == 200


def test_300_stalled_connections_do_not_lock_out_a_server_with_256_file_descriptors(attention_run, tmp_path):
    import resource
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def at_most_256_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    cmd = [sys.executable, "-m", "rnnkit", "serve", str(attention_run), "--port", str(port), "--header-timeout-s", "60"]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would block the server
        server = subprocess.Popen(cmd, preexec_fn=at_most_256_files, stdout=out, stderr=subprocess.STDOUT)
    stalled: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        for _ in range(300):  # more connections than the server may open files
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /health HTTP/1.1\r\nHo")
            stalled.append(s)
        with httpx.Client(base_url=url, timeout=20) as client:
            assert client.get("/health").status_code == 200
            assert client.post("/predict", json={"inputs": ["a great film"]}).status_code == 200
        assert "out of system resource" not in log.read_text()  # never ran out of file descriptors
    finally:
        for s in stalled:
            s.close()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(15)
