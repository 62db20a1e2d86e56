"""The training loop and the searches stay in pieces a reader can follow: no function of rnnkit.training or
rnnkit.decoding longer than 100 lines, no constructor there with more than 10 parameters."""

import ast
from pathlib import Path

import pytest

import rnnkit

SRC = Path(rnnkit.__file__).parent
PACKAGES = ("training", "decoding")
MAX_BODY_LINES = 100
MAX_INIT_PARAMETERS = 10  # self excluded


def functions():
    for package in PACKAGES:
        for path in sorted((SRC / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{package}/{path.name}:{node.lineno} {node.name}", node


def test_the_packages_hold_functions():
    assert sum(1 for _ in functions()) > 20  # the walk finds the code it is meant to check


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_100_lines(package):
    long = {
        where: node.end_lineno - node.body[0].lineno + 1
        for where, node in functions()
        if where.startswith(package) and node.end_lineno - node.body[0].lineno + 1 > MAX_BODY_LINES
    }
    assert not long, f"split these functions (body lines): {long}"


def test_no_constructor_takes_more_than_10_parameters():
    wide = {}
    for where, node in functions():
        if node.name == "__init__":
            a = node.args
            n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
            if n - 1 > MAX_INIT_PARAMETERS:
                wide[where] = n - 1
    assert not wide, f"group these parameters into a value: {wide}"
