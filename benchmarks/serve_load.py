"""Load and abuse test of ``rnnkit serve`` on loopback (issue #9, item 5).

Starts ``rnnkit serve RUN`` in its own process on a free 127.0.0.1 port, then sends ``--requests`` ``/predict``
requests (one review each) from ``--clients`` concurrent clients (httpx, asyncio) and reports throughput,
p50/p99 latency and the errors those clients saw. While that load runs, abusive clients send oversize bodies
(expect 413), malformed JSON (400), too many inputs (422), stall after sending their headers and part of
the body (408 after ``--timeout-s``) and stall inside their headers (408 after ``--header-timeout-s``); the
normal clients must see zero errors. The server's ``/health`` gives how many model calls answered them
(micro-batching). With ``--compare``, the same load runs against a second server with ``--max-batch 1`` (no
merging, the same abusive clients), and both throughputs and p99 latencies are printed with their ratios.
The load generator runs in this process, on the same cores as the server: compare on a quiet machine.

Bounded: a fixed number of requests, and ``--deadline-s`` for the whole run; the server process is ended
at the end. Run: ``python benchmarks/serve_load.py [--run runs/quickstart] [--compare]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

HOST = "127.0.0.1"  # loopback only: this script never sends traffic anywhere else
OPENINGS = ["a moving, beautifully acted film", "two hours I will not get back", "dull and clumsy",
            "the cast is superb but the plot is tedious", "a wonderful, funny and sharp comedy",
            "an awful script, badly directed", "not great, not terrible", "the best film of the year",
            "I laughed, I cried, a triumph", "flat, lifeless and far too long"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run: str, port: int, args, max_batch: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rnnkit", "serve", run, "--host", HOST, "--port", str(port),
           "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms), "--timeout-s", str(args.timeout_s),
           "--max-body-bytes", str(args.max_body_bytes), "--header-timeout-s", str(args.header_timeout_s)]  # fmt: skip
    if args.quantize:
        cmd += ["--quantize", args.quantize]
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode} before answering")
        try:
            return httpx.get(url + "/info", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"the server did not answer within {timeout:.0f} s")


async def normal_load(url: str, n: int, clients: int, deadline: float, client_kind: str = "raw") -> dict:
    """``n`` /predict requests of one review from ``clients`` keep-alive connections. ``raw``: a minimal
    HTTP/1.1 client on asyncio streams, so that the load generator (on the same cores) costs the server
    little; ``httpx``: the httpx client (heavier, closer to a real client)."""
    latencies: list[float] = []
    began: list[float] = []  # when each answered request was sent, seconds after the load started
    errors: Counter = Counter()
    counter = iter(range(n))
    rng = random.Random(0)
    texts = [f"{rng.choice(OPENINGS)} (review {i})" for i in range(n)]
    port = int(url.rsplit(":", 1)[1])

    def check(status: int, body: bytes, i: int) -> None:
        if status != 200 or json.loads(body)["results"][0]["text"] != texts[i]:
            errors[f"HTTP {status}"] += 1

    async def raw_client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for i in counter:
                if time.monotonic() > deadline:
                    errors["deadline"] += 1
                    continue
                body = json.dumps({"inputs": [texts[i]]}).encode()
                t0 = time.perf_counter()
                try:
                    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                    lines = head.decode("latin-1").split("\r\n")
                    status = int(lines[0].split()[1])
                    length = next(int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:"))
                    answer = await asyncio.wait_for(reader.readexactly(length), 60)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, StopIteration, ValueError) as e:
                    errors[type(e).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(HOST, port)
                    continue
                check(status, answer, i)
                latencies.append(time.perf_counter() - t0)
                began.append(t0 - start)
        finally:
            writer.close()

    async def httpx_client(c: httpx.AsyncClient) -> None:
        for i in counter:
            if time.monotonic() > deadline:
                errors["deadline"] += 1
                continue
            t0 = time.perf_counter()
            try:
                r = await c.post("/predict", json={"inputs": [texts[i]]})
                check(r.status_code, r.content, i)
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            began.append(t0 - start)

    start = t0 = time.perf_counter()
    if client_kind == "raw":
        await asyncio.gather(*(raw_client() for _ in range(clients)))
    else:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
            await asyncio.gather(*(httpx_client(c) for _ in range(clients)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "latencies": latencies, "began": began, "errors": errors}


async def slow_client(port: int, wait: float) -> str:
    """Headers and part of a body, then nothing: the server should answer 408 and close."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b'Content-Length: 1000\r\n\r\n{"inputs": ["slow')  # fmt: skip
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.read(200), wait)
        return head.split(b"\r\n", 1)[0].decode(errors="replace").removeprefix("HTTP/1.1 ") or "closed"
    except asyncio.TimeoutError:
        return "no answer"
    finally:
        writer.close()


