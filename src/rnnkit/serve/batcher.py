"""One worker thread for every model call, with dynamic micro-batching of concurrent predictions.

A model is not safe to call from several threads at once, and one call on 32 inputs costs far less than 32
calls on one. :class:`ModelWorker` owns a single thread; the server's request handlers (on the event loop)
:meth:`~ModelWorker.submit` jobs and await their :class:`concurrent.futures.Future`. A *mergeable* job
(``/predict`` on text inputs) that reaches the front of the queue waits up to ``max_wait_s`` for more
mergeable jobs with the same options, until they hold ``max_batch`` inputs; then one call of ``fn`` answers
them all and each job gets its own slice of the results. If the merged call fails (one request's input is
bad), each job is retried on its own, so only the bad request gets the error.

A job whose future was cancelled while it waited (its request timed out) is skipped. The queue holds at most
``max_queue`` inputs; :meth:`submit` refuses more with :class:`QueueFull` (the server answers 503).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: ``fn(inputs, options) -> one result per input``
PredictFn = Callable[[list[Any], Any], list[Any]]


class QueueFull(Exception):
    """The worker's queue already holds ``max_queue`` inputs."""


@dataclass
class _Job:
    inputs: list[Any]
    options: Hashable
    mergeable: bool
    fn: Callable[[list[Any], Any], Any]
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class WorkerStats:
    """Counts since start: model calls, jobs and inputs answered, and the largest merged call."""

    calls: int = 0
    jobs: int = 0
    inputs: int = 0
    largest_call: int = 0
    merged_calls: int = 0  # calls that answered more than one job


class ModelWorker:
    def __init__(self, max_batch: int = 32, max_wait_s: float = 0.005, max_queue: int = 4096) -> None:
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1:
            raise ValueError(
                f"bad worker limits: max_batch={max_batch}, max_wait_s={max_wait_s}, max_queue={max_queue}"
            )
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.stats = WorkerStats()
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_inputs = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="rnnkit-model-worker", daemon=True)
        self._thread.start()

    # -- the event loop's side ---------------------------------------------------------------------------
    def submit(self, fn: Callable, inputs: list[Any], options: Hashable = None, mergeable: bool = False) -> Future:
        """Queue ``fn(inputs, options)``; mergeable jobs with equal ``fn`` and ``options`` may share a call
        (``fn`` must then return one result per input, in order). Returns the job's future."""
        job = _Job(list(inputs), options, mergeable, fn)
        with self._cond:
            if self._closed:
                raise RuntimeError("the model worker is closed")
            if self._queue and self._queued_inputs + len(job.inputs) > self.max_queue:
                raise QueueFull(f"{self._queued_inputs} inputs already wait for the model")
            self._queue.append(job)
            self._queued_inputs += len(job.inputs)
            self._cond.notify()
        return job.future

    def queued(self) -> int:
        with self._cond:
            return self._queued_inputs

    def close(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the worker thread -------------------------------------------------------------------------------
    def _pop(self) -> _Job:
        job = self._queue.popleft()
        self._queued_inputs -= len(job.inputs)
        return job

    def _next_batch(self) -> list[_Job] | None:
        """The next call's jobs: the queue's first, plus the mergeable jobs that join it in time."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if not self._queue:
                return None  # closed and drained
            first = self._pop()
            batch, n = [first], len(first.inputs)
            if not first.mergeable:
                return batch
            deadline = first.arrived + self.max_wait_s
            while n < self.max_batch:
                if self._queue:
                    head = self._queue[0]
                    if not (head.mergeable and head.fn is first.fn and head.options == first.options):
                        break
                    if n + len(head.inputs) > self.max_batch:
                        break
                    batch.append(self._pop())
                    n += len(head.inputs)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._cond.wait(left)
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            # a job cancelled while queued (its request timed out) is dropped; the rest are now running
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _call(self, jobs: list[_Job]) -> Any:
        inputs = [x for job in jobs for x in job.inputs]
        self.stats.calls += 1
        self.stats.largest_call = max(self.stats.largest_call, len(inputs))
        self.stats.merged_calls += len(jobs) > 1
        return jobs[0].fn(inputs, jobs[0].options)

    def _run(self, batch: list[_Job]) -> None:
        try:
            results = self._call(batch)
            expected = sum(len(j.inputs) for j in batch)
            if len(batch) > 1 and len(results) != expected:
                raise RuntimeError(f"a merged call gave {len(results)} results for {expected} inputs")
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            if len(batch) == 1:
                self._finish(batch[0], error=e)
                return
            for job in batch:  # one bad request must not fail the others: retry each on its own
                try:
                    self._finish(job, result=self._call([job]))
                except BaseException as e2:  # noqa: BLE001
                    self._finish(job, error=e2)
            return
        start = 0
        for job in batch:
            if len(batch) == 1:
                self._finish(job, result=results)
            else:
                self._finish(job, result=results[start : start + len(job.inputs)])
                start += len(job.inputs)

    def _finish(self, job: _Job, result: Any = None, error: BaseException | None = None) -> None:
        self.stats.jobs += 1
        self.stats.inputs += len(job.inputs)
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
