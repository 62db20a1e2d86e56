"""One worker thread for every model call: fair lanes, adaptive micro-batching, deadlines.

A model is not safe to call from several threads at once, and one call on 32 inputs costs far less than 32
calls on one. :class:`ModelWorker` owns a single thread; the server's request handlers (on the event loop)
:meth:`~ModelWorker.submit` jobs and await their :class:`concurrent.futures.Future`.

- **Lanes.** Every job names a lane (the server uses ``"predict"`` and ``"generate"``); the worker takes the
  next job from the lanes in turn (round-robin), so a queue of long generations cannot starve predictions,
  nor the reverse: a job waits for at most one job of each other lane ahead of it.
- **Adaptive merging.** A *mergeable* job (``/predict`` on text inputs) taken from its lane is merged with
  the compatible jobs already queued in that lane (same ``fn`` and options, a similar ``size`` -- input
  length -- so padding costs little), up to ``max_batch`` inputs. It never waits on an empty queue: it waits,
  at most ``max_wait_s``, only while more requests are known to be on their way (:meth:`expect`: a request
  whose body is being read). If the merged call fails (one request's input is bad), each job is retried on
  its own, so only the bad request gets the error.
- **Deadlines.** A job may carry a deadline (a :func:`time.monotonic` time): a job still queued at its
  deadline is dropped (its future gets :class:`Expired`), and the call runs inside ``during(deadline)``
  (the server passes :func:`rnnkit.decoding.search.stop_at`, so a generation stops at its next decoding step
  once every job of the call is past its deadline, raising one of ``cancelled``). A job whose future was
  cancelled while it waited is skipped.

The queue holds at most ``max_queue`` inputs; :meth:`submit` refuses more with :class:`QueueFull` (the server
answers 503). An exception that is not an :class:`Exception` (a tokenizer's Rust panic is a
``BaseException``) reaches the future as :class:`ModelCrash`, so the server answers it like any other error.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: ``fn(inputs, options) -> one result per input``
PredictFn = Callable[[list[Any], Any], list[Any]]

#: merged jobs' sizes stay within this factor of each other (after adding ``SIZE_SLACK``)
SIZE_RATIO = 2.0
SIZE_SLACK = 16


class QueueFull(Exception):
    """The worker's queue already holds ``max_queue`` inputs."""


class Expired(Exception):
    """The job's deadline passed while it was still queued; it was never computed."""


class ModelCrash(RuntimeError):
    """The model call raised a ``BaseException`` that is not an ``Exception`` (e.g. a Rust panic)."""


@dataclass
class _Job:
    inputs: list[Any]
    options: Hashable
    mergeable: bool
    fn: Callable[[list[Any], Any], Any]
    lane: str = "default"
    size: int = 0
    deadline: float | None = None
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
    expired: int = 0  # jobs dropped from the queue at their deadline
    cancelled_calls: int = 0  # calls stopped at their deadline (search cancelled)


class Expected:
    """A request on its way to :meth:`ModelWorker.submit` (its body is being read); :meth:`done` when it has
    submitted or given up. Idempotent."""

    def __init__(self, worker: ModelWorker) -> None:
        self._worker, self._open = worker, True

    def done(self) -> None:
        with self._worker._cond:
            if self._open:
                self._open = False
                self._worker._incoming -= 1
                self._worker._cond.notify()