async def stalled_headers_client(port: int, wait: float) -> str:
    """Half a request's headers, then nothing: the server should answer 408 and close."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.read(200), wait)
        return head.split(b"\r\n", 1)[0].decode(errors="replace").removeprefix("HTTP/1.1 ") or "closed"
    except asyncio.TimeoutError:
        return "no answer"
    finally:
        writer.close()


async def abuse(url: str, port: int, args) -> Counter:
    seen: Counter = Counter()
    big = json.dumps({"inputs": ["x" * (args.max_body_bytes + 10)]})
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:

        async def send(kind: str, **kw) -> None:
            for _ in range(args.abuse):
                try:
                    r = await c.post("/predict", **kw)
                    seen[f"{kind} -> {r.status_code}"] += 1
                except httpx.HTTPError as e:
                    seen[f"{kind} -> {type(e).__name__}"] += 1
                await asyncio.sleep(0.05)

        headers = {"content-type": "application/json"}
        slow = [slow_client(port, args.timeout_s + 15) for _ in range(args.slow_clients)]
        slow += [stalled_headers_client(port, args.header_timeout_s + 15) for _ in range(args.stalled_header_clients)]
        jobs = [
            send("oversize body", content=big, headers=headers),
            send("malformed JSON", content=b'{"inputs": ["unclosed', headers=headers),
            send("too many inputs", json={"inputs": ["a"] * 100_000}),
        ]
        results = await asyncio.gather(*slow, *jobs)
        for status in results[: args.slow_clients]:
            seen[f"slow client -> {status}"] += 1
        for status in results[args.slow_clients : len(slow)]:
            seen[f"stalled headers -> {status}"] += 1
    return seen


async def one_server(run: str, args, max_batch: int, tmp: Path, with_abuse: bool) -> dict:
    port = free_port()
    url = f"http://{HOST}:{port}"
    proc = start_server(run, port, args, max_batch, tmp / f"server-{max_batch}.log")
    try:
        info = wait_ready(url, proc)
        async with httpx.AsyncClient(base_url=url) as c:  # warm up
            await c.post("/predict", json={"inputs": OPENINGS})
        deadline = time.monotonic() + args.deadline_s
        load = normal_load(url, args.requests, args.clients, deadline, args.client)
        if with_abuse:
            result, abused = await asyncio.gather(load, abuse(url, port, args))
        else:
            result, abused = await load, Counter()
        health = httpx.get(url + "/health", timeout=10).json()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    log = (tmp / f"server-{max_batch}.log").read_text(errors="replace").splitlines()
    problems = [line for line in log if "ERROR" in line or "WARNING" in line or "Traceback" in line]
    return {"info": info, "abuse": abused, "health": health, "server_problems": problems, **result}


def percentile(latencies: list[float], q: float) -> float:
    """The ``q`` quantile of ``latencies`` (seconds), in milliseconds."""
    lat = sorted(latencies)
    return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


def report(name: str, r: dict, n: int) -> None:
    lat = sorted(r["latencies"])
    p = lambda q: percentile(lat, q)  # noqa: E731
    errors = sum(r["errors"].values())
    h = r["health"]
    print(f"\n{name}")
    print(f"  requests answered     {len(lat)} of {n} in {r['seconds']:.2f} s -> {len(lat) / r['seconds']:.1f} req/s")
    print(f"  latency               p50 {p(0.50):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1] * 1000:.1f} ms, "
          f"mean {statistics.fmean(lat) * 1000:.1f} ms")  # fmt: skip
    slow = sorted(zip(r["latencies"], r["began"], strict=True))[-max(1, len(lat) // 100) :]
    when = sorted(b for _, b in slow)
    print(f"  slowest 1% were sent  {when[0]:.2f}-{when[-1]:.2f} s after the load began "
          f"(median {statistics.median(when):.2f} s of {r['seconds']:.2f} s)")  # fmt: skip
    print(f"  errors (normal load)  {errors}" + (f" {dict(r['errors'])}" if errors else ""))
    print(f"  model calls           {h['model_calls']} ({h['merged_calls']} merged several requests; "
          f"{(len(lat) + 1) / max(h['model_calls'], 1):.1f} requests per call on average)")  # fmt: skip
    print(f"  server log            {len(r['server_problems'])} warnings/errors"
          + "".join(f"\n    {line}" for line in r["server_problems"][:5]))  # fmt: skip
    for k, v in sorted(r["abuse"].items()):
        print(f"  abuse: {k:32s} x{v}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/quickstart", help="a finished run folder (default: runs/quickstart)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--client", choices=["raw", "httpx"], default="raw",
                    help="the normal clients: a minimal HTTP/1.1 client (default; cheap, so the server is measured) "
                    "or httpx")  # fmt: skip
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--timeout-s", type=float, default=5.0, help="the server's --timeout-s (slow clients get 408)")
    ap.add_argument("--max-body-bytes", type=int, default=1 << 20)
    ap.add_argument("--abuse", type=int, default=20, help="oversize / malformed / too-many requests of each kind")
    ap.add_argument("--slow-clients", type=int, default=4, help="clients that stall inside their body")
    ap.add_argument("--stalled-header-clients", type=int, default=4, help="clients that stall inside their headers")
    ap.add_argument("--header-timeout-s", type=float, default=2.0, help="the server's --header-timeout-s")
    ap.add_argument("--quantize", choices=["int8"], default=None, help="serve the int8 ONNX graph (both servers)")
    ap.add_argument("--deadline-s", type=float, default=600, help="the whole load stops after this")
    ap.add_argument("--compare", action="store_true", help="also run without micro-batching (--max-batch 1)")
    args = ap.parse_args(argv)
    if not (Path(args.run) / "meta.json").is_file():
        print(f"{args.run} is not a finished run folder (train one: rnnkit quickstart)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(one_server(args.run, args, args.max_batch, Path(tmp), with_abuse=True))
        base = None
        if args.compare:
            base = asyncio.run(one_server(args.run, args, 1, Path(tmp), with_abuse=True))
    info = r["info"]
    print(f"rnnkit serve under load: run {args.run} ({info['task']}, {info['model']['parameters']:,} parameters), "
          f"{args.requests} /predict requests of one review from {args.clients} concurrent {args.client} clients, "
          f"loopback; "
          f"server --max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g} "
          f"--timeout-s {args.timeout_s:g}" + (f" --quantize {args.quantize}" if args.quantize else ""))  # fmt: skip
    report(f"micro-batching (--max-batch {args.max_batch}), with abusive clients alongside", r, args.requests)
    if base is not None:
        report("no merging (--max-batch 1), the same abusive clients alongside", base, args.requests)
        rate, base_rate = len(r["latencies"]) / r["seconds"], len(base["latencies"]) / base["seconds"]
        p99, base_p99 = percentile(r["latencies"], 0.99), percentile(base["latencies"], 0.99)
        print(f"\nmicro-batching: {rate:.1f} req/s, p99 {p99:.1f} ms; no merging: {base_rate:.1f} req/s, "
              f"p99 {base_p99:.1f} ms")  # fmt: skip
        print(f"throughput, micro-batching / no merging: {rate / base_rate:.2f}x (target >= 1.3x); "
              f"p99, micro-batching / no merging: {p99 / base_p99:.2f}x (target <= 1.0x)")  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nmachine: {machine()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
          f"load average at the end {load}; date {dt.date.today().isoformat()}")  # fmt: skip
    return 0 if sum(r["errors"].values()) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
