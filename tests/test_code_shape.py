"""The code stays in pieces a reader can follow: no function in ``src/rnnkit`` longer than 100 lines, no
constructor with more than 10 parameters except the layers whose signature is torch's.

The exceptions are named here with their reason: the drop-in ``RNN`` / ``LSTM`` / ``GRU`` take
``torch.nn.RNNBase``'s arguments plus the rnnkit regularisers, and ``Recurrent`` takes exactly the same
options, so that moving from ``LSTM(...)`` to ``Recurrent(LayerNormLSTMCell, ...)`` changes only the first
argument. Inside the layers the options travel as one value (``rnnkit.layers.Regularisation``)."""

import ast
from pathlib import Path

import pytest

import rnnkit

SRC = Path(rnnkit.__file__).parent
MAX_BODY_LINES = 100
MAX_INIT_PARAMETERS = 10  # self excluded
#: constructors that mirror torch.nn.RNNBase's signature (module docstring)
TORCH_SIGNATURES = {"layers/rnn.py:__init__", "layers/recurrent.py:Recurrent.__init__"}


def functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(SRC).as_posix()
        for parent in ast.walk(tree):
            for node in ast.iter_child_nodes(parent):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    owner = f"{parent.name}." if isinstance(parent, ast.ClassDef) else ""
                    yield f"{rel}:{owner}{node.name}", node


def test_the_walk_finds_the_code():
    names = {where for where, _ in functions()}
    assert len(names) > 500
    assert names >= TORCH_SIGNATURES  # the exemptions name code that exists


def test_no_function_is_longer_than_100_lines():
    long = {
        where: node.end_lineno - node.body[0].lineno + 1
        for where, node in functions()
        if node.end_lineno - node.body[0].lineno + 1 > MAX_BODY_LINES
    }
    assert not long, f"split these functions (body lines): {long}"


@pytest.mark.parametrize("exempt", [False, True])
def test_no_constructor_takes_more_than_10_parameters(exempt):
    wide = {}
    for where, node in functions():
        if node.name == "__init__" and (where in TORCH_SIGNATURES) == exempt:
            a = node.args
            n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
            if n - 1 > MAX_INIT_PARAMETERS:
                wide[where] = n - 1
    if exempt:  # the mirrors of torch's signature are exempt; they must still need the exemption
        assert set(wide) == TORCH_SIGNATURES, wide
    else:
        assert not wide, f"group these parameters into a value: {wide}"
