"""Numerical faults (issue #9, item 3): ``train.on_nonfinite: stop | skip | rollback``, tested by injecting NaN
losses and poisoned gradients into a tiny task."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from reliability_helpers import train_argv

from rnnkit.cli.main import main
from rnnkit.layers import GRU
from rnnkit.tasks import text_classification
from rnnkit.training import Callback, NonFiniteError, Task, TrainConfig, Trainer, latest_checkpoint

BATCHES = 6  # per epoch


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = GRU(3, 8, batch_first=True, output_dropout=0.2)  # dropout: a rollback must restore the RNG
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, h = self.rnn(x, lengths=lengths)
        return self.head(h[-1])


def make_task(nan_at=(), poison_at=()):
    """A 6-batch classification task. ``nan_at``: 1-based train_step calls whose loss is NaN; ``poison_at``:
    calls whose loss is finite but whose gradient is NaN (a backward hook)."""
    g = torch.Generator().manual_seed(0)
    x, lengths = torch.randn(96, 6, 3, generator=g), torch.randint(2, 7, (96,), generator=g)
    y = (x[:, 0, 0] > 0).long()
    calls = {"n": 0}

    def batches(split, epoch):
        order = torch.randperm(96, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, 96, 16):
            j = order[i : i + 16]
            yield {"x": x[j], "lengths": lengths[j], "y": y[j]}

    def train_step(model, b, carry):
        calls["n"] += 1
        loss = F.cross_entropy(model(b["x"], b["lengths"]), b["y"])
        if calls["n"] in nan_at:
            loss = loss * float("nan")
        if calls["n"] in poison_at:
            if id(model) not in hooked:  # one hook per model, armed for this backward only
                model.head.bias.register_hook(lambda grad: grad * float("nan") if armed.pop(id(model), 0) else grad)
                hooked.add(id(model))
            armed[id(model)] = 1
        return loss, None, len(b["y"])

    hooked: set[int] = set()
    armed: dict[int, int] = {}

    def eval_step(model, b):
        logits = model(b["x"], b["lengths"])
        return {"loss_sum": float(F.cross_entropy(logits, b["y"], reduction="sum")), "n": float(len(b["y"]))}

    task = Task(batches, train_step, eval_step, lambda s: {"loss": s["loss_sum"] / s["n"]}, lambda split: BATCHES)
    task.calls = calls
    return task


def fit(cfg, task, run_dir=None, callbacks=(), resume=False):
    torch.manual_seed(0)
    model = TinyModel()
    result = Trainer(cfg, run_dir=run_dir, callbacks=callbacks, quiet=True).fit(model, task, resume=resume)
    return model, result


def finite(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_the_policy_fields_are_documented_and_validated():
    fields = TrainConfig.model_fields
    for name in ("on_nonfinite", "nonfinite_lr_factor", "max_rollbacks"):
        assert fields[name].description
    with pytest.raises(ValueError, match="on_nonfinite"):
        TrainConfig(on_nonfinite="ignore")
    with pytest.raises(ValueError, match="nonfinite_lr_factor"):
        TrainConfig(nonfinite_lr_factor=1.5)


@pytest.mark.parametrize("inject", ["loss", "gradient"])
def test_stop_raises_one_line_and_applies_nothing(inject, caplog):
    """The step with the fault is not applied: the weights equal a run stopped just before it."""
    task = make_task(nan_at={4} if inject == "loss" else (), poison_at={4} if inject == "gradient" else ())
    seen = {}

    class Keep(Callback):
        def on_step_end(self, trainer, step, loss):
            seen[step] = {k: v.clone() for k, v in trainer._model.state_dict().items()}

    cfg = TrainConfig(epochs=2, lr=0.01)
    torch.manual_seed(0)
    model = TinyModel()
    trainer = Trainer(cfg, callbacks=[Keep()], quiet=True)
    trainer._model = model
    with caplog.at_level(logging.INFO, logger="rnnkit"), pytest.raises(NonFiniteError) as err:
        trainer.fit(model, task)
    message = str(err.value)
    assert "\n" not in message and "epoch 1, batch 4 (step 4)" in message and "train.on_nonfinite" in message
    assert ("loss became nan" if inject == "loss" else "gradient norm became nan") in message
    assert trainer.step == 3 and finite(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, seen[3][k])
    assert message in caplog.text


@pytest.mark.parametrize("inject", ["loss", "gradient"])
def test_skip_drops_those_steps_counts_and_logs_them(inject, caplog):
    bad = {3, 8}  # epoch 1 batch 3, epoch 2 batch 2
    task = make_task(nan_at=bad if inject == "loss" else (), poison_at=bad if inject == "gradient" else ())
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        model, result = fit(TrainConfig(epochs=3, lr=0.01, on_nonfinite="skip"), task)
    assert result.steps == 3 * BATCHES - 2 and finite(model)
    assert [r.get("skipped_steps", 0) for r in result.history] == [1, 2, 2]
    assert all(math.isfinite(r["train_loss"]) for r in result.history)
    assert caplog.text.count("optimizer step skipped") == 2
    assert "epoch 1, batch 3" in caplog.text and "epoch 2, batch 2" in caplog.text


def test_skip_stops_when_a_whole_epoch_is_non_finite():
    task = make_task(nan_at=set(range(1, 100)))
    with pytest.raises(NonFiniteError, match="every optimizer step of epoch 1 was non-finite"):
        fit(TrainConfig(epochs=2, on_nonfinite="skip"), task)


class StopAt(Callback):
    def __init__(self, step):
        self.at = step

    def on_step_end(self, trainer, step, loss):
        if step == self.at:
            raise KeyboardInterrupt


def test_rollback_equals_resuming_the_last_checkpoint_at_a_lower_lr(tmp_path, caplog):
    """A NaN at step 6 rolls back to the checkpoint of step 4 and halves the lr: bit for bit what resuming that
    checkpoint with ``train.lr`` halved gives."""
    cfg = TrainConfig(epochs=3, lr=0.01, checkpoint_every=2, scheduler="cosine", warmup_steps=2,
                      on_nonfinite="rollback")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="rnnkit"):
        rolled, result = fit(cfg, make_task(nan_at={6}), run_dir=tmp_path / "rolled")
    assert "training loss became nan at epoch 1, batch 6: rolled back to step 4 (epoch 1, batch 4), lr x0.5" in (
        caplog.text
    )
    assert result.steps == 3 * BATCHES and [r.get("rollbacks") for r in result.history] == [1, 1, 1]

    with pytest.raises(KeyboardInterrupt):  # the same run, cut after step 5: its last checkpoint is step 4
        fit(cfg, make_task(), run_dir=tmp_path / "cut", callbacks=[StopAt(5)])
    assert latest_checkpoint(tmp_path / "cut" / "checkpoints").name == "step-00000004"
    halved = cfg.model_copy(update={"lr": cfg.lr * cfg.nonfinite_lr_factor})
    resumed, again = fit(halved, make_task(), run_dir=tmp_path / "cut", resume=True)
    for k, v in resumed.state_dict().items():
        assert torch.equal(rolled.state_dict()[k], v), k
    assert [r["lr"] for r in again.history] == [r["lr"] for r in result.history]

    records = [json.loads(line) for line in (tmp_path / "rolled" / "metrics.jsonl").read_text().splitlines()]
    assert [r["rollbacks"] for r in records] == [1, 1, 1]


def test_rollback_without_a_checkpoint_returns_to_the_start_and_gives_up_after_the_limit(caplog):
    """No run folder: the snapshot is the initial state. A fault bound to the data comes back every time; after
    ``max_rollbacks`` (each halving the lr again) training stops."""
    task = make_task(nan_at={2, 4, 6, 8})  # the 2nd call after each rollback
    cfg = TrainConfig(epochs=2, lr=0.01, on_nonfinite="rollback", max_rollbacks=3)
    with caplog.at_level(logging.WARNING, logger="rnnkit"), pytest.raises(NonFiniteError, match="after 3 rollbacks"):
        fit(cfg, task)
    assert [f"lr x{f}" in caplog.text for f in (0.5, 0.25, 0.125)] == [True, True, True]
    assert caplog.text.count("rolled back to step 0 (epoch 1, batch 0)") == 3


def test_cli_stop_keeps_a_resumable_folder(reviews, tmp_path, monkeypatch, capsys):
    original = text_classification.TextClassification.trainer_task
    calls = {"n": 0}

    def poisoned(self):
        task = original(self)
        inner = task.train_step

        def step(model, batch, carry):
            calls["n"] += 1
            loss, carry, n = inner(model, batch, carry)
            return (loss * float("nan") if calls["n"] == 15 else loss), carry, n

        task.train_step = step
        return task

    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", poisoned)
    run = tmp_path / "runs" / "nan"
    assert main(train_argv(reviews, tmp_path / "runs", "nan")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training loss became nan at epoch 2" in err
    assert f"the run folder is kept: rnnkit train --resume {run}" in err
    assert "loss became nan" in (run / "train.log").read_text()
    monkeypatch.setattr(text_classification.TextClassification, "trainer_task", original)
    assert main(["train", "--resume", str(run), "--quiet", "--set", "train.lr=0.005"]) == 0
    assert (run / "meta.json").exists()
