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


# -- lanes, adaptive merging, deadlines, crashes ----------------------------------------------------------------
class Gate:
    """A model call that blocks until released, recording the order of calls."""

    def __init__(self, order: list[str]) -> None:
        self.order, self.events = order, {}

    def blocking(self, name: str):
        event = self.events[name] = threading.Event()

        def fn(inputs, options):
            self.order.append(name)
            assert event.wait(10), f"{name} was never released"
            return [name for _ in inputs]

        return fn

    def quick(self, name: str):
        def fn(inputs, options):
            self.order.append(name)
            return [name for _ in inputs]

        return fn


def test_a_prediction_behind_queued_generations_is_answered_before_them():
    order: list[str] = []
    gate = Gate(order)
    worker = ModelWorker(max_batch=32, max_wait_s=0.0)
    try:
        gen1 = worker.submit(gate.blocking("gen1"), ["p"], lane="generate")
        while order != ["gen1"]:
            time.sleep(0.005)  # the worker is busy with gen1
        gen2 = worker.submit(gate.blocking("gen2"), ["p"], lane="generate")
        gen3 = worker.submit(gate.blocking("gen3"), ["p"], lane="generate")
        pred = worker.submit(gate.quick("predict"), ["x"], mergeable=True, lane="predict")
        gate.events["gen1"].set()
        assert pred.result(10) == ["predict"]
        assert not gen2.done() and not gen3.done()  # answered while the generations still wait or run
        gate.events["gen2"].set()
        gate.events["gen3"].set()
        assert [gen1.result(10), gen2.result(10), gen3.result(10)] == [["gen1"], ["gen2"], ["gen3"]]
    finally:
        for e in gate.events.values():
            e.set()
        worker.close()
    assert order == ["gen1", "predict", "gen2", "gen3"]


def test_merging_never_waits_on_an_empty_queue():
    fn = Recorder()
    worker = ModelWorker(max_batch=32, max_wait_s=60.0)  # a wait would take a minute
    try:
        assert worker.submit(fn, ["a"], None, mergeable=True).result(10) == ["None:a"]
    finally:
        worker.close()


def test_merging_waits_for_requests_known_to_be_on_their_way():
    fn = Recorder()
    worker = ModelWorker(max_batch=32, max_wait_s=30.0)
    try:
        expected = worker.expect()  # a request whose body is being read
        first = worker.submit(fn, ["a"], "o", mergeable=True)
        time.sleep(0.1)
        second = worker.submit(fn, ["b"], "o", mergeable=True)
        expected.done()
        expected.done()  # idempotent
        assert first.result(10) == ["o:a"] and second.result(10) == ["o:b"]
    finally:
        worker.close()
    assert fn.calls == [["a", "b"]]


def test_only_inputs_of_similar_length_are_merged():
    order: list[str] = []
    gate = Gate(order)
    fn = Recorder()
    worker = ModelWorker(max_batch=32, max_wait_s=0.0)
    try:
        worker.submit(gate.blocking("busy"), ["x"])
        while order != ["busy"]:
            time.sleep(0.005)
        sizes = {"s1": 10, "L1": 500, "s2": 12, "L2": 480, "s3": 3}
        futures = [worker.submit(fn, [name], "o", mergeable=True, size=n) for name, n in sizes.items()]
        gate.events["busy"].set()
        assert [f.result(10) for f in futures] == [[f"o:{name}"] for name in sizes]
    finally:
        for e in gate.events.values():
            e.set()
        worker.close()
    assert fn.calls == [["s1", "s2", "s3"], ["L1", "L2"]]


def test_a_job_past_its_deadline_in_the_queue_is_dropped():
    from rnnkit.serve.batcher import Expired

    order: list[str] = []
    gate = Gate(order)
    fn = Recorder()
    worker = ModelWorker(max_batch=32, max_wait_s=0.0)
    try:
        worker.submit(gate.blocking("busy"), ["x"])
        late = worker.submit(fn, ["late"], deadline=time.monotonic() + 0.05)
        time.sleep(0.1)
        gate.events["busy"].set()
        with pytest.raises(Expired):
            late.result(10)
        assert worker.submit(fn, ["next"]).result(10) == ["None:next"]
    finally:
        for e in gate.events.values():
            e.set()
        worker.close()
    assert ["late"] not in fn.calls and worker.stats.expired == 1


def test_a_search_is_stopped_at_its_deadline_and_the_worker_goes_on():
    import torch

    from rnnkit.decoding.search import SearchCancelled, greedy, stop_at

    steps = []

    def step(tokens, state):
        steps.append(1)
        time.sleep(0.001)
        return torch.zeros(tokens.shape[0], 5), state

    def endless(inputs, options):  # eos (4) never wins: a million steps
        return greedy(step, None, bos=0, eos=4, max_len=1_000_000, batch_size=len(inputs)).sequences

    worker = ModelWorker(max_batch=32, max_wait_s=0.0, during=stop_at, cancelled=(SearchCancelled,))
    try:
        stopped = worker.submit(endless, ["a", "b"], deadline=time.monotonic() + 0.2)
        with pytest.raises(SearchCancelled):
            stopped.result(30)
        n = len(steps)
        assert worker.submit(lambda inputs, o: inputs, ["next"]).result(10) == ["next"]
    finally:
        worker.close()
    assert 0 < n < 1_000_000 and len(steps) == n and worker.stats.cancelled_calls == 1


def test_a_base_exception_in_the_model_call_reaches_the_request_as_an_error():
    from rnnkit.serve.batcher import ModelCrash

    class Panic(BaseException):
        pass

    def panics(inputs, options):
        raise Panic("rust panicked")

    worker = ModelWorker(max_batch=32, max_wait_s=0.0)
    try:
        with pytest.raises(ModelCrash, match="Panic: rust panicked"):
            worker.submit(panics, ["a"]).result(10)
        assert worker.submit(lambda inputs, o: inputs, ["b"]).result(10) == ["b"]  # the worker is alive
    finally:
        worker.close()
