"""``benchmarks/serve_load.py`` keeps running: a small bounded load with abusive clients alongside, against a
real ``rnnkit serve`` process on loopback. Nothing depends on the machine's speed: the server's timeout is
generous (30 s), so the normal clients must see no error however busy the machine is; speed is only reported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("serve_load", ROOT / "benchmarks" / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["serve_load"] = module
    spec.loader.exec_module(module)
    return module


def test_load_with_abuse_alongside_has_no_errors(attention_run, capsys):
    bench = load_benchmark()
    # clients stalled in their headers get 408 after 1 s; a stalled body (408 after --timeout-s) is tested in
    # test_serve_server.py, so the 30 s timeout does not make this test wait
    args = ["--run", str(attention_run), "--requests", "60", "--clients", "6", "--abuse", "2", "--timeout-s", "30",
            "--slow-clients", "0", "--stalled-header-clients", "2", "--header-timeout-s", "1",
            "--deadline-s", "300"]  # fmt: skip
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "requests answered     60 of 60" in out and "errors (normal load)  0" in out
    for line in ("malformed JSON -> 400", "oversize body -> 413", "too many inputs -> 422",
                 "stalled headers -> 408 Request Timeout x2"):  # fmt: skip
        assert line in out, out
    assert "p50" in out and "p99" in out and "machine:" in out


def test_refuses_an_unfinished_run(tmp_path, capsys):
    assert load_benchmark().main(["--run", str(tmp_path)]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
