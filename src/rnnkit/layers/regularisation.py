"""The regularisers of the recurrent layers as one value, and what one run of a cell needs from them.

:class:`Regularisation` holds a layer's options (built and checked once, in the layer's constructor);
:class:`StepHooks` is what a single run of one cell over time receives: the per-call draws (a dropped
``weight_hh``, a recurrent-dropout mask) and the zoneout probability. See :mod:`rnnkit.layers.recurrent` for
what each option does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..cells import State
from ..cells.base import check_probability

#: the probabilities, in the order they are checked (and listed by ``extra_repr``)
PROBABILITIES = ("dropout", "input_dropout", "output_dropout", "recurrent_dropout", "weight_drop", "zoneout")


@dataclass(frozen=True)
class Regularisation:
    """A recurrent layer's regularisers, all off by default (module docstring of :mod:`rnnkit.layers.recurrent`).

    Build it with :meth:`checked`, which validates every value with a one-line ``ValueError`` naming the
    layer and the option."""

    dropout: float = 0.0
    variational_dropout: bool = False
    input_dropout: float = 0.0
    output_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    weight_drop: float = 0.0
    zoneout: float = 0.0

    @staticmethod
    def check(owner: str, name: str, value: object, dropout_may_be_one: bool = False) -> float | bool:
        """One option, checked: probabilities in ``[0, 1)`` (``dropout`` in ``[0, 1]`` with
        ``dropout_may_be_one``, torch's range for its own argument); ``variational_dropout`` a flag."""
        if name == "variational_dropout":
            return bool(value)
        if name not in PROBABILITIES:
            raise ValueError(f"{owner}: no regulariser named {name!r}")
        return check_probability(name, value, owner, allow_one=dropout_may_be_one and name == "dropout")

    @classmethod
    def checked(cls, owner: str, *, dropout_may_be_one: bool = False, **values) -> Regularisation:
        """A value from keyword arguments (missing ones are off), each checked by :meth:`check`."""
        return cls(**{k: cls.check(owner, k, v, dropout_may_be_one) for k, v in values.items()})

    def replaced(self, owner: str, dropout_may_be_one: bool = False, **values) -> Regularisation:
        """A copy with ``values`` changed, each checked by :meth:`check`."""
        new = {k: self.check(owner, k, v, dropout_may_be_one) for k, v in values.items()}
        return dataclasses.replace(self, **new)

    def any_probability(self) -> bool:
        """Whether any regulariser has a non-zero probability (they act in training mode)."""
        return any(getattr(self, k) for k in PROBABILITIES)

    def needs_step_hook(self, training: bool) -> str | None:
        """Why a run needs a hook at every step (None if it does not): zoneout, and recurrent dropout in
        training (in evaluation it does nothing)."""
        if self.zoneout:
            return "zoneout needs a per-step hook"
        if self.recurrent_dropout and training:
            return "recurrent_dropout needs a per-step hook"
        return None


class StepHooks(NamedTuple):
    """What one run of one cell over time needs besides its input and state: ``weight_hh`` (weight drop: the
    dropped copy for this call), ``h_mask`` (recurrent dropout: ``(B, H_in)``), ``zoneout`` and the mode.
    A named tuple, not a dataclass, so ``torch.compile`` traces its construction in the forward."""

    weight_hh: Tensor | None = None
    h_mask: Tensor | None = None
    zoneout: float = 0.0
    training: bool = False

    @property
    def per_step(self) -> bool:
        """Whether a hook acts at every step (a scan over all steps at once cannot run them)."""
        return self.weight_hh is not None or self.h_mask is not None or self.zoneout != 0.0


class _Option:
    """A layer attribute (``layer.dropout``, ``layer.zoneout``, ...) read from and written to the layer's
    :class:`Regularisation`: writing checks the value and replaces the frozen value."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return getattr(obj.regularisation, self.name)

    def __set__(self, obj, value) -> None:
        reg = obj.regularisation
        if "regularisation" not in obj.__dict__:
            # torch.nn.RNNBase's constructor sets ``dropout`` before it checks it (with its own message), and
            # the layer's constructor checks every option afterwards
            obj.regularisation = dataclasses.replace(reg, **{self.name: value})
            return
        may_be_one = getattr(obj, "_dropout_may_be_one", False)
        obj.regularisation = reg.replaced(type(obj).__name__, may_be_one, **{self.name: value})


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with one mask per sequence and feature, shared over time: ``x`` (B, T, F)."""
    if not training or p == 0.0:
        return x
    if p == 1.0:  # torch's dropout=1.0 (the drop-ins accept it): everything dropped
        return x * 0.0
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)
    return x * mask


def zoneout(old: State, new: State, p: float, training: bool) -> State:
    """Each state unit keeps its old value with probability ``p`` (training); the expectation in evaluation."""
    if training:
        return tuple(torch.where(torch.rand_like(n) < p, o, n) for o, n in zip(old, new, strict=True))
    return tuple(p * o + (1 - p) * n for o, n in zip(old, new, strict=True))
