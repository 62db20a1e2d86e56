"""Helpers of the reliability tests: a tiny text-classification data set, the training arguments, a client of
the fork server (``forkserver.py``) and the comparison of two finished runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import text_fixtures

#: a tiny model and data set: 3 epochs of 12 optimizer steps, a checkpoint after every step
TINY = [
    "model.embed_dim=8", "model.hidden_size=8", "model.dropout=0.2", "train.lr=0.01", "train.batch_size=8",
    "train.epochs=3", "train.checkpoint_every=1", "train.keep_checkpoints=2", "train.device=cpu",
]  # fmt: skip


def write_reviews(path: Path, n: int = 120, seed: int = 0) -> Path:
    return text_fixtures.write_reviews(path, n, seed)


def train_argv(data: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return ["train", "text-classification", "--data", str(data), "--runs-dir", str(runs), "--name", name, "--quiet",
            "--set", *TINY, *extra]  # fmt: skip


def resume_argv(run: Path) -> list[str]:
    return ["train", "--resume", str(run), "--quiet"]


class ForkServer:
    """Talks to ``forkserver.py``: ``start(argv)`` -> pid, ``wait(pid, timeout)`` -> exit status or None."""

    def __init__(self, logs: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkserver.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "ready"
        self.logs = logs
        self.n = 0

    def _ask(self, line: str) -> str:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def start(self, argv: list[str]) -> int:
        self.n += 1
        self.last_out, self.last_err = self.logs / f"{self.n}.out", self.logs / f"{self.n}.err"
        spec = {"argv": argv, "stdout": str(self.last_out), "stderr": str(self.last_err)}
        return int(self._ask(f"run {json.dumps(spec)}").split()[1])

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """The child's exit status (minus the signal number if a signal ended it), or None if still running
        after ``timeout`` seconds."""
        if timeout is None:
            return int(self._ask(f"wait {pid}").split()[1])
        deadline = time.monotonic() + timeout
        while True:
            answer = self._ask(f"poll {pid}")
            if answer != "running":
                return int(answer.split()[1])
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def run(self, argv: list[str]) -> tuple[int, str]:
        status = self.wait(self.start(argv))
        return status, self.last_err.read_text()

    def close(self) -> None:
        self._ask("quit") if self.proc.poll() is None else None
        self.proc.wait(timeout=10)


def same_run(a: Path, b: Path) -> None:
    """Bit-identical final weights, identical epoch records (but their timings) and test metrics."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k

    def records(run):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert records(a) == records(b)
    ma, mb = json.loads((a / "meta.json").read_text()), json.loads((b / "meta.json").read_text())
    assert ma["metrics"]["test"] == mb["metrics"]["test"]
