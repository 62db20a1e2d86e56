"""Topologies built from :mod:`rnnkit.layers` (see docs/architecture.md)."""

from .classifier import POOLINGS, Classifier, ClassifierConfig, ClassifierEnsemble, ClassifierEnsembleConfig
from .crf import CRF
from .forecaster import (
    Forecaster,
    ForecasterConfig,
    ForecasterEnsemble,
    ForecasterEnsembleConfig,
    PanelForecaster,
    PanelForecasterConfig,
    PanelForecasterEnsemble,
)
from .generator import ConditionalGenerator, GeneratorConfig
from .language_model import LanguageModel, LanguageModelConfig
from .mlp import MLP, MLPConfig
from .seq2seq import Seq2Seq, Seq2SeqConfig, Seq2SeqEnsemble, Seq2SeqEnsembleConfig
from .step_regressor import StepRegressor, StepRegressorConfig
from .tagger import PAD_TAG, Tagger, TaggerConfig

__all__ = ["POOLINGS", "Classifier", "Forecaster", "ForecasterConfig", "MLP", "MLPConfig"]
__all__ += ["ConditionalGenerator", "GeneratorConfig", "Seq2Seq", "Seq2SeqConfig"]
__all__ += ["CRF", "PAD_TAG", "Tagger", "TaggerConfig", "LanguageModel", "LanguageModelConfig"]
__all__ += ["ForecasterEnsemble", "ForecasterEnsembleConfig"]
__all__ += ["PanelForecaster", "PanelForecasterConfig", "PanelForecasterEnsemble"]
__all__ += ["ClassifierConfig", "ClassifierEnsemble", "ClassifierEnsembleConfig"]
__all__ += ["Seq2SeqEnsemble", "Seq2SeqEnsembleConfig"]
__all__ += ["StepRegressor", "StepRegressorConfig"]
