"""The global forecaster (:class:`PanelForecaster`): shapes, scale equivariance, padding, seasonal factors,
quantiles that never cross, both heads, the ensemble's median, config errors, and the Holt-Winters fit of the
ES hybrid (causal states, a recovered season)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch

from rnnkit.models.exponential_smoothing import holt_winters
from rnnkit.models.forecaster import PanelForecaster, PanelForecasterEnsemble, pinball


def make(head="direct", known=0, static=0, scaling="log", **kw):
    torch.manual_seed(0)
    enc = dict(input_size=2 + known + static, cell="gru", hidden_size=8)
    return PanelForecaster(encoder=enc, horizon=4, head=head, known=known, static=static, scaling=scaling, **kw).eval()


@pytest.mark.parametrize("head", ["direct", "recursive"])
def test_shapes_sorted_quantiles_and_the_median(head):
    m = make(head, known=2, static=1)
    x = torch.rand(3, 10) + 1
    out = m(x, known=torch.randn(3, 14, 2), static=torch.randn(3, 1))
    q = out["quantiles"]
    assert q.shape == (3, 4, 3) and out["median"].shape == (3, 4)
    assert (q.diff(dim=-1) >= 0).all() and torch.equal(out["median"], q[..., 1])


@pytest.mark.parametrize(("head", "scaling"), [("direct", "log"), ("recursive", "ratio")])
def test_forecasts_scale_with_the_series(head, scaling):
    m = make(head, scaling=scaling)
    x = torch.rand(2, 12) + 1
    with torch.no_grad():
        a, b = m(x)["quantiles"], m(1000 * x)["quantiles"]
    torch.testing.assert_close(b, 1000 * a, rtol=1e-4, atol=1e-3)


def test_padding_is_ignored_and_season_multiplies_the_forecast():
    m = make()
    x = torch.rand(2, 8) + 1
    mask = torch.ones(2, 8)
    mask[:, :3] = 0
    with torch.no_grad():
        a = m(x, mask=mask)["median"]
        x2 = x.clone()
        x2[:, :3] = 1e6  # padded positions may hold anything
        torch.testing.assert_close(m(x2, mask=mask)["median"], a)
        # the window divided by its factors and the forecast multiplied: a seasonal series of the same level
        season = torch.ones(2, 12)
        season[:, 8:] = torch.tensor([1.0, 2.0, 0.5, 1.0])
        b = m(x, mask=mask, season=season)["median"]
    torch.testing.assert_close(b, a * season[:, 8:])


def test_a_given_level_replaces_the_window_mean():
    m = make()
    x = torch.rand(2, 8) + 1
    with torch.no_grad():
        auto = m(x)["median"]
        # the default level is the last input (level_steps=1): passing that level changes nothing
        torch.testing.assert_close(m(x, level=x[:, -1])["median"], auto)
        assert not torch.allclose(m(x, level=2 * x[:, -1])["median"], auto)


@pytest.mark.parametrize("head", ["direct", "recursive"])
def test_the_loss_is_pinball_and_trains(head):
    m = make(head).train()
    torch.manual_seed(1)
    t = torch.arange(40.0)
    y = 10 + torch.sin(2 * np.pi * t / 8)  # one periodic series, windows of 12 -> 4
    idx = torch.arange(0, 24)
    x = torch.stack([y[i : i + 12] for i in idx])
    target = torch.stack([y[i + 12 : i + 16] for i in idx])
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    first = float(m.loss(x, target).detach())
    for _ in range(60):
        opt.zero_grad()
        loss = m.loss(x, target)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first


def test_pinball_is_the_quantile_loss():
    taus = torch.tensor([0.1, 0.5, 0.9])
    q = torch.zeros(1, 3)
    loss = pinball(q, torch.tensor([1.0]), taus)  # under-forecast by 1: tau * 1
    torch.testing.assert_close(loss, torch.tensor([[0.1, 0.5, 0.9]]))
    loss = pinball(q, torch.tensor([-1.0]), taus)  # over-forecast by 1: (1 - tau) * 1
    torch.testing.assert_close(loss, torch.tensor([[0.9, 0.5, 0.1]]))


def test_the_ensemble_is_the_median_of_its_members():
    cfg = dict(encoder=dict(input_size=2, cell="gru", hidden_size=4), horizon=3)
    torch.manual_seed(0)
    e = PanelForecasterEnsemble(member=cfg, size=3).eval()
    x = torch.rand(2, 6) + 1
    with torch.no_grad():
        each = torch.stack([m(x)["quantiles"] for m in e.members])
        torch.testing.assert_close(e(x)["quantiles"], each.median(0).values.sort(-1).values)
    assert torch.isfinite(e.loss(x, torch.rand(2, 3) + 1))


def test_config_and_input_errors():
    enc = dict(input_size=2, cell="gru", hidden_size=4)
    with pytest.raises(pydantic.ValidationError, match="must include 0.5"):
        PanelForecaster(encoder=enc, horizon=2, quantiles=[0.1, 0.9])
    with pytest.raises(pydantic.ValidationError, match="increasing"):
        PanelForecaster(encoder=enc, horizon=2, quantiles=[0.9, 0.5])
    with pytest.raises(pydantic.ValidationError, match="input_size must be 2 \\+ known \\+ static = 3"):
        PanelForecaster(encoder=enc, horizon=2, known=1)
    m = make(known=1)
    with pytest.raises(ValueError, match="pass known"):
        m(torch.rand(1, 5) + 1)
    with pytest.raises(ValueError, match=r"expected season \(1, 9\)"):
        m(torch.rand(1, 5) + 1, season=torch.ones(1, 5), known=torch.zeros(1, 9, 1))


def test_holt_winters_states_are_causal_and_find_the_season():
    rng = np.random.default_rng(0)
    t = np.arange(96)
    pattern = 1 + 0.3 * np.sin(2 * np.pi * t / 12)
    y = 100 * pattern * np.exp(0.05 * rng.standard_normal(96))
    level, season, alpha, gamma = holt_winters(y, 12)
    assert level.shape == season.shape == (96,) and 0 < alpha < 1 and 0 <= gamma < 1
    # the factors of the last season follow the true pattern
    assert np.corrcoef(season[-12:], pattern[-12:])[0, 1] > 0.9
    # filtered states at t use y[: t + 1] only: changing the future changes nothing before it (same weights)
    y2 = y.copy()
    y2[60:] *= 3
    level2, season2, _, _ = holt_winters(y2, 12, alphas=(alpha,), gammas=(gamma,))
    np.testing.assert_allclose(level2[:60], level[:60])
    np.testing.assert_allclose(season2[:60], season[:60])
    with pytest.raises(ValueError, match="values > 0"):
        holt_winters(np.array([1.0, 0.0]), 1)
