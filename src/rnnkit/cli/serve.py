"""``rnnkit serve``: an HTTP API and a web page over a finished run folder (needs the ``serve`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import make_parser, positive_int

EPILOG = """\
examples:
  rnnkit serve runs/quickstart                      # http://127.0.0.1:8000/ : the page; /docs: see /openapi.json
  rnnkit serve runs/g2p --port 8080 --max-batch 64
  curl -s localhost:8000/predict -H 'content-type: application/json' -d '{"inputs": ["a fine film"]}'

Endpoints: POST /predict, POST /generate, GET /health, GET /info, GET /openapi.json, the page at /.
The server listens on 127.0.0.1 (this machine only) unless --host says otherwise.
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
                   help="how long a request waits for others to batch with (default: 5)")  # fmt: skip
    p.add_argument("--max-body-bytes", type=positive_int, default=1 << 20,
                   help="larger request bodies get 413 (default: 1048576)")  # fmt: skip
    p.add_argument("--timeout-s", type=positive_float, default=30.0,
                   help="per request: body receipt (408), model answer (503/504) (default: 30)")  # fmt: skip
    p.add_argument("--max-inputs", type=positive_int, default=256, help="inputs per request (default: 256)")
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
    from rnnkit.tasks.runner import load_run

    settings = ServeSettings(
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout_s, max_inputs=args.max_inputs,
    )  # fmt: skip
    loaded = load_run(args.run_dir)  # an unknown or unfinished run fails here, before anything listens
    app = create_app(loaded, settings)
    config = uvicorn.Config(app, host=args.host, port=args.port, http="h11", loop="asyncio", lifespan="on",
                            timeout_keep_alive=30, log_level="info", server_header=False)  # fmt: skip
    uvicorn.Server(config).run()
    return 0
