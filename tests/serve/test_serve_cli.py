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
    ],
)
def test_bad_flags_exit_2(attention_run, no_listen, capsys, flags, message):
    assert main(["serve", str(attention_run), *flags]) == 2
    assert message in capsys.readouterr().err
    assert no_listen == []
