"""The model worker: concurrent predictions merge into one call, each job gets its own answers, a bad job
fails alone, a cancelled job is skipped, and the queue is bounded."""

from __future__ import annotations

import threading
import time

import pytest

from rnnkit.serve.batcher import ModelWorker, QueueFull


class Recorder:
    def __init__(self, delay: float = 0.0, bad: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.delay, self.bad = delay, bad
        self.threads: set[str] = set()

    def __call__(self, inputs, options):
        self.calls.append(list(inputs))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.bad is not None and self.bad in inputs:
            raise ValueError(f"bad input {self.bad}")
        return [f"{options}:{x}" for x in inputs]


def test_queued_jobs_merge_into_one_call_and_are_split_back():
    fn = Recorder()
    worker = ModelWorker(max_batch=100, max_wait_s=0.5)
    try:
        futures = [worker.submit(fn, [f"{i}a", f"{i}b"], "o", mergeable=True) for i in range(5)]
        results = [f.result(5) for f in futures]
    finally:
        worker.close()
    assert results == [[f"o:{i}a", f"o:{i}b"] for i in range(5)]
    assert len(fn.calls) == 1 and len(fn.calls[0]) == 10
    assert fn.threads == {"rnnkit-model-worker"}
    assert worker.stats.merged_calls == 1 and worker.stats.largest_call == 10 and worker.stats.jobs == 5


def test_max_batch_options_and_unmergeable_jobs_split_calls():
    fn = Recorder()
    worker = ModelWorker(max_batch=4, max_wait_s=0.3)
    try:
        futures = [worker.submit(fn, ["x", "y"], "o", mergeable=True) for _ in range(3)]  # 6 inputs > 4
        futures.append(worker.submit(fn, ["z"], "other", mergeable=True))  # different options
        futures.append(worker.submit(fn, ["w"], "o"))  # not mergeable
        results = [f.result(5) for f in futures]
    finally:
        worker.close()
    assert results[3] == ["other:z"] and results[4] == ["o:w"]
    assert sorted(len(c) for c in fn.calls) == [1, 1, 2, 4]


def test_without_concurrency_nothing_waits_longer_than_max_wait():
    fn = Recorder()
    worker = ModelWorker(max_batch=32, max_wait_s=0.05)
    try:
        t0 = time.monotonic()
        assert worker.submit(fn, ["a"], None, mergeable=True).result(5) == ["None:a"]
        assert time.monotonic() - t0 < 2.0  # bounded by max_wait, not by max_batch
    finally:
        worker.close()


def test_a_failing_job_fails_alone():
    fn = Recorder(bad="bad")
    worker = ModelWorker(max_batch=100, max_wait_s=0.3)
    try:
        good1 = worker.submit(fn, ["a"], "o", mergeable=True)
        bad = worker.submit(fn, ["bad"], "o", mergeable=True)
        good2 = worker.submit(fn, ["b", "c"], "o", mergeable=True)
        assert good1.result(5) == ["o:a"] and good2.result(5) == ["o:b", "o:c"]
        with pytest.raises(ValueError, match="bad input bad"):
            bad.result(5)
    finally:
        worker.close()
    assert fn.calls[0] == ["a", "bad", "b", "c"]  # merged first, then each retried alone
    assert fn.calls[1:] == [["a"], ["bad"], ["b", "c"]]


def test_a_cancelled_job_is_skipped_and_the_queue_is_bounded():
    fn = Recorder(delay=0.3)
    worker = ModelWorker(max_batch=1, max_wait_s=0.0, max_queue=3)
    try:
        first = worker.submit(fn, ["first"], None)
        time.sleep(0.1)  # the worker is busy with it
        waiting = worker.submit(fn, ["cancelled"], None)
        assert waiting.cancel()
        kept = worker.submit(fn, ["a", "b"], None)
        with pytest.raises(QueueFull):
            worker.submit(fn, ["c", "d"], None)  # 1 + 2 queued + 2 > 3
        assert first.result(5) == ["None:first"] and kept.result(5) == ["None:a", "None:b"]
    finally:
        worker.close()
    assert ["cancelled"] not in fn.calls


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="max_batch"):
        ModelWorker(max_batch=0)
