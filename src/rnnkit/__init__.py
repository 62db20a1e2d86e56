"""rnnkit: recurrent sequence models on PyTorch.

``rnnkit.train(recipe_or_task, data=...)`` and ``rnnkit.load(run_folder)`` (both returning a :class:`rnnkit.api.Run`)
are :mod:`rnnkit.api`'s, imported on first use so that ``import rnnkit`` stays light (the CLI's ``--version``).
Models with ``fit`` / ``evaluate`` / ``predict`` / ``save`` are in :mod:`rnnkit.models`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: names of rnnkit.api offered at the top level
_API = ("train", "load", "Run")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:  # PEP 562: rnnkit.train etc. import rnnkit.api (and torch) only when used
        return getattr(importlib.import_module("rnnkit.api"), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
