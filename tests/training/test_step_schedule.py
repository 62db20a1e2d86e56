"""The 'step' scheduler's ``step_start``: Zaremba et al.'s schedule (lr kept 4 epochs, then halved each epoch),
and the default (``step_start`` = ``step_size``) is torch's StepLR."""

from __future__ import annotations

import pytest
import torch

from rnnkit.training import TrainConfig, Trainer


def lrs_per_epoch(epochs: int, steps_per_epoch: int, **cfg) -> list[float]:
    trainer = Trainer(TrainConfig(optimizer="sgd", lr=1.0, scheduler="step", **cfg), quiet=True)
    opt = trainer.make_optimizer(torch.nn.Linear(1, 1))
    sched = trainer.make_scheduler(opt, epochs * steps_per_epoch, steps_per_epoch)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        for _ in range(steps_per_epoch):
            opt.step()
            sched.step()
    return out


def test_zaremba_schedule():
    assert lrs_per_epoch(13, 3, step_start=4, step_size=1, gamma=0.5) == pytest.approx(
        [1.0] * 4 + [0.5**k for k in range(1, 10)]
    )


def test_default_start_is_step_size_like_steplr():
    got = lrs_per_epoch(7, 2, step_size=2, gamma=0.1)
    opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=1.0)
    steplr = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    want = []
    for _ in range(7):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        steplr.step()
    assert got == pytest.approx(want)
    assert lrs_per_epoch(4, 2, step_start=0, step_size=1, gamma=0.5) == pytest.approx([0.5, 0.25, 0.125, 0.0625])
