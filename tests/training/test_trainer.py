"""The trainer: learns, logs, checkpoints, resumes to the same weights, stops early, reports bad setups."""

import json

import pytest
import torch
import torch.nn.functional as F

from rnnkit.errors import RnnkitError
from rnnkit.layers import GRU
from rnnkit.training import Callback, Task, TrainConfig, Trainer, latest_checkpoint


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = GRU(3, 8, batch_first=True, output_dropout=0.2)  # dropout: resume must restore RNG
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x, lengths):
        out, h = self.rnn(x, lengths=lengths)
        return self.head(h[-1])


def make_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, 3, generator=g)
    lengths = torch.randint(2, 7, (n,), generator=g)
    y = (x[:, 0, 0] > 0).long()  # the label is in the first step: needs memory across the sequence
    return x, lengths, y


def make_task(batch_size=16):
    data = {"train": make_data(96, 0), "validation": make_data(48, 1)}

    def batches(split, epoch):
        x, lengths, y = data[split]
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch)) if split == "train" else None
        idx = order if order is not None else torch.arange(len(y))
        for i in range(0, len(y), batch_size):
            j = idx[i : i + batch_size]
            yield {"x": x[j], "lengths": lengths[j], "y": y[j]}

    def train_step(model, b, carry):
        return F.cross_entropy(model(b["x"], b["lengths"]), b["y"]), None, len(b["y"])

    def eval_step(model, b):
        logits = model(b["x"], b["lengths"])
        return {
            "loss_sum": float(F.cross_entropy(logits, b["y"], reduction="sum")),
            "correct": float((logits.argmax(-1) == b["y"]).sum()),
            "n": float(len(b["y"])),
        }

    def finalize(s):
        return {"loss": s["loss_sum"] / s["n"], "accuracy": s["correct"] / s["n"]}

    return Task(
        batches, train_step, eval_step, finalize, num_batches=lambda split: -(-len(data[split][2]) // batch_size)
    )


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_fit_learns_and_writes_metrics(tmp_path):
    torch.manual_seed(0)
    model = TinyModel()
    cfg = TrainConfig(epochs=8, lr=0.02, monitor="accuracy", monitor_mode="max")
    result = Trainer(cfg, run_dir=tmp_path, quiet=True).fit(model, make_task())
    assert result.history[-1]["val_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, 9))
    assert (tmp_path / "best.safetensors").exists()
    assert result.best is not None and result.best["val_accuracy"] == max(r["val_accuracy"] for r in lines)
    assert latest_checkpoint(tmp_path / "checkpoints") is not None


class Interrupt(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, trainer, step, loss):
        if step == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.parametrize("at_step", [5, 6, 13])  # mid-epoch and right at an epoch boundary (6 batches/epoch)
def test_resume_reaches_the_same_weights(tmp_path, at_step):
    cfg = TrainConfig(epochs=3, lr=0.01, checkpoint_every=1, scheduler="cosine", warmup_steps=3)
    torch.manual_seed(0)
    straight = TinyModel()
    Trainer(cfg, run_dir=tmp_path / "a", quiet=True).fit(straight, make_task())

    torch.manual_seed(0)
    interrupted = TinyModel()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "b", callbacks=[Interrupt(at_step)], quiet=True).fit(interrupted, make_task())
    torch.manual_seed(123)  # a fresh process: different RNG, fresh weights
    resumed = TinyModel()
    Trainer(cfg, run_dir=tmp_path / "b", quiet=True).fit(resumed, make_task(), resume=True)
    for k, v in weights(straight).items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    history = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_damaged_checkpoint_is_detected(tmp_path):
    cfg = TrainConfig(epochs=1, lr=0.01)
    Trainer(cfg, run_dir=tmp_path, quiet=True).fit(TinyModel(), make_task())
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:-10] + b"0123456789")
    with pytest.raises(RnnkitError, match="SHA-256"):
        Trainer(cfg, run_dir=tmp_path, quiet=True).fit(TinyModel(), make_task(), resume=True)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RnnkitError, match="nothing to resume"):
        Trainer(TrainConfig(epochs=1), run_dir=tmp_path, quiet=True).fit(TinyModel(), make_task(), resume=True)


def test_early_stopping_and_callbacks():
    seen = []

    class Record(Callback):
        def on_epoch_end(self, trainer, epoch, record):
            seen.append(epoch)

    cfg = TrainConfig(epochs=50, lr=1e-9, early_stopping=2, monitor="loss")  # lr ~ 0: no improvement
    result = Trainer(cfg, callbacks=[Record()], quiet=True).fit(TinyModel(), make_task())
    assert result.stopped_early
    assert seen == [0, 1, 2]


def test_max_steps_and_grad_accum():
    cfg = TrainConfig(epochs=5, grad_accum=2, max_steps=4)
    result = Trainer(cfg, quiet=True).fit(TinyModel(), make_task())
    assert result.steps == 4
    assert result.history[-1]["epoch"] == 2  # 6 batches / 2 = 3 steps per epoch


def test_unknown_monitor_metric_is_reported():
    with pytest.raises(RnnkitError, match="train.monitor='f1'"):
        Trainer(TrainConfig(epochs=1, monitor="f1"), quiet=True).fit(TinyModel(), make_task())


def test_nan_loss_is_reported():
    task = make_task()
    task.train_step = lambda model, b, carry: (model(b["x"], b["lengths"]).sum() * float("nan"), None, 1)
    with pytest.raises(RnnkitError, match="loss became nan"):
        Trainer(TrainConfig(epochs=1), quiet=True).fit(TinyModel(), task)


