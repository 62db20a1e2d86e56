"""The package's layers (issue #17): the import graph between rnnkit's subpackages and top-level modules, read
from the source with ``ast`` (imports inside functions included), has no cycle, and its dependencies point
one way: cells -> layers -> models -> tasks -> cli, with data, serve and export beside, training below models
(their in-memory ``fit`` runs the one trainer, which imports no model), and the
run-folder code (``rnnkit.runfolder``) and ``rnnkit.paths`` below everything that reads run folders."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

#: unit -> the units it must never import (directly; the no-cycle test covers the indirect ways back)
FORBIDDEN = {
    "cells": {"layers", "models", "tasks", "cli", "training", "serve", "export"},
    "layers": {"models", "tasks", "cli", "training", "serve", "export"},
    "models": {"tasks", "cli", "serve", "export"},
    "training": {"models", "layers", "cells", "tasks", "cli", "serve", "export"},
    "export": {"tasks", "cli", "serve"},
    "studies": {"cli", "serve", "export"},  # above tasks (it trains through the runner), below the CLI
    "metrics": {"cells", "layers", "models", "training", "tasks", "data", "cli", "serve", "export", "studies", "api"},
    "api": {"cli", "serve", "studies"},
    "runfolder": {"tasks", "export", "serve", "cli", "training", "models", "layers", "cells", "data"},
    "paths": {"*"},
}


def unit_of(module: str) -> str:
    """``rnnkit.layers.rnn`` -> ``layers``; ``rnnkit.fileio`` -> ``fileio``; ``rnnkit`` -> ``rnnkit``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, int]]:
    """Every rnnkit module ``path`` imports (at any depth of the file), with its line."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # the package a relative import starts from (an __init__'s own package)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # ``from . import x``: x may be a module of the package or a name in it
                sub = f"{module}.{a.name}"
                found.append((sub if module_exists(sub) else module, node.lineno))
        if _is_import_module(node):  # importlib.import_module("rnnkit.api"): an import all the same
            found.append((node.args[0].value, node.lineno))
    return [(m, line) for m, line in found if m == "rnnkit" or m.startswith("rnnkit.")]


def _is_import_module(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


#: upward imports made on purpose, looked up when called (never at import time), each with its reason; they are
#: left out of the graph, and test_late_bound_imports_are_the_listed_ones keeps this list exact
LATE_BOUND = {
    # Model.save / Model.load on a run folder: the run-folder format of a task lives above the models
    ("models", "api"): "Model.save and Model.load hand a run folder to rnnkit.api",
    # the package root offers rnnkit.train / load / Run without importing torch-heavy modules at import time
    ("rnnkit", "api"): "lazy attributes of the package root",
}


def graph() -> dict[str, dict[str, str]]:
    """unit -> {unit it imports: one place that does, "file:line"}."""
    edges: dict[str, dict[str, str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        src = unit_of(".".join(parts))
        edges.setdefault(src, {})
        for module, line in imports_of(path):
            dst = unit_of(module)
            if dst != src and (src, dst) not in LATE_BOUND:
                edges[src].setdefault(dst, f"{path.relative_to(SRC.parent)}:{line}")
    return edges


def find_cycle(edges: dict[str, dict[str, str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(edges.get(u, {})):
            if state.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if v not in state and (cycle := visit(v)):
                return cycle
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(edges):
        if u not in state and (cycle := visit(u)):
            return cycle
    return None


def test_the_graph_sees_function_level_and_relative_imports():
    edges = graph()
    assert {"cells", "layers", "models", "tasks", "cli", "data", "training", "export", "serve"} <= set(edges)
    assert "models" in edges["tasks"] and "layers" in edges["models"] and "cells" in edges["layers"]
    assert "tasks" in edges["cli"]  # the CLI imports the tasks inside its functions only
    assert find_cycle({"a": {"b": ""}, "b": {"c": ""}, "c": {"a": ""}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ""}, "b": {}}) is None


def test_the_import_graph_has_no_cycle():
    edges = graph()
    cycle = find_cycle(edges)
    where = [edges[a][b] for a, b in zip(cycle, cycle[1:], strict=False)] if cycle else []
    assert cycle is None, f"import cycle {' -> '.join(cycle)} ({', '.join(where)})"


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_dependencies_point_one_way(unit):
    edges = graph()
    banned = FORBIDDEN[unit]
    wrong = {dst: at for dst, at in edges.get(unit, {}).items() if dst in banned or ("*" in banned and dst != "rnnkit")}
    assert not wrong, f"{unit} must not import {sorted(wrong)}: {wrong}"


def test_late_bound_imports_are_the_listed_ones():
    """Every importlib.import_module of an rnnkit module from another unit is in LATE_BOUND, and every entry
    of LATE_BOUND still exists: an upward import cannot hide behind importlib."""
    seen = set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        src = unit_of(".".join(p for p in rel.parts if p != "__init__"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if _is_import_module(node) and node.args[0].value.startswith("rnnkit"):
                dst = unit_of(node.args[0].value)
                if dst != src:
                    seen.add((src, dst))
    assert seen == set(LATE_BOUND)
