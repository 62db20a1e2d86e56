"""The command line offers exactly the formats and quantizations the export code accepts (one list of names)."""

import subprocess
import sys

import pytest

from rnnkit import export
from rnnkit.cli.main import build_parser


def choices(command, option):
    sub = build_parser().subcommand_parsers[command]
    (action,) = [a for a in sub._actions if option in a.option_strings]
    return tuple(action.choices)


def test_export_and_serve_offer_what_export_accepts():
    assert choices("export", "--format") == export.FORMATS
    assert choices("export", "--quantize") == export.QUANTIZE
    assert choices("serve", "--quantize") == export.QUANTIZE


def test_an_unknown_format_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["export", "runs/x", "--format", "tflite"])
    assert e.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from rnnkit.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
