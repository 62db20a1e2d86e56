"""Crash safety (issue #9, item 1): ``kill -9`` at random moments never leaves a run folder that cannot resume,
and the resumed run ends with the same weights as an uninterrupted one, bit for bit. SIGINT and SIGTERM stop
after the current step, save a checkpoint, and exit 130 with one line.

Why the resumed weights can be exact: a checkpoint holds the weights, the optimizer and scheduler state, every
RNG state, the position in the epoch (the batch order is a function of the seed and the epoch) and the
epoch's running loss, and it is only written after a whole optimizer step. The kill delays are drawn from a
seeded RNG, scaled to the machine by the reference run's start-up and wall time; where a kill lands (start-up,
a step, the middle of a checkpoint write, validation, the final files) therefore varies between machines, which
is the point: every moment must be safe. The test prints where the kills landed (the latest checkpoint's step).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from reliability_helpers import resume_argv, same_run, train_argv

from rnnkit.config import load_yaml, validate
from rnnkit.tasks.text_classification import TextClassification, TextClassificationConfig
from rnnkit.training import Trainer, latest_checkpoint, load_checkpoint

KILLS = 20
SEED = 20261123


class CheckpointProbe:
    """Loads a run's latest checkpoint into a model of the run's shape (built once from its config and data)."""

    def __init__(self, run, scratch) -> None:
        config = validate(TextClassificationConfig, load_yaml(run / "config.yaml"))
        task = TextClassification(config)
        task.prepare(scratch)
        self.model = task.build_model()
        self.optimizer = Trainer(config.train, quiet=True).make_optimizer(self.model)

    def check(self, run) -> int | None:
        """Every visible checkpoint folder is complete, ``latest`` names one, and it loads; its step (or None)."""
        folder = run / "checkpoints"
        if not folder.is_dir():
            return None
        for ckpt in folder.glob("step-*"):
            assert (ckpt / "trainer.json").is_file(), f"incomplete checkpoint {ckpt}"
        if (folder / "latest").exists():
            assert (folder / (folder / "latest").read_text().strip() / "trainer.json").is_file()
        path = latest_checkpoint(folder)
        if path is None:
            return None
        state = load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=None)
        return state["step"]


def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(forkserver, reviews, reference, tmp_path):
    rng = random.Random(SEED)
    # kill delays: uniform in [0, longest]; a resume's start-up takes about as long as the reference's. On a
    # machine busier than during the reference run, a kill that found no new checkpoint widens the range.
    base = longest = max(0.3, reference["startup"] + (reference["seconds"] - reference["startup"]) / 6)
    runs = tmp_path / "runs"
    probe = None
    kills, steps_at_kill, finished = 0, [], []
    while kills < KILLS:  # a run that finishes before enough kills is compared, and another one starts
        run = runs / f"killed-{len(finished) + 1}"
        argv = train_argv(reviews, runs, run.name)
        while True:
            pid = forkserver.start(argv)
            if argv[1] != "--resume":  # a new run: start the clock once its folder exists
                while not (run / "config.yaml").exists() and forkserver.wait(pid, 0.005) is None:
                    pass
            status = forkserver.wait(pid, rng.uniform(0, longest))
            if status is not None:  # it finished before the kill
                assert status == 0, forkserver.last_err.read_text()
                break
            os.kill(pid, signal.SIGKILL)
            assert forkserver.wait(pid) == -signal.SIGKILL
            kills += 1
            err = forkserver.last_err.read_text()
            assert "Traceback" not in err and "error" not in err, err
            if probe is None and (run / "tokenizer.json").exists():
                probe = CheckpointProbe(run, tmp_path / "probe")
            step = probe.check(run) if probe is not None else None
            progressed = step is not None and (not steps_at_kill or step != steps_at_kill[-1])
            longest = base if progressed else longest * 1.5
            steps_at_kill.append(step)
            if (run / "meta.json").exists():  # killed after the run was complete
                break
            argv = resume_argv(run)
            # enough kills, or this kill found no newer checkpoint than the last one (on a busy machine the kills
            # then keep landing in the same phase, e.g. the final evaluation): let the resume finish, start anew
            if kills == KILLS or (step is not None and not progressed):
                status, err = forkserver.run(argv)
                assert status == 0, err
                break
        assert not [p for p in run.rglob(".*") if ".tmp-" in p.name]  # a resume removes what a kill left
        same_run(reference["run"], run)
        finished.append(run.name)
    record = {"kills": kills, "runs": len(finished), "checkpoint_steps_at_kills": steps_at_kill}
    print("crash-safety:", json.dumps(record))
    # the kills landed at many different points of training, not all during start-up
    assert len({s for s in steps_at_kill if s is not None}) >= 4, steps_at_kill


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_after_a_step_saves_and_resume_finishes_the_same(sig, forkserver, reviews, reference, tmp_path):
    runs = tmp_path / "runs"
    run = runs / "signalled"
    pid = forkserver.start(train_argv(reviews, runs, run.name))
    while latest_checkpoint(run / "checkpoints") is None:  # wait for training to be under way
        assert forkserver.wait(pid, 0.01) is None, forkserver.last_err.read_text()
    os.kill(pid, sig)
    assert forkserver.wait(pid, 60) == 130
    err = forkserver.last_err.read_text()
    name = signal.Signals(sig).name
    assert err.startswith(f"rnnkit: interrupted by {name} at ") and err.count("\n") == 1, err
    assert f"continue with: rnnkit train --resume {run}" in err and "checkpoint saved in" in err
    saved = err.split("checkpoint saved in ")[1].split(";")[0]
    assert latest_checkpoint(run / "checkpoints") == type(run)(saved)
    assert not (run / "meta.json").exists()
    assert name in (run / "train.log").read_text()
    status, err = forkserver.run(resume_argv(run))
    assert status == 0, err
    same_run(reference["run"], run)


@pytest.mark.slow  # two cold interpreter starts (~10-30 s); the fork-server tests above cover the behaviour
def test_ctrl_c_on_python_m_rnnkit(reviews, reference, tmp_path):
    """The same through a plain ``python -m rnnkit train`` process (no fork server)."""
    runs = tmp_path / "runs"
    run = runs / "ctrl-c"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnnkit", *train_argv(reviews, runs, run.name)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        while latest_checkpoint(run / "checkpoints") is None:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    assert err.startswith("rnnkit: interrupted by SIGINT") and err.count("\n") == 1 and "Traceback" not in err
    resumed = subprocess.run(
        [sys.executable, "-m", "rnnkit", *resume_argv(run)], capture_output=True, text=True, env=env, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    same_run(reference["run"], run)
