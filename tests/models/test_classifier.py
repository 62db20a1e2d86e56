from __future__ import annotations

import pytest
import torch

from rnnkit.models import Classifier


@pytest.mark.parametrize("pooling", ["max", "mean", "last", "attention"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_logits_do_not_depend_on_padding(pooling, bidirectional):
    torch.manual_seed(0)
    model = Classifier(
        50, 3, embed_dim=8, hidden_size=6, num_layers=2, bidirectional=bidirectional, pooling=pooling
    ).eval()
    a, b = torch.randint(2, 50, (5,)), torch.randint(2, 50, (3,))
    alone = torch.cat([model(a[None]), model(b[None])])
    batch = torch.zeros(2, 9, dtype=torch.long)  # extra padding past the longest sequence too
    batch[0, :5], batch[1, :3] = a, b
    assert torch.allclose(model(batch, torch.tensor([5, 3])), alone, atol=1e-6)


def test_config_rebuilds_the_model_and_validation():
    model = Classifier(10, 2, embed_dim=4, hidden_size=5, pooling="mean")
    twin = Classifier(**model.config)
    twin.load_state_dict(model.state_dict())
    assert twin.config == model.config
    with pytest.raises(ValueError, match="pooling must be one of"):
        Classifier(10, 2, pooling="sum")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2, got 1"):
        Classifier(10, 1)
    with pytest.raises(ValueError, match=r"ids must be \(B, T\)"):
        model(torch.zeros(3, dtype=torch.long))
