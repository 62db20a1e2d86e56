"""Fixtures of the reliability tests: a fork server that runs ``rnnkit`` commands as real child processes (see
``forkserver.py``), a tiny data set, and one uninterrupted reference run that every interrupted run must match
bit for bit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from reliability_helpers import ForkServer, train_argv, write_reviews


@pytest.fixture(scope="session")
def forkserver(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("forkserver-logs"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def reviews(tmp_path_factory) -> Path:
    return write_reviews(tmp_path_factory.mktemp("data") / "reviews.csv")


@pytest.fixture(scope="session")
def reference(forkserver, reviews, tmp_path_factory):
    """One uninterrupted run: its folder, its wall time and the time its first checkpoint took (start-up);
    the kill delays are scaled by these, so they land all over training on a slow machine and a fast one."""
    runs = tmp_path_factory.mktemp("reference")
    t0 = time.monotonic()
    pid = forkserver.start(train_argv(reviews, runs, "straight"))
    startup = None
    while (status := forkserver.wait(pid, 0.005)) is None:
        if startup is None and (runs / "straight" / "checkpoints" / "latest").exists():
            startup = time.monotonic() - t0
    assert status == 0, forkserver.last_err.read_text()
    seconds = time.monotonic() - t0
    return {"run": runs / "straight", "seconds": seconds, "startup": startup or seconds}
