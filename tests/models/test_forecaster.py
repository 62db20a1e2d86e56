from __future__ import annotations

import math

import pydantic
import pytest
import torch
import yaml

from rnnkit.models import Forecaster, ForecasterConfig
from rnnkit.models.base import build_model, load_model, save_model

W, H = 24, 12


def sine(n: int, noise: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (n, W) and targets (n, H) of sin(0.5 t + random phase), plus optional Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    s = torch.sin(0.5 * torch.arange(W + H) + phase) + noise * torch.randn(n, W + H, generator=g)
    return s[:, :W], s[:, W:]


def fit(model: Forecaster, window, target, steps: int, lr: float = 0.02, future=None) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, window.shape[0], (64,), generator=g)
        loss = model.loss(window[idx], target[idx], None if future is None else future[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def make(mode="direct", distribution="point", covariates=0, **kw) -> Forecaster:
    enc = {"input_size": 1 + covariates, "hidden_size": 8, **kw.pop("encoder", {})}
    return Forecaster(encoder=enc, horizon=H, mode=mode, distribution=distribution, **kw)


@pytest.mark.parametrize("mode", ["direct", "recursive"])
@pytest.mark.parametrize("distribution", ["point", "gaussian"])
def test_output_shapes_with_and_without_covariates(mode, distribution):
    torch.manual_seed(0)
    out = make(mode, distribution)(torch.randn(3, W))
    assert out["mean"].shape == (3, H)
    assert out["scale"] is None if distribution == "point" else out["scale"].shape == (3, H)
    model = make(mode, distribution, covariates=2)
    out = model(torch.randn(3, W, 3), future_covariates=torch.randn(3, H, 2))
    assert out["mean"].shape == (3, H)
    assert make(mode, distribution)(torch.randn(3, W, 1))["mean"].shape == (3, H)  # (B, W, 1) is fine too


@pytest.mark.parametrize("mode", ["direct", "recursive"])
def test_per_window_scaling_makes_forecasts_affine_equivariant(mode):
    torch.manual_seed(0)
    model = make(mode, "gaussian", encoder={"hidden_size": 6, "num_layers": 2}).eval()
    x = torch.randn(4, W).cumsum(1)
    a, b = 37.5, -1200.0
    base, moved = model(x), model(a * x + b)
    assert torch.allclose(moved["mean"], a * base["mean"] + b, rtol=1e-4, atol=1e-2)
    assert torch.allclose(moved["scale"], a * base["scale"], rtol=1e-4)
    raw = make(mode, "gaussian", scaling="none")  # the flag has an effect: raw inputs are not equivariant
    assert not torch.allclose(raw(a * x + b)["mean"], a * raw(x)["mean"] + b, rtol=1e-2)


@pytest.mark.parametrize("mode", ["direct", "recursive"])
def test_learns_a_sine_continuation(mode):
    torch.manual_seed(0)
    window, target = sine(256)
    model = make(mode, encoder={"hidden_size": 16})
    fit(model, window, target, steps=150 if mode == "direct" else 300)
    vw, vt = sine(128, seed=1)
    with torch.no_grad():
        mae = (model.eval()(vw)["mean"] - vt).abs().mean().item()
    assert mae < 0.08  # predicting the window mean scores about 0.64


def test_training_is_deterministic_under_a_seed():
    window, target = sine(64)
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(fit(make("recursive", "gaussian"), window, target, steps=5))
    assert runs[0] == runs[1]


def test_gaussian_nll_decreases_and_scale_tracks_the_noise_level():
    scales = {}
    for noise in (0.1, 0.5):
        torch.manual_seed(0)
        window, target = sine(256, noise=noise)
        model = make("direct", "gaussian", encoder={"hidden_size": 16})
        losses = fit(model, window, target, steps=100)
        assert sum(losses[-10:]) / 10 < losses[0] - 0.5
        with torch.no_grad():
            scale = model.eval()(window[:64])["scale"]
        assert (scale > 0).all()
        scales[noise] = scale.mean().item()
    assert 0.05 < scales[0.1] < 0.2 and 0.3 < scales[0.5] < 0.8  # observed: about 0.11 and 0.53


def test_intervals_contain_the_mean_and_widen_with_the_level():
    torch.manual_seed(0)
    model = make("recursive", "gaussian").eval()
    x = torch.randn(3, W)
    lo, hi = model.predict_interval(x, level=0.9)
    mean = model(x)["mean"]
    assert (lo < mean).all() and (mean < hi).all()
    assert torch.allclose((hi - lo) / 2, 1.6448536 * model(x)["scale"], rtol=1e-5)
    lo99, hi99 = model.predict_interval(x, level=0.99)
    assert (lo99 < lo).all() and (hi < hi99).all()
    with pytest.raises(ValueError, match="level must be in"):
        model.predict_interval(x, level=1.0)
    with pytest.raises(ValueError, match="needs distribution 'gaussian'"):
        make().predict_interval(x)


def test_point_losses_differ_and_gaussian_defaults_to_nll():
    torch.manual_seed(0)
    x, y = torch.randn(4, W), 3 * torch.randn(4, H)
    mse, mae = make(), make(loss="mae")
    mae.load_state_dict(mse.state_dict())
    assert not torch.allclose(mse.loss(x, y), mae.loss(x, y))
    assert make(distribution="gaussian").config.loss == "nll"


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = make("recursive", "gaussian", covariates=1, encoder={"cell": "gru", "hidden_size": [8, 4]}).eval()
    save_model(model, tmp_path)
    twin = load_model(tmp_path).eval()
    assert isinstance(twin, Forecaster) and twin.get_config() == model.get_config()
    x, f = torch.randn(2, W, 2), torch.randn(2, H, 1)
    a, b = model(x, f), twin(x, f)
    assert torch.equal(a["mean"], b["mean"]) and torch.equal(a["scale"], b["scale"])
    assert isinstance(build_model("forecaster", model.get_config()), Forecaster)


def test_config_rejects_unknown_keys_wrong_types_and_contradictions():
    enc = {"input_size": 1}
    with pytest.raises(pydantic.ValidationError, match="extra"):
        ForecasterConfig(encoder=enc, horizon=3, horizn=4)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        ForecasterConfig(encoder={**enc, "hiden_size": 4}, horizon=3)
    with pytest.raises(pydantic.ValidationError, match="horizon"):
        ForecasterConfig(encoder=enc, horizon="twelve")
    with pytest.raises(pydantic.ValidationError, match="horizon"):
        ForecasterConfig(encoder=enc, horizon=0)
    with pytest.raises(pydantic.ValidationError, match="mode"):
        ForecasterConfig(encoder=enc, horizon=3, mode="sideways")
    with pytest.raises(pydantic.ValidationError, match="does not fit distribution"):
        ForecasterConfig(encoder=enc, horizon=3, distribution="gaussian", loss="mse")
    with pytest.raises(pydantic.ValidationError, match="does not fit distribution"):
        ForecasterConfig(encoder=enc, horizon=3, loss="nll")
    with pytest.raises(pydantic.ValidationError, match="bidirectional"):
        ForecasterConfig(encoder={**enc, "bidirectional": True}, horizon=3, mode="recursive")
    with pytest.raises(pydantic.ValidationError, match="encoder.input_size"):
        ForecasterConfig(encoder={"vocab_size": 10}, horizon=3)
    with pytest.raises(pydantic.ValidationError, match="encoder"):
        ForecasterConfig(horizon=3)


def test_covariate_errors_are_clear():
    model = make("recursive", covariates=2)
    x = torch.randn(2, W, 3)
    with pytest.raises(ValueError, match=r"needs future_covariates \(B, 12, 2\).*recursive mode"):
        model(x)
    with pytest.raises(ValueError, match="needs future_covariates"):
        model.loss(x, torch.randn(2, H))
    with pytest.raises(ValueError, match=r"expected future_covariates \(2, 12, 2\), got \(2, 11, 2\)"):
        model(x, torch.randn(2, H - 1, 2))
    with pytest.raises(ValueError, match=r"expected window \(B, W, 3\)"):
        model(torch.randn(2, W))
    with pytest.raises(ValueError, match="no covariates"):
        make()(torch.randn(2, W), torch.randn(2, H, 1))
    with pytest.raises(ValueError, match=r"expected target \(2, 12\)"):
        make().loss(torch.randn(2, W), torch.randn(2, H + 1))
    with pytest.raises(ValueError, match="at least 2 steps"):
        make()(torch.randn(2, 1))
    with pytest.raises(TypeError, match="floating point"):
        make()(torch.zeros(2, W, dtype=torch.long))


def test_recursive_covariates_act_on_the_step_they_belong_to():
    torch.manual_seed(0)
    model = make("recursive", covariates=1).eval()
    x, f = torch.randn(2, W, 2), torch.randn(2, H, 1)
    base = model(x, f)["mean"]
    g = f.clone()
    g[:, 5] += 3.0
    moved = model(x, g)["mean"]
    assert torch.equal(moved[:, :5], base[:, :5])  # earlier steps cannot see a later covariate
    assert (moved[:, 5] - base[:, 5]).abs().min() > 1e-4


@pytest.mark.parametrize("mode", ["direct", "recursive"])
def test_covariate_losses_train(mode):
    torch.manual_seed(0)
    model = make(mode, "gaussian", covariates=1)
    x, y, f = torch.randn(4, W, 2), torch.randn(4, H), torch.randn(4, H, 1)
    model.loss(x, y, f).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_tutorial_lstm_forecasters_are_expressible_from_config():
    # TensorFlow's time-series tutorial: "multi_lstm_model" = LSTM(32) -> Dense(OUT_STEPS), and the
    # autoregressive "FeedBack" model = an LSTM(32) one-step model rolled forward OUT_STEPS times.
    text = """
    encoder: {input_size: 1, cell: lstm, hidden_size: 32}
    horizon: 24
    mode: direct
    scaling: none
    """
    cfg = yaml.safe_load(text)
    direct = build_model("forecaster", cfg)
    lstm = 4 * 32 * (1 + 32) + 2 * 4 * 32  # torch keeps two bias vectors
    assert direct.num_parameters() == lstm + 32 * 24 + 24
    feedback = build_model("forecaster", {**cfg, "mode": "recursive"})
    assert feedback.num_parameters() == lstm + 32 + 1
    assert feedback(torch.randn(2, 48))["mean"].shape == (2, 24)


@pytest.mark.parametrize("mode", ["direct", "recursive"])
def test_summary_runs(mode):
    text = make(mode, "gaussian", covariates=2).summary(batch_size=3, length=10)
    assert "encoder.stacks.0" in text and "head (Linear)" in text and "total parameters" in text
