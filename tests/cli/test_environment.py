"""rnnkit's environment variables (rnnkit.settings): a wrong value is refused by name before a command does any
work (one line, exit 2, no traceback), and the library refuses it with the same words."""

import subprocess
import sys

import pytest

from rnnkit import settings
from rnnkit.cli.main import main
from rnnkit.layers import native


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("RNNKIT_NATIVE", "yes", "RNNKIT_NATIVE must be 0, 1 or auto, got 'yes'"),
        ("RNNKIT_NATIVE_POOL_MB", "lots", "RNNKIT_NATIVE_POOL_MB must be a whole number of MiB from 0 to 1048576"),
        ("RNNKIT_NATIVE_POOL_MB", "-1", "got '-1'"),
        ("RNNKIT_NATIVE_POOL_MB", "1.5", "got '1.5'"),
        ("RNNKIT_NATIVE_POOL_MB", str(settings.POOL_MB_MAX + 1), "from 0 to 1048576"),
    ],
)
def test_a_wrong_value_stops_a_command_before_it_starts(monkeypatch, capsys, tmp_path, name, value, words):
    monkeypatch.setenv(name, value)
    # `train` would load data and build a model before the native loop first looks at the variable
    code = main(["train", "co2", "--runs-dir", str(tmp_path), "--set", "train.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rnnkit: error: environment: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder started


@pytest.mark.parametrize(("value", "mb"), [("", 512), (" 0 ", 0), ("64", 64), (str(settings.POOL_MB_MAX), 1 << 20)])
def test_good_values_are_read(monkeypatch, value, mb):
    monkeypatch.setenv("RNNKIT_NATIVE_POOL_MB", value)
    monkeypatch.setenv("RNNKIT_NATIVE", " Auto ")
    assert settings.native_pool_mb() == mb and settings.native_mode() == "auto"
    settings.check()


def test_the_library_refuses_a_bad_pool_size_too(monkeypatch):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setattr(native, "_build", lambda: pytest.fail("must refuse before building"))
    monkeypatch.setenv("RNNKIT_NATIVE_POOL_MB", "lots")
    with pytest.raises(ValueError, match="RNNKIT_NATIVE_POOL_MB must be a whole number"):
        native.available()


def test_the_check_does_not_import_torch(monkeypatch):
    code = "import sys; from rnnkit import settings; settings.check(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
