"""Topologies built from :mod:`rnnkit.layers` (see DESIGN.md)."""

from .classifier import POOLINGS, Classifier
from .forecaster import Forecaster, ForecasterConfig
from .mlp import MLP, MLPConfig

__all__ = ["POOLINGS", "Classifier", "Forecaster", "ForecasterConfig", "MLP", "MLPConfig"]