@pytest.mark.parametrize("name", ["sgd", "adamw", "rmsprop"])
@pytest.mark.parametrize("scheduler", ["linear", "step", "plateau"])
def test_optimizers_and_schedules_run(name, scheduler):
    cfg = TrainConfig(epochs=2, optimizer=name, scheduler=scheduler, lr=0.05, momentum=0.9)
    result = Trainer(cfg, quiet=True).fit(TinyModel(), make_task())
    assert len(result.history) == 2


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="epochz"):
        TrainConfig(epochz=3)
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=-1)


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RnnkitError, match="CUDA is not available"):
        Trainer(TrainConfig(device="cuda"))


def test_mixed_precision_runs_on_cpu():
    """``amp`` uses bfloat16 autocast on CPU; training still learns."""
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=6, lr=0.02, amp=True, monitor="accuracy", monitor_mode="max")
    result = Trainer(cfg, quiet=True).fit(TinyModel(), make_task())
    assert result.history[-1]["val_accuracy"] > 0.8


class StatefulModel(torch.nn.Module):
    """Reads a long stream in windows, carrying its GRU state (truncated BPTT)."""

    def __init__(self):
        super().__init__()
        self.rnn = GRU(3, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x, h=None):
        out, h = self.rnn(x, h)
        return self.head(out).squeeze(-1), h


def stateful_task():
    g = torch.Generator().manual_seed(0)
    stream = torch.randn(4, 60, 3, generator=g)  # 4 rows, 6 windows of 10 steps
    target = stream[..., 0].cumsum(1) * 0.1  # depends on everything read so far

    def batches(split, epoch):
        for w in range(6):
            yield {"x": stream[:, w * 10 : (w + 1) * 10], "y": target[:, w * 10 : (w + 1) * 10]}

    def train_step(model, b, carry):
        pred, h = model(b["x"], carry)
        return F.mse_loss(pred, b["y"]), h, b["y"].numel()

    def eval_step(model, b):
        return {"n": 1.0}

    return Task(batches, train_step, eval_step, lambda s: {"loss": 0.0}, num_batches=lambda split: 6)


def test_mid_epoch_resume_restores_the_carried_state(tmp_path):
    cfg = TrainConfig(epochs=2, lr=0.01, checkpoint_every=1)
    torch.manual_seed(0)
    straight = StatefulModel()
    Trainer(cfg, run_dir=tmp_path / "a", quiet=True).fit(straight, stateful_task(), val_split=None)
    torch.manual_seed(0)
    cut = StatefulModel()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "b", callbacks=[Interrupt(4)], quiet=True).fit(
            cut, stateful_task(), val_split=None
        )
    resumed = StatefulModel()
    result = Trainer(cfg, run_dir=tmp_path / "b", quiet=True).fit(resumed, stateful_task(), resume=True, val_split=None)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    history = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert result.history[0]["train_loss"] == pytest.approx(history[0]["train_loss"])


# the keys of trainer.json's "trainer" object: checkpoints of earlier releases must keep resuming
TRAINER_JSON_KEYS = {
    "epoch", "batch", "best", "bad_epochs", "history", "skipped_steps", "rollbacks", "lr_scale", "loss_sum", "n_sum",
    "config_lr", "step",
}  # fmt: skip


def test_trainer_json_keeps_its_format(tmp_path):
    cfg = TrainConfig(epochs=1, lr=0.01, checkpoint_every=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path, callbacks=[Interrupt(5)], quiet=True).fit(TinyModel(), make_task())
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    trainer = json.loads((ckpt / "trainer.json").read_text())["trainer"]
    assert set(trainer) == TRAINER_JSON_KEYS
    assert (trainer["epoch"], trainer["batch"], trainer["step"], trainer["config_lr"]) == (0, 4, 4, 0.01)
    assert trainer["n_sum"] == 64 and trainer["loss_sum"] > 0


def test_a_checkpoint_without_the_fault_counters_resumes(tmp_path):
    """A trainer.json written before skipped_steps / rollbacks / lr_scale / config_lr existed resumes with their
    defaults and reaches the weights of an uninterrupted run."""
    from rnnkit.training.checkpoint import _digest

    cfg = TrainConfig(epochs=2, lr=0.01, checkpoint_every=1)
    torch.manual_seed(0)
    straight = TinyModel()
    Trainer(cfg, run_dir=tmp_path / "a", quiet=True).fit(straight, make_task())
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "b", callbacks=[Interrupt(4)], quiet=True).fit(TinyModel(), make_task())
    ckpt = latest_checkpoint(tmp_path / "b" / "checkpoints")
    meta = json.loads((ckpt / "trainer.json").read_text())
    for key in ("skipped_steps", "rollbacks", "lr_scale", "config_lr"):
        del meta["trainer"][key]
    meta["digest"] = _digest(meta)
    (ckpt / "trainer.json").write_text(json.dumps(meta))
    resumed = TinyModel()
    result = Trainer(cfg, run_dir=tmp_path / "b", quiet=True).fit(resumed, make_task(), resume=True)
    for k, v in weights(straight).items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert set(
        json.loads((latest_checkpoint(tmp_path / "b" / "checkpoints") / "trainer.json").read_text())["trainer"]
    ) == (TRAINER_JSON_KEYS)
