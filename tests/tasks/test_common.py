"""Pieces the tasks share: reference batches, masked losses, classification counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit.tasks.common import (
    PAD_ID,
    classification_metrics,
    confusion_matrix,
    confusion_stats,
    label_probabilities,
    masked_cross_entropy,
    pad_references,
    unpad_references,
)


def test_references_pad_and_unpad():
    refs = [[[4, 5, 6], [7]], [[8, 9]]]
    ids, lengths = pad_references(refs)
    assert ids.tolist() == [[[4, 5, 6], [7, PAD_ID, PAD_ID]], [[8, 9, PAD_ID], [PAD_ID] * 3]]
    assert lengths.tolist() == [[3, 1], [2, 0]]  # 0: the second example has no second reference
    assert unpad_references(ids, lengths) == refs
    assert unpad_references(ids, lengths, drop_last=1) == [[[4, 5], []], [[8]]]


def test_masked_cross_entropy_counts_only_real_steps():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(2, 3, 5, generator=g), torch.tensor([[1, 2, 3], [4, 0, 0]])
    loss, n = masked_cross_entropy(logits, target, torch.tensor([3, 1]), reduction="sum")
    real = torch.cat([logits[0], logits[1, :1]])
    assert n == 4 and torch.allclose(loss, F.cross_entropy(real, torch.tensor([1, 2, 3, 4]), reduction="sum"))


def test_classification_counts_and_metrics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    s = confusion_stats(logits, torch.tensor([0, 1, 1]), 2)
    assert {k: s[k] for k in ("cm_0_0", "cm_0_1", "cm_1_0", "cm_1_1", "n")} == {
        "cm_0_0": 1.0, "cm_0_1": 0.0, "cm_1_0": 1.0, "cm_1_1": 1.0, "n": 3.0
    }  # fmt: skip
    m = classification_metrics(s, 2)
    assert m["accuracy"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    assert confusion_matrix([(0, 0), (1, 0), (1, 1)], 2) == [[1, 0], [1, 1]]
    assert label_probabilities([0.25, 0.75], ["neg", "pos"]) == {
        "label": "pos", "probability": 0.75, "probabilities": {"neg": 0.25, "pos": 0.75}
    }  # fmt: skip
