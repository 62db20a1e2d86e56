"""Forecasting: a window of past values (and covariates) -> the next ``horizon`` values, in raw units.

Shapes: ``B`` batch, ``W`` window length, ``H`` horizon, ``C`` covariates per step (``C = input_size - 1``).
``window`` is ``(B, W)`` or ``(B, W, 1 + C)`` with the target in channel 0; ``future_covariates`` is
``(B, H, C)``, the covariates of the ``H`` steps being forecast (calendar features, known prices, ...).

**Scaling** (``scaling="standard"``) is per-window standardisation (instance normalisation, as in
RevIN): the target channel is centred and scaled by the mean and standard deviation of *that window
only*, the network works in those units, and its outputs are mapped back. So users pass raw values,
nothing is fitted on the training series (no scaler to save or to leak test statistics into), series
of any level and spread share one model, and the forecast is equivariant to ``y -> a*y + b`` for
``a > 0``: the mean moves the same way and the scale is multiplied by ``a``. The price is that the
network never sees the absolute level; use ``scaling="none"`` (and scale the data yourself) where the
level itself is informative. A window whose spread is below ``1e-5`` is centred but not scaled, so a
flat stretch followed by a jump cannot blow the loss up. Covariates are passed through unscaled.

**Modes.**

- ``direct``: the encoder reads the window rows ``(y_t, c_t)``; one linear head maps its last state
  (concatenated with the flattened future covariates, when there are any) to all ``H`` outputs at once.
- ``recursive``: a one-step model. The row fed at step ``t`` is ``(y_t, c_{t+1})`` -- the value just seen
  and the covariates of the step being predicted -- and the output predicts ``y_{t+1}``. Forecasting
  reads the window, then feeds its own predicted mean back ``H - 1`` times, carrying the recurrent
  state. Training (:meth:`Forecaster.loss`) is teacher forcing over window + horizon in one pass:
  every position of the concatenated series predicts the next true value, so one window of length
  ``W`` gives ``W + H - 1`` one-step targets. A Gaussian recursive forecast reports each step's
  one-step scale along the mean path; it does not propagate the uncertainty of earlier steps, so
  its intervals are too narrow for long horizons.

**Distributions.** ``point`` predicts a value and trains on MSE or MAE; ``gaussian`` predicts a mean
and a scale (softplus, floored at ``1e-3`` in normalised units) and trains on the Gaussian negative
log-likelihood. Losses are computed in the window-normalised units, so every window counts equally
whatever its level (in raw units the NLL differs by the mean ``log`` of the window scales).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from ..config import StrictModel
from .base import Model
from .encoder import EncoderConfig, SequenceEncoder

#: windows with a standard deviation below this (raw units) are only centred, not scaled
MIN_WINDOW_STD = 1e-5
#: floor of the Gaussian scale in normalised units, so the NLL cannot run off to -inf on a perfect fit
MIN_SCALE = 1e-3


class ForecasterConfig(StrictModel):
    """Configuration of :class:`Forecaster` (unknown keys are errors).

    ``encoder.input_size`` is ``1 + num_covariates``. ``loss`` defaults to ``"mse"`` for point forecasts
    and must be ``"nll"`` (its default) for Gaussian ones.
    """

    encoder: EncoderConfig
    horizon: int = Field(gt=0, description="steps forecast")
    mode: Literal["recursive", "direct"] = "direct"
    distribution: Literal["point", "gaussian"] = "point"
    loss: Literal["mse", "mae", "nll"] = "mse"
    scaling: Literal["standard", "none"] = "standard"

    @model_validator(mode="before")
    @classmethod
    def _default_loss(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("loss") is None and data.get("distribution") == "gaussian":
            data = {**data, "loss": "nll"}
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.encoder.input_size is None:
            raise ValueError("a forecaster reads real values: set encoder.input_size (1 + number of covariates)")
        if self.mode == "recursive" and self.encoder.bidirectional:
            raise ValueError("mode 'recursive' predicts step by step and cannot use a bidirectional encoder")
        if (self.distribution == "gaussian") != (self.loss == "nll"):
            raise ValueError(
                f"loss {self.loss!r} does not fit distribution {self.distribution!r}: "
                "point forecasts train on 'mse' or 'mae', gaussian ones on 'nll'"
            )
        return self

    @property
    def num_covariates(self) -> int:
        return self.encoder.input_size - 1


class Forecaster(Model):
    """Window -> horizon forecaster over any rnnkit cell stack; see the module docstring for the details.

    ``forward(window (B, W) or (B, W, 1+C), future_covariates (B, H, C) | None)
    -> {"mean": (B, H), "scale": (B, H) or None}`` in the units of the input.
    """

    config_class = ForecasterConfig
    kind = "forecaster"
    config: ForecasterConfig

    def __init__(self, config: ForecasterConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        self.num_outputs = 2 if cfg.distribution == "gaussian" else 1  # (mean, raw scale) per step
        if cfg.mode == "recursive":
            self.head = nn.Linear(self.encoder.output_size, self.num_outputs)
        else:
            extra = cfg.horizon * cfg.num_covariates
            self.head = nn.Linear(self.encoder.output_size + extra, cfg.horizon * self.num_outputs)

    @property
    def num_covariates(self) -> int:
        return self.config.num_covariates

    @property
    def horizon(self) -> int:
        return self.config.horizon

    # -- input handling -------------------------------------------------------------------------
    def _split(self, window: Tensor) -> tuple[Tensor, Tensor | None]:
        """window -> target (B, W), covariates (B, W, C) or None."""
        C = self.num_covariates
        if not torch.is_floating_point(window):
            raise TypeError(f"Forecaster: window must be floating point, got {window.dtype}")
        if window.dim() == 2 and C == 0:
            window = window.unsqueeze(-1)
        if window.dim() != 3 or window.shape[-1] != 1 + C:
            expected = "(B, W) or (B, W, 1)" if C == 0 else f"(B, W, {1 + C}) (target + {C} covariates)"
            raise ValueError(f"Forecaster: expected window {expected}, got {tuple(window.shape)}")
        min_len = 2 if self.config.scaling == "standard" else 1
        if window.shape[1] < min_len:
            raise ValueError(f"Forecaster: the window needs at least {min_len} steps, got {window.shape[1]}")
        return window[..., 0], (window[..., 1:] if C else None)

    def _future(self, future_covariates: Tensor | None, B: int) -> Tensor | None:
        C, H = self.num_covariates, self.horizon
        if C == 0:
            if future_covariates is not None and future_covariates.numel():
                raise ValueError("Forecaster: future_covariates given, but the model has no covariates (input_size 1)")
            return None
        if future_covariates is None:
            raise ValueError(
                f"Forecaster: this model has {C} covariate(s), so it needs future_covariates (B, {H}, {C}): "
                f"the covariates of the {H} steps being forecast"
                + (" (recursive mode feeds them step by step)" if self.config.mode == "recursive" else "")
            )
        if tuple(future_covariates.shape) != (B, H, C):
            raise ValueError(
                f"Forecaster: expected future_covariates ({B}, {H}, {C}), got {tuple(future_covariates.shape)}"
            )
        return future_covariates

    def _stats(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-window location and scale, each (B, 1); (0, 1) without scaling."""
        if self.config.scaling == "none":
            return y.new_zeros(y.shape[0], 1), y.new_ones(y.shape[0], 1)
        loc = y.mean(dim=1, keepdim=True)
        std = y.std(dim=1, keepdim=True, unbiased=False)
        return loc, torch.where(std > MIN_WINDOW_STD, std, torch.ones_like(std))

    def _params(self, raw: Tensor) -> tuple[Tensor, Tensor | None]:
        """Head output (..., P) -> mean (...), scale (...) or None, in normalised units."""
        if self.num_outputs == 1:
            return raw[..., 0], None
        return raw[..., 0], F.softplus(raw[..., 1]) + MIN_SCALE

    @staticmethod
    def _rows(z: Tensor, cov: Tensor | None) -> Tensor:
        """(B, T) values and (B, T, C) covariates -> encoder rows (B, T, 1+C)."""
        z = z.unsqueeze(-1)
        return z if cov is None else torch.cat([z, cov.to(z.dtype)], dim=-1)

    # -- normalised-space forecasting -------------------------------------------------------------
    def _direct(self, z: Tensor, cov: Tensor | None, fut: Tensor | None) -> tuple[Tensor, Tensor | None]:
        _, states = self.encoder(self._rows(z, cov))
        h = self.encoder.top_hidden(states)  # (B, D*H_enc)
        if fut is not None:
            h = torch.cat([h, fut.flatten(1).to(h.dtype)], dim=-1)  # (B, D*H_enc + H*C)
        raw = self.head(h).view(z.shape[0], self.horizon, self.num_outputs)  # (B, H, P)
        return self._params(raw)

    def _recursive(self, z: Tensor, cov: Tensor | None, fut: Tensor | None) -> tuple[Tensor, Tensor | None]:
        # row t is (y_t, c_{t+1}): the covariates of the step being predicted
        nxt = None if cov is None else torch.cat([cov[:, 1:], fut[:, :1]], dim=1)  # (B, W, C)
        out, state = self.encoder(self._rows(z, nxt))
        mean, scale = self._params(self.head(out[:, -1]))  # (B,) each: step W
        means, scales = [mean], [scale]
        for k in range(1, self.horizon):
            row = self._rows(mean.unsqueeze(1), None if fut is None else fut[:, k : k + 1])  # (B, 1, 1+C)
            out, state = self.encoder(row, state=state)
            mean, scale = self._params(self.head(out[:, -1]))
            means.append(mean)
            scales.append(scale)
        return torch.stack(means, 1), (None if scale is None else torch.stack(scales, 1))

    def forward(self, window: Tensor, future_covariates: Tensor | None = None) -> dict[str, Tensor | None]:
        y, cov = self._split(window)
        fut = self._future(future_covariates, y.shape[0])
        loc, s = self._stats(y)
        run = self._recursive if self.config.mode == "recursive" else self._direct
        mean, scale = run((y - loc) / s, cov, fut)  # (B, H) each, normalised units
        return {"mean": loc + s * mean, "scale": None if scale is None else s * scale}

    # -- training ---------------------------------------------------------------------------------
    def loss(self, window: Tensor, target: Tensor, future_covariates: Tensor | None = None) -> Tensor:
        """Mean loss of forecasting ``target`` (B, H) from ``window``, in window-normalised units.

        Direct mode scores the ``H`` outputs; recursive mode scores every one-step prediction over
        window + horizon with teacher forcing (see the module docstring).
        """
        y, cov = self._split(window)
        B = y.shape[0]
        if tuple(target.shape) != (B, self.horizon):
            raise ValueError(f"Forecaster.loss: expected target ({B}, {self.horizon}), got {tuple(target.shape)}")
        fut = self._future(future_covariates, B)
        loc, s = self._stats(y)
        z, zt = (y - loc) / s, (target.to(y.dtype) - loc) / s
        if self.config.mode == "direct":
            mean, scale = self._direct(z, cov, fut)
            goal = zt
        else:
            series = torch.cat([z, zt], dim=1)  # (B, W+H)
            covs = None if cov is None else torch.cat([cov, fut.to(cov.dtype)], dim=1)  # (B, W+H, C)
            out, _ = self.encoder(self._rows(series[:, :-1], None if covs is None else covs[:, 1:]))
            mean, scale = self._params(self.head(out))  # (B, W+H-1) each
            goal = series[:, 1:]
        if self.config.loss == "mse":
            return F.mse_loss(mean, goal)
        if self.config.loss == "mae":
            return F.l1_loss(mean, goal)
        return (scale.log() + 0.5 * ((goal - mean) / scale) ** 2).mean() + 0.5 * math.log(2 * math.pi)

    # -- inference --------------------------------------------------------------------------------
    def predict_interval(
        self, window: Tensor, level: float = 0.9, future_covariates: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Central ``level`` interval of a Gaussian forecast: ``mean -/+ z * scale``, each (B, H)."""
        if self.config.distribution != "gaussian":
            raise ValueError("Forecaster.predict_interval needs distribution 'gaussian'; this model is 'point'")
        if not 0.0 < level < 1.0:
            raise ValueError(f"Forecaster.predict_interval: level must be in (0, 1), got {level}")
        out = self(window, future_covariates)
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return out["mean"] - z * out["scale"], out["mean"] + z * out["scale"]

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        """A random-walk window of ``length`` steps (at least 2), plus future covariates when there are any."""
        p = self.head.weight
        C, kw = self.num_covariates, {"device": p.device, "dtype": p.dtype}
        window = torch.randn(batch_size, max(length, 2), 1 + C, **kw).cumsum(1)
        if C == 0:
            return (window[..., 0],), {}
        return (window,), {"future_covariates": torch.randn(batch_size, self.horizon, C, **kw)}


class ForecasterEnsembleConfig(StrictModel):
    member: ForecasterConfig
    size: int = Field(ge=1, le=64, description="members, each initialised at random on its own")


class ForecasterEnsemble(Model):
    """``size`` independent :class:`~rnnkit.models.Forecaster` members with the same interface as one.

    ``forward`` gives the mean of the members' means and, for Gaussian members, the standard deviation of
    their equal-weight mixture; ``loss`` is the mean of the members' losses (so each member's gradient is its
    own loss's, divided by ``size``). Members share no parameter.
    """

    config_class = ForecasterEnsembleConfig
    kind = "forecaster-ensemble"
    config: ForecasterEnsembleConfig

    def __init__(self, config: ForecasterEnsembleConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.members = nn.ModuleList(Forecaster(self.config.member) for _ in range(self.config.size))

    @property
    def horizon(self) -> int:
        return self.config.member.horizon

    @property
    def num_covariates(self) -> int:
        return self.config.member.num_covariates

    def forward(self, window: torch.Tensor, future_covariates: torch.Tensor | None = None):
        outs = [m(window, future_covariates) for m in self.members]
        means = torch.stack([o["mean"] for o in outs])  # (K, B, H)
        mean = means.mean(0)
        if outs[0]["scale"] is None:
            return {"mean": mean, "scale": None}
        scales = torch.stack([o["scale"] for o in outs])
        var = (scales.square() + (means - mean).square()).mean(0)  # the mixture's variance
        return {"mean": mean, "scale": var.sqrt()}

    def loss(self, window: torch.Tensor, target: torch.Tensor, future_covariates: torch.Tensor | None = None):
        return torch.stack([m.loss(window, target, future_covariates) for m in self.members]).mean()

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        return self.members[0].example_inputs(batch_size, length)


# -- global models over many series -------------------------------------------------------------------------
class PanelForecasterConfig(StrictModel):
    """Configuration of :class:`PanelForecaster` (unknown keys are errors).

    ``encoder.input_size`` must be ``2 + known + static`` (the normalised value, the padding mask, the known
    covariates of the step, the static covariates of the series).
    """

    encoder: EncoderConfig
    horizon: int = Field(gt=0, description="steps forecast")
    head: Literal["direct", "recursive"] = "direct"
    quantiles: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9], description="must include 0.5")
    scaling: Literal["log", "ratio"] = Field("log", description="log: log(y / level), values > 0; ratio: y / level - 1")
    level_steps: int = Field(1, gt=0, description="the level is the mean of the last level_steps deseasonalised inputs")
    known: int = Field(0, ge=0, description="known-in-advance covariates per step")
    static: int = Field(0, ge=0, description="static covariates per series")

    @model_validator(mode="after")
    def _check(self):
        q = self.quantiles
        if not q or any(not 0 < v < 1 for v in q) or sorted(set(q)) != q:
            raise ValueError(f"quantiles must be increasing, distinct and inside (0, 1), got {q}")
        if 0.5 not in q:
            raise ValueError(f"quantiles must include 0.5 (the point forecast), got {q}")
        if self.encoder.input_size != 2 + self.known + self.static:
            raise ValueError(
                f"encoder.input_size must be 2 + known + static = {2 + self.known + self.static}, "
                f"got {self.encoder.input_size}"
            )
        if self.head == "recursive" and self.encoder.bidirectional:
            raise ValueError("head 'recursive' predicts step by step and cannot use a bidirectional encoder")
        return self


#: bound on normalised values (log units or ratios), so one wild window cannot dominate a batch
Z_CLAMP = 10.0


class PanelForecaster(Model):
    """A global forecaster: one network for many series, each window on its own level (and season).

    ``forward(window (B, W), mask=None (B, W), season=None (B, W+H), level=None (B,), known=None (B, W+H, K),
    static=None (B, S)) -> {"quantiles": (B, H, Q), "median": (B, H)}`` in the units of ``window``.

    * ``mask``: 1 at real inputs, 0 at left padding (a series shorter than the window); default all real.
    * ``season``: multiplicative seasonal factors of the ``W`` input and ``H`` forecast steps (an ES or classical
      decomposition fitted per series); inputs are divided by them and forecasts multiplied. Default: none.
    * ``level``: the series' level at the origin (an exponential-smoothing level); default: the mean of the last
      ``level_steps`` deseasonalised real inputs. Inputs are normalised as ``log(y / (season * level))``
      (``scaling="log"``, values > 0) or ``y / (season * level) - 1`` (``"ratio"``), so series of any magnitude
      share the network and no statistic is fitted across series.
    * Heads: ``direct`` maps the encoder's last state (with the future known covariates and the static ones) to
      all ``H x Q`` outputs at once; ``recursive`` is a one-step model whose median is fed back ``H - 1`` times.
    * Quantiles are trained with the pinball loss (:meth:`loss`, in normalised units) and returned sorted, so
      they never cross.
    """

    config_class = PanelForecasterConfig
    kind = "panel-forecaster"
    config: PanelForecasterConfig

    def __init__(self, config: PanelForecasterConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        cfg = self.config
        self.encoder = SequenceEncoder(cfg.encoder)
        Q = len(cfg.quantiles)
        self.register_buffer("taus", torch.tensor(cfg.quantiles), persistent=False)
        self.median_index = cfg.quantiles.index(0.5)
        if cfg.head == "recursive":
            self.head = nn.Linear(self.encoder.output_size, Q)
        else:
            extra = cfg.horizon * cfg.known + cfg.static
            self.head = nn.Linear(self.encoder.output_size + extra, cfg.horizon * Q)

    @property
    def horizon(self) -> int:
        return self.config.horizon

    # -- normalisation --------------------------------------------------------------------------------
    def _check(self, window: Tensor, mask, season, level, known, static) -> tuple[Tensor, ...]:
        cfg, H = self.config, self.config.horizon
        if not torch.is_floating_point(window) or window.dim() != 2 or window.shape[1] < 1:
            raise ValueError(
                f"PanelForecaster: expected a floating window (B, W), got {tuple(window.shape)} {window.dtype}"
            )
        B, W = window.shape
        mask = torch.ones_like(window) if mask is None else mask.to(window.dtype)
        season = window.new_ones(B, W + H) if season is None else season.to(window.dtype)
        shapes = {"mask": (mask, (B, W)), "season": (season, (B, W + H))}
        if level is not None:
            shapes["level"] = (level, (B,))
        if cfg.known:
            if known is None:
                raise ValueError(
                    f"PanelForecaster: this model has {cfg.known} known covariate(s): pass known (B, W+H, {cfg.known})"
                )
            shapes["known"] = (known, (B, W + H, cfg.known))
        if cfg.static:
            if static is None:
                raise ValueError(
                    f"PanelForecaster: this model has {cfg.static} static covariate(s): pass static (B, {cfg.static})"
                )
            shapes["static"] = (static, (B, cfg.static))
        for name, (t, shape) in shapes.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"PanelForecaster: expected {name} {shape}, got {tuple(t.shape)}")
        return mask, season

    def _normalise(self, window: Tensor, mask: Tensor, season: Tensor, level: Tensor | None):
        """-> z (B, W) normalised inputs (0 at padding), scale (B, H) that maps normalised forecasts back."""
        W = window.shape[1]
        d = window / season[:, :W].clamp_min(1e-8)
        if level is None:
            k = min(self.config.level_steps, W)
            w = mask[:, W - k :]
            vals = d[:, W - k :].abs() if self.config.scaling == "ratio" else d[:, W - k :]
            level = (vals * w).sum(1) / w.sum(1).clamp_min(1.0)
        level = level.to(window.dtype)
        if self.config.scaling == "log":
            level = level.clamp_min(1e-8)
            z = torch.log(d.clamp_min(1e-8) / level[:, None])
        else:
            level = torch.where(level.abs() > 1e-8, level, torch.ones_like(level))
            z = d / level[:, None] - 1
        z = z.clamp(-Z_CLAMP, Z_CLAMP) * mask
        return z, level[:, None] * season[:, W:]

    def _denormalise(self, q: Tensor, scale: Tensor) -> Tensor:
        """(B, H, Q) normalised -> original units."""
        if self.config.scaling == "log":
            return torch.exp(q.clamp(-Z_CLAMP, Z_CLAMP)) * scale[..., None]
        return (1 + q) * scale[..., None]

    def _rows(self, z: Tensor, mask: Tensor, known: Tensor | None, static: Tensor | None) -> Tensor:
        """(B, T) values, (B, T) mask, (B, T, K) known, (B, S) static -> encoder rows (B, T, 2+K+S)."""
        parts = [z.unsqueeze(-1), mask.unsqueeze(-1)]
        if known is not None and self.config.known:
            parts.append(known.to(z.dtype))
        if static is not None and self.config.static:
            parts.append(static.to(z.dtype)[:, None, :].expand(-1, z.shape[1], -1))
        return torch.cat(parts, -1)

    # -- the heads ------------------------------------------------------------------------------------
    def _direct(self, z, mask, known, static) -> Tensor:
        W, H = z.shape[1], self.config.horizon
        _, states = self.encoder(self._rows(z, mask, None if known is None else known[:, :W], static))
        h = self.encoder.top_hidden(states)
        extra = [h]
        if self.config.known:
            extra.append(known[:, W:].flatten(1).to(h.dtype))
        if self.config.static:
            extra.append(static.to(h.dtype))
        return self.head(torch.cat(extra, -1)).view(z.shape[0], H, -1)  # (B, H, Q)

    def _recursive(self, z, mask, known, static) -> Tensor:
        W, H = z.shape[1], self.config.horizon
        nxt = None if known is None else known[:, 1 : W + 1]  # row t carries the covariates of step t + 1
        out, state = self.encoder(self._rows(z, mask, nxt, static))
        q = self.head(out[:, -1])  # (B, Q)
        qs = [q]
        one = mask.new_ones(z.shape[0], 1)
        for k in range(1, H):
            zk = q[:, self.median_index : self.median_index + 1].clamp(-Z_CLAMP, Z_CLAMP)
            kn = None if known is None else known[:, W + k : W + k + 1]
            out, state = self.encoder(self._rows(zk, one, kn, static), state=state)
            q = self.head(out[:, -1])
            qs.append(q)
        return torch.stack(qs, 1)  # (B, H, Q)

    def forward(
        self,
        window: Tensor,
        mask: Tensor | None = None,
        season: Tensor | None = None,
        level: Tensor | None = None,
        known: Tensor | None = None,
        static: Tensor | None = None,
    ) -> dict[str, Tensor]:
        mask, season = self._check(window, mask, season, level, known, static)
        z, scale = self._normalise(window, mask, season, level)
        run = self._recursive if self.config.head == "recursive" else self._direct
        q = self._denormalise(run(z, mask, known, static), scale).sort(dim=-1).values
        return {"quantiles": q, "median": q[..., self.median_index]}

    def normalised_target(self, target: Tensor, scale: Tensor) -> Tensor:
        """Targets (B, H) in original units -> normalised units, given the ``scale`` of :meth:`_normalise`."""
        if self.config.scaling == "log":
            return torch.log(target.clamp_min(1e-8) / scale.clamp_min(1e-8)).clamp(-Z_CLAMP, Z_CLAMP)
        return (target / scale - 1).clamp(-Z_CLAMP, Z_CLAMP)

    def loss(
        self,
        window: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
        season: Tensor | None = None,
        level: Tensor | None = None,
        known: Tensor | None = None,
        static: Tensor | None = None,
    ) -> Tensor:
        """Mean pinball loss over the quantiles of forecasting ``target`` (B, H), in normalised units.

        The recursive head is trained by teacher forcing: every real position of window + horizon predicts the
        next value's quantiles."""
        mask, season = self._check(window, mask, season, level, known, static)
        B, W = window.shape
        H = self.config.horizon
        if tuple(target.shape) != (B, H):
            raise ValueError(f"PanelForecaster.loss: expected target ({B}, {H}), got {tuple(target.shape)}")
        z, scale = self._normalise(window, mask, season, level)
        zt = self.normalised_target(target.to(window.dtype), scale)
        if self.config.head == "direct":
            q = self._direct(z, mask, known, static)  # (B, H, Q)
            return pinball(q, zt, self.taus).mean()
        series = torch.cat([z, zt], 1)  # (B, W+H)
        real = torch.cat([mask, mask.new_ones(B, H)], 1)
        nxt = None if known is None else known[:, 1:]
        out, _ = self.encoder(self._rows(series[:, :-1], real[:, :-1], nxt, static))
        q = self.head(out)  # (B, W+H-1, Q)
        w = real[:, 1:]  # a padded position has nothing to predict
        per = pinball(q, series[:, 1:], self.taus).mean(-1)
        return (per * w).sum() / w.sum().clamp_min(1.0)

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        """A positive random-walk window of ``length`` steps, and the covariates the model needs."""
        p = self.head.weight
        kw = {"device": p.device, "dtype": p.dtype}
        window = torch.randn(batch_size, length, **kw).cumsum(1).abs() + 1.0
        extra = {}
        if self.config.known:
            extra["known"] = torch.randn(batch_size, length + self.horizon, self.config.known, **kw)
        if self.config.static:
            extra["static"] = torch.randn(batch_size, self.config.static, **kw)
        return (window,), extra


def pinball(q: Tensor, y: Tensor, taus: Tensor) -> Tensor:
    """Pinball (quantile) loss of quantile forecasts ``q`` (..., Q) for targets ``y`` (...): (..., Q)."""
    diff = y.unsqueeze(-1) - q
    return torch.maximum(taus * diff, (taus - 1) * diff)


class PanelForecasterEnsembleConfig(StrictModel):
    member: PanelForecasterConfig
    size: int = Field(ge=1, le=64, description="members, each initialised at random on its own")


class PanelForecasterEnsemble(Model):
    """``size`` independent :class:`PanelForecaster` members trained side by side on the same batches; the forecast
    is the median over members of each quantile (sorted again), ``loss`` the mean of the members' losses."""

    config_class = PanelForecasterEnsembleConfig
    kind = "panel-forecaster-ensemble"
    config: PanelForecasterEnsembleConfig

    def __init__(self, config: PanelForecasterEnsembleConfig | dict | None = None, **overrides) -> None:
        super().__init__(config, **overrides)
        self.members = nn.ModuleList(PanelForecaster(self.config.member) for _ in range(self.config.size))
        self.median_index = self.members[0].median_index

    @property
    def horizon(self) -> int:
        return self.config.member.horizon

    def forward(self, window: Tensor, **kwargs) -> dict[str, Tensor]:
        qs = torch.stack([m(window, **kwargs)["quantiles"] for m in self.members])  # (K, B, H, Q)
        q = qs.median(0).values.sort(dim=-1).values
        return {"quantiles": q, "median": q[..., self.median_index]}

    def loss(self, window: Tensor, target: Tensor, **kwargs) -> Tensor:
        return torch.stack([m.loss(window, target, **kwargs) for m in self.members]).mean()

    def example_inputs(self, batch_size: int = 2, length: int = 7) -> tuple[tuple, dict]:
        return self.members[0].example_inputs(batch_size, length)
