from __future__ import annotations

import pydantic
import pytest
import torch

from rnnkit.models import MLP, MLPConfig
from rnnkit.models.base import build_model, load_model, save_model


def blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs in 2-D, one per class."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.0, 2.0], [-2.0, -1.0], [2.0, -1.0]])
    return centres[y] + 0.5 * torch.randn(n, 2, generator=g), y


def test_shapes_for_vectors_images_and_regression():
    torch.manual_seed(0)
    assert MLP(input_size=5, hidden_sizes=[8], num_classes=3)(torch.randn(4, 5)).shape == (4, 3)
    image = MLP(input_shape=[1, 8, 8], hidden_sizes=[16, 8], num_classes=10)
    assert image(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    assert image.head.in_features == 8 and image.body[0].in_features == 64
    reg = MLP(input_size=3, hidden_sizes=[], output_size=2)  # no hidden layer: linear regression
    assert reg(torch.randn(4, 3)).shape == (4, 2) and len(reg.body) == 0


def test_learns_a_small_classification_task():
    torch.manual_seed(0)
    x, y = blobs(300)
    model = MLP(input_size=2, hidden_sizes=[16], num_classes=3, activation="tanh")
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = model.loss(x, y).item()
    for _ in range(60):
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, yt = blobs(200, seed=1)
    accuracy = (model(xt).argmax(-1) == yt).float().mean().item()
    assert loss.item() < first / 3 and accuracy > 0.9


def test_regression_loss_accepts_flat_targets_for_one_output():
    torch.manual_seed(0)
    model = MLP(input_size=3, hidden_sizes=[4], output_size=1)
    x, y = torch.randn(6, 3), torch.randn(6)
    assert torch.allclose(model.loss(x, y), model.loss(x, y[:, None]))
    with pytest.raises(ValueError, match=r"expected targets \(6, 1\)"):
        model.loss(x, torch.randn(6, 2))


def test_activation_and_dropout_have_an_effect():
    x = torch.randn(8, 5)
    outs = {}
    for act in ("relu", "tanh", "gelu"):
        torch.manual_seed(0)
        outs[act] = MLP(input_size=5, hidden_sizes=[8], num_classes=2, activation=act)(x)
    assert not torch.allclose(outs["relu"], outs["tanh"]) and not torch.allclose(outs["relu"], outs["gelu"])
    model = MLP(input_size=5, hidden_sizes=[64], num_classes=2, dropout=0.5)
    assert not torch.equal(model(x), model(x))  # training: dropout active
    model.eval()
    assert torch.equal(model(x), model(x))


def test_config_rejects_unknown_keys_wrong_types_and_contradictions():
    with pytest.raises(pydantic.ValidationError, match="extra"):
        MLPConfig(input_size=4, num_classes=2, hiden_sizes=[3])
    with pytest.raises(pydantic.ValidationError, match="hidden_sizes"):
        MLPConfig(input_size=4, num_classes=2, hidden_sizes="wide")
    with pytest.raises(pydantic.ValidationError, match="activation"):
        MLPConfig(input_size=4, num_classes=2, activation="sigmoid")
    with pytest.raises(pydantic.ValidationError, match="exactly one of input_size"):
        MLPConfig(input_size=4, input_shape=[2, 2], num_classes=2)
    with pytest.raises(pydantic.ValidationError, match="exactly one of num_classes"):
        MLPConfig(input_size=4)
    with pytest.raises(pydantic.ValidationError, match="num_classes"):
        MLPConfig(input_size=4, num_classes=1)
    with pytest.raises(pydantic.ValidationError, match="positive ints"):
        MLPConfig(input_size=4, num_classes=2, hidden_sizes=[3, 0])


def test_input_errors_say_what_was_expected():
    model = MLP(input_shape=[2, 3], hidden_sizes=[4], num_classes=2)
    with pytest.raises(ValueError, match=r"expected input \(B, 2, 3\), got \(5, 6\)"):
        model(torch.randn(5, 6))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(5, 2, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="integer class ids"):
        model.loss(torch.randn(5, 2, 3), torch.rand(5))
    with pytest.raises(ValueError, match=r"expected input \(B, 4\)"):
        MLP(input_size=4, num_classes=2)(torch.randn(5, 2, 2))


def test_save_load_round_trip_and_registry(tmp_path):
    torch.manual_seed(0)
    model = MLP(input_shape=[1, 4, 4], hidden_sizes=[8], num_classes=3, activation="gelu").eval()
    save_model(model, tmp_path)
    twin = load_model(tmp_path).eval()
    assert isinstance(twin, MLP) and twin.get_config() == model.get_config()
    x = torch.rand(3, 1, 4, 4)
    assert torch.equal(twin(x), model(x))
    assert isinstance(build_model("mlp", model.get_config()), MLP)


def test_summary_runs():
    text = MLP(input_shape=[1, 8, 8], hidden_sizes=[16], num_classes=10).summary(batch_size=3)
    assert "head (Linear)" in text and "(3, 10)" in text and "total parameters: 1,210" in text