class ModelWorker:
    def __init__(
        self,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 4096,
        during: Callable[[float | None], contextlib.AbstractContextManager[Any]] | None = None,
        cancelled: tuple[type[Exception], ...] = (),
    ) -> None:
        if max_batch < 1 or max_wait_s < 0 or max_queue < 1:
            raise ValueError(
                f"bad worker limits: max_batch={max_batch}, max_wait_s={max_wait_s}, max_queue={max_queue}"
            )
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self.during = during or (lambda deadline: contextlib.nullcontext())
        self.cancelled = cancelled  # what ``during`` raises when it stops a call at its deadline
        self.stats = WorkerStats()
        self._lanes: dict[str, collections.deque[_Job]] = {}
        self._turn = 0  # index of the lane to look at first
        self._queued_inputs = 0
        self._incoming = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="rnnkit-model-worker", daemon=True)
        self._thread.start()

    # -- the event loop's side ---------------------------------------------------------------------------
    def submit(
        self,
        fn: Callable,
        inputs: list[Any],
        options: Hashable = None,
        mergeable: bool = False,
        *,
        lane: str = "default",
        size: int = 0,
        deadline: float | None = None,
    ) -> Future:
        """Queue ``fn(inputs, options)`` in ``lane``; mergeable jobs with equal ``fn`` and ``options`` and a
        similar ``size`` may share a call (``fn`` must then return one result per input, in order). Returns
        the job's future."""
        job = _Job(list(inputs), options, mergeable, fn, lane, size, deadline)
        with self._cond:
            if self._closed:
                raise RuntimeError("the model worker is closed")
            if self._queued_inputs and self._queued_inputs + len(job.inputs) > self.max_queue:
                raise QueueFull(f"{self._queued_inputs} inputs already wait for the model")
            self._lanes.setdefault(lane, collections.deque()).append(job)
            self._queued_inputs += len(job.inputs)
            self._cond.notify()
        return job.future

    def expect(self) -> Expected:
        """Say that a request is on its way (merging may wait for it); call ``done()`` on the result."""
        with self._cond:
            self._incoming += 1
        return Expected(self)

    def queued(self) -> int:
        with self._cond:
            return self._queued_inputs

    def close(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the worker thread -------------------------------------------------------------------------------
    def _remove(self, lane: collections.deque[_Job], job: _Job) -> None:
        lane.remove(job)
        self._queued_inputs -= len(job.inputs)

    def _next_lane(self) -> collections.deque[_Job] | None:
        names = list(self._lanes)
        for k in range(len(names)):
            i = (self._turn + k) % len(names)
            if self._lanes[names[i]]:
                self._turn = i + 1
                return self._lanes[names[i]]
        return None

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for lane in self._lanes.values():
            for job in [j for j in lane if j.deadline is not None and j.deadline <= now]:
                self._remove(lane, job)
                self.stats.expired += 1
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(Expired("the deadline passed while the request was queued"))

    @staticmethod
    def _fits(first: _Job, job: _Job) -> bool:
        if not (job.mergeable and job.fn is first.fn and job.options == first.options):
            return False
        small, large = sorted((first.size + SIZE_SLACK, job.size + SIZE_SLACK))
        return large <= SIZE_RATIO * small

    def _next_batch(self) -> list[_Job] | None:
        """The next call's jobs: the next lane's first job, plus the compatible jobs of that lane."""
        with self._cond:
            while True:
                self._drop_expired()
                lane = self._next_lane()
                if lane is not None:
                    break
                if self._closed:
                    return None  # closed and drained
                self._cond.wait()
            first = lane[0]
            self._remove(lane, first)
            batch, n = [first], len(first.inputs)
            if not first.mergeable:
                return batch
            wait_until = time.monotonic() + self.max_wait_s
            while n < self.max_batch:
                for job in list(lane):
                    if self._fits(first, job) and n + len(job.inputs) <= self.max_batch:
                        self._remove(lane, job)
                        batch.append(job)
                        n += len(job.inputs)
                left = wait_until - time.monotonic()
                # wait only while more requests are on their way, and never past max_wait_s
                if n >= self.max_batch or self._incoming <= 0 or left <= 0 or self._closed:
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
        deadlines = [j.deadline for j in jobs]
        deadline = None if None in deadlines else max(deadlines)  # stop only when no job still waits
        try:
            with self.during(deadline):
                return jobs[0].fn(inputs, jobs[0].options)
        except Exception:
            raise
        except BaseException as e:  # noqa: BLE001 - a Rust panic (pyo3 PanicException) is a BaseException
            raise ModelCrash(f"{type(e).__name__}: {_one_line(e)}") from e

    def _run(self, batch: list[_Job]) -> None:
        try:
            results = self._call(batch)
            expected = sum(len(j.inputs) for j in batch)
            if len(batch) > 1 and len(results) != expected:
                raise RuntimeError(f"a merged call gave {len(results)} results for {expected} inputs")
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            stopped = isinstance(e, self.cancelled)
            self.stats.cancelled_calls += stopped
            if len(batch) == 1 or stopped:  # every job of a stopped call is past its deadline
                for job in batch:
                    self._finish(job, error=e)
                return
            for job in batch:  # one bad request must not fail the others: retry each on its own
                try:
                    self._finish(job, result=self._call([job]))
                except Exception as e2:  # noqa: BLE001
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


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]
