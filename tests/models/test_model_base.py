"""The Model base: registry, config coercion, summary rows for every parameter-holding module."""

import pytest

from rnnkit.models import Classifier, Tagger
from rnnkit.models.base import MODEL_REGISTRY, build_model


def test_every_topology_is_registered():
    assert {"classifier", "tagger", "language_model", "seq2seq", "conditional_generator", "forecaster", "mlp"} <= set(
        MODEL_REGISTRY
    )


def test_build_model_unknown_kind():
    with pytest.raises(ValueError, match="unknown model kind 'cnn'"):
        build_model("cnn", {})


def test_config_object_of_the_wrong_type_is_rejected():
    tagger_cfg = Tagger(encoder=dict(vocab_size=5), num_tags=3).config
    with pytest.raises(TypeError, match="expected a ClassifierConfig"):
        Classifier(tagger_cfg)


def test_summary_lists_modules_forward_does_not_call():
    m = Tagger(encoder=dict(vocab_size=30, hidden_size=8), num_tags=5, crf=True)
    text = m.summary()
    assert "crf (CRF)" in text and "(not in forward)" in text
    assert f"{m.num_parameters():,}" in text
