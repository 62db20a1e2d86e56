"""``rnnkit serve`` on the command line: loopback by default, flags reach the app, and a missing run,
an unfinished run or a missing extra end with one line and exit status 2 before anything listens."""

from __future__ import annotations

import pytest
import uvicorn

import rnnkit.serve
from rnnkit.cli.main import main


@pytest.fixture
def no_listen(monkeypatch):
    """Record what ``uvicorn.Server.run`` would serve instead of listening."""
    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: served.append(self.config))
    return served


def test_binds_to_loopback_by_default_and_passes_the_flags(attention_run, no_listen):
    assert main(["serve", str(attention_run)]) == 0
    (config,) = no_listen
    assert config.host == "127.0.0.1" and config.port == 8000
    settings = config.app.state.settings
    assert (settings.max_batch, settings.max_wait_ms, settings.max_body_bytes, settings.timeout_s) == (
        32,
        5.0,
        1 << 20,
        30.0,
    )
    flags = ["--host", "0.0.0.0", "--port", "9001", "--max-batch", "8", "--max-wait-ms", "0", "--max-body-bytes",
             "5000", "--timeout-s", "2.5", "--max-inputs", "7"]  # fmt: skip
    assert main(["serve", str(attention_run), *flags]) == 0
    config = no_listen[1]
    assert config.host == "0.0.0.0" and config.port == 9001
    s = config.app.state.settings
    assert (s.max_batch, s.max_wait_ms, s.max_body_bytes, s.timeout_s, s.max_inputs) == (8, 0.0, 5000, 2.5, 7)
    assert config.app.state.worker.max_batch == 8


def test_missing_or_unfinished_runs_exit_2_before_listening(tmp_path, no_listen, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"rnnkit: error: no run folder {tmp_path / 'nope'}\n"
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("task: text-classification\n")
    assert main(["serve", str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no meta.json" in err and "--resume" in err
    assert no_listen == []


def test_missing_extra_names_the_install_command(attention_run, monkeypatch, no_listen, capsys):
    monkeypatch.setattr(rnnkit.serve, "missing_extra", lambda: "fastapi")
    assert main(["serve", str(attention_run)]) == 2
    err = capsys.readouterr().err
    assert err == "rnnkit: error: rnnkit serve needs the serve extra (fastapi is not installed): " \
                  "pip install 'rnnkit[serve]'\n"  # fmt: skip
    assert no_listen == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch", "0"], "expected a positive integer"),
        (["--timeout-s", "-1"], "expected a positive number"),
        (["--max-wait-ms", "nan"], "expected a positive number"),
        (["--port", "70000"], "--port must be 0..65535"),
        (["--header-timeout-s", "0"], "expected a positive number"),
        (["--max-connections", "0"], "expected a positive integer"),
        (["--max-generate-work", "-5"], "expected a positive integer"),
    ],
)
def test_bad_flags_exit_2(attention_run, no_listen, capsys, flags, message):
    assert main(["serve", str(attention_run), *flags]) == 2
    assert message in capsys.readouterr().err
    assert no_listen == []


def test_hardening_flags_reach_the_server(attention_run, no_listen):
    from rnnkit.serve.protocol import GuardedH11Protocol

    assert main(["serve", str(attention_run)]) == 0
    (config,) = no_listen
    s = config.app.state.settings
    assert s.allowed_hosts == ("127.0.0.1", "localhost", "::1") and s.allow_ip_hosts is False
    assert (s.max_generate_tokens, s.max_generate_work, s.header_timeout_s, s.max_connections) == (2000, 4096, 10, 128)
    assert issubclass(config.http, GuardedH11Protocol) and config.http.header_timeout_s == 10
    assert 1 <= config.http.max_connections <= 128  # lowered where the open-file limit is smaller
    flags = ["--host", "0.0.0.0", "--allowed-host", "mybox.lan", "--allowed-host", "other", "--max-generate-work",
             "100", "--max-generate-tokens", "50", "--header-timeout-s", "2.5", "--max-connections", "9"]  # fmt: skip
    assert main(["serve", str(attention_run), *flags]) == 0
    config = no_listen[1]
    s = config.app.state.settings
    assert s.allowed_hosts == ("127.0.0.1", "localhost", "::1", "mybox.lan", "other") and s.allow_ip_hosts is True
    assert (s.max_generate_tokens, s.max_generate_work, s.header_timeout_s, s.max_connections) == (50, 100, 2.5, 9)
    assert config.http.header_timeout_s == 2.5 and config.http.max_connections <= 9
    assert main(["serve", str(attention_run), "--host", "mybox.lan"]) == 0
    assert no_listen[2].app.state.settings.allowed_hosts == ("127.0.0.1", "localhost", "::1", "mybox.lan")


def test_quantize_int8_serves_the_int8_model(attention_run, no_listen, monkeypatch, capsys):
    import rnnkit.export
    from rnnkit.errors import RnnkitError

    stand_in = object()
    seen = []
    monkeypatch.setattr(rnnkit.export, "quantized_model", lambda run: seen.append(run.path) or stand_in)
    assert main(["serve", str(attention_run), "--quantize", "int8"]) == 0
    assert seen == [attention_run] and no_listen[0].app.state.model is stand_in

    def missing(run):
        raise RnnkitError("exporting needs onnxruntime: pip install 'rnnkit[export]'")

    monkeypatch.setattr(rnnkit.export, "quantized_model", missing)
    assert main(["serve", str(attention_run), "--quantize", "int8"]) == 2
    assert capsys.readouterr().err == "rnnkit: error: exporting needs onnxruntime: pip install 'rnnkit[export]'\n"
    assert len(no_listen) == 1


def test_serve_freezes_what_it_loaded_before_listening(attention_run, monkeypatch):
    """The run, the model and the web stack are collected once and frozen before the server listens, so no
    full garbage collection walks them (with the GIL held) while requests wait."""
    import gc

    calls = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: calls.append("listen"))
    assert main(["serve", str(attention_run)]) == 0
    assert calls[-3:] == ["collect", "freeze", "listen"]
