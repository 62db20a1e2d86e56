"""The README's two Quickstart commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1]
    return re.findall(r"```(?:bash|sh)?\n(.+?)\n```", section, flags=re.S)[:2]


def test_readme_starts_with_the_two_commands():
    main_job, tests = quickstart_commands()
    assert main_job.strip().endswith("rnnkit quickstart")
    assert "-c constraints.txt" in main_job and "-c constraints.txt" in tests
    assert tests.strip().endswith("pytest")


def test_ci_runs_exactly_the_readme_test_command():
    _, tests = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests.strip() in [line.strip() for line in ci]


def test_constraints_pin_torch_exactly():
    pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines()]
    assert "torch==2.13.0" in pins
