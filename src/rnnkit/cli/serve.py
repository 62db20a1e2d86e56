"""``rnnkit serve``: an HTTP API and a web page over a finished run folder (needs the ``serve`` extra)."""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

from ..formats import QUANTIZE
from .common import make_parser, positive_int

EPILOG = """\
examples:
  rnnkit serve runs/quickstart                      # http://127.0.0.1:8000/ : the page; /docs: see /openapi.json
  rnnkit serve runs/g2p --port 8080 --max-batch 64
  rnnkit serve runs/quickstart --quantize int8       # the int8 ONNX graph (needs rnnkit[export])
  rnnkit serve runs/quickstart --host 0.0.0.0 --allowed-host mybox.lan
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"inputs": ["a fine film"]}'

Endpoints: POST /predict, POST /generate, GET /health, GET /info, GET /openapi.json, the page at /.
The server listens on 127.0.0.1 (this machine only) unless --host says otherwise, and answers only requests
whose Host header is 127.0.0.1, localhost, [::1], the --host value or an --allowed-host name (any IP address
too when --host is 0.0.0.0 or ::); others get 400 (a defence against DNS rebinding).
Needs: pip install 'rnnkit[serve]'
"""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    if text.strip() in ("0", "0.0"):
        return 0.0
    return positive_float(text)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = make_parser(
        subparsers,
        "serve",
        help="serve a trained run over HTTP, with a web page",
        description="Load a finished run folder and answer /predict, /generate, /health and /info requests "
        "(JSON, OpenAPI schema at /openapi.json), with a web page at /. Concurrent /predict requests are "
        "merged into batches.",
        epilog=EPILOG,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="a finished run folder, e.g. runs/quickstart")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free port)")
    p.add_argument("--max-batch", type=positive_int, default=32, help="inputs merged into one model call (default: 32)")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                   help="the longest a model call waits for requests already on their way, to merge with them; "
                   "never waits when none is (default: 5)")  # fmt: skip
    p.add_argument("--max-body-bytes", type=positive_int, default=1 << 20,
                   help="larger request bodies get 413 (default: 1048576)")  # fmt: skip
    p.add_argument("--timeout-s", type=positive_float, default=30.0,
                   help="per request: body receipt (408), model answer (503/504) (default: 30)")  # fmt: skip
    p.add_argument("--max-inputs", type=positive_int, default=256, help="inputs per request (default: 256)")
    p.add_argument("--max-generate-tokens", type=positive_int, default=2000,
                   help="tokens per generated sample; caps the run's own setting too (default: 2000)")  # fmt: skip
    p.add_argument("--max-generate-work", type=positive_int, default=4096,
                   help="generated tokens per request: prompts x samples x tokens (default: 4096)")  # fmt: skip
    p.add_argument("--header-timeout-s", type=positive_float, default=10.0,
                   help="a connection's request headers must arrive within this (default: 10)")  # fmt: skip
    p.add_argument("--max-connections", type=positive_int, default=128,
                   help="open connections; over it the longest-idle one is closed (default: 128, "
                   "lowered to fit the open-file limit)")  # fmt: skip
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this Host name (repeatable; '*': any)")  # fmt: skip
    p.add_argument("--quantize", choices=QUANTIZE, default=None,
                   help="int8: serve the dynamically quantized ONNX graph (ONNX Runtime, CPU)")  # fmt: skip
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rnnkit.errors import RnnkitError
    from rnnkit.serve import INSTALL_HINT, missing_extra

    if (missing := missing_extra()) is not None:
        raise RnnkitError(f"rnnkit serve needs the serve extra ({missing} is not installed): {INSTALL_HINT}")
    if not 0 <= args.port <= 65535:
        raise RnnkitError(f"--port must be 0..65535, got {args.port}")
    import uvicorn

    from rnnkit.serve.app import ServeSettings, create_app
    from rnnkit.serve.protocol import uvicorn_config
    from rnnkit.tasks.runner import load_run

    host = args.host.strip("[]")
    wildcard = host in ("0.0.0.0", "::", "")
    settings = ServeSettings(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout_s, max_inputs=args.max_inputs, max_generate_tokens=args.max_generate_tokens,
        max_generate_work=args.max_generate_work, header_timeout_s=args.header_timeout_s,
        max_connections=args.max_connections,
        allowed_hosts=tuple(dict.fromkeys(["127.0.0.1", "localhost", "::1", *([] if wildcard else [host]),
                                           *args.allowed_host])),
        allow_ip_hosts=wildcard,
    )  # fmt: skip
    loaded = load_run(args.run_dir)  # an unknown or unfinished run fails here, before anything listens
    model = None
    if args.quantize is not None:
        from rnnkit.export import quantized_model

        model = quantized_model(loaded)  # the int8 ONNX graph (built once, cached), as `rnnkit predict --quantize`
    app = create_app(loaded, settings, model=model)
    config = uvicorn_config(app, args.host, args.port, settings.header_timeout_s, settings.max_connections)
    # Everything loaded so far (torch, the model, the web stack: some 300,000 objects) lives as long as the
    # server. Left to the cyclic garbage collector, each full collection walks all of it while holding the GIL
    # (about 190 ms on a 2-core machine), and the first one comes with the first burst of requests. Frozen,
    # the collector never looks at them again.
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()
    return 0
