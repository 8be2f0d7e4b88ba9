"""Dynamic micro-batching: concurrent requests share one model call (as TEI and infinity do).

Each request submits a list of inputs. A dedicated worker thread takes the oldest request, then
takes every request queued meanwhile (they pile up while the previous call runs) until the batch
is full (by inputs or by estimated tokens). While other requests are in flight it also waits up
to ``max_wait_s`` for them; a lone request does not wait. It runs ONE model call over the batch
and hands each request back its own slice.

Admission counts work, not requests: past ``max_queue`` waiting requests, or past
``max_queue_inputs`` waiting inputs (texts, pairs) summed over them, :meth:`MicroBatcher.submit`
raises :class:`OverloadedError` (429 with ``Retry-After``). A request that is still waiting at its
deadline (``timeout_s``) gets :class:`DeadlineError` (503 with ``Retry-After``); one whose caller
went away (the task is cancelled: client disconnect) is dropped. Either way, work that has not
started is never run: the worker skips it.

Why a thread and not a task: the model call holds the CPU for milliseconds; on the event loop it
would stall every other request, including the ones we want to gather.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

from core import model_thread
from core.errors import DeadlineError, NotReadyError, OverloadedError

log = logging.getLogger(__name__)

X = TypeVar("X")  # one input (a text, a pair)
R = TypeVar("R")  # the model's answer for a whole batch


@dataclass
class BatchStats:
    """What the metrics layer is told about each model call."""

    size: int  # inputs in the call
    requests: int
    queue_wait_s: list[float] = field(default_factory=list)  # per request: submit -> call start
    run_s: float = 0.0


QUEUED, TAKEN, DROPPED = "queued", "taken", "dropped"


@dataclass
class _Job(Generic[X]):
    inputs: Sequence[X]
    tokens: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[object]
    submitted: float
    deadline: float
    state: str = QUEUED  # changed under the batcher's count lock only
    abandoned: bool = False  # its caller stopped waiting (deadline, cancel): never run it


class MicroBatcher(Generic[X, R]):
    """``run(inputs) -> R`` over a whole batch; ``take(R, start, stop) -> R`` cuts one request's part."""

    def __init__(
        self,
        name: str,
        run: Callable[[list[X]], R],
        take: Callable[[R, int, int], R],
        *,
        tokens: Callable[[X], int],
        max_batch: int = 64,
        max_tokens: int = 16_384,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        max_queue_inputs: int | None = None,
        timeout_s: float = 3600.0,
        enabled: bool = True,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._take = take
        self._tokens = tokens
        # Disabled: one request per model call, still serialised on the worker (the baseline).
        self.max_batch = max_batch if enabled else 1
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s if enabled else 0.0
        self.max_queue = max_queue
        self.max_queue_inputs = max_queue_inputs
        self.timeout_s = timeout_s
        self.enabled = enabled
        self._on_batch = on_batch
        self._queue: queue.Queue[_Job[X] | None] = queue.Queue()
        self._waiting = 0  # jobs submitted and not yet taken by the worker (nor dropped)
        self._waiting_inputs = 0  # their inputs
        self.dropped = 0  # jobs dropped unrun: past their deadline, or their caller gone
        self._inflight = 0  # jobs submitted and not yet answered
        self._count_lock = threading.Lock()
        self._carry: _Job[X] | None = None  # taken but did not fit the previous batch
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def waiting_inputs(self) -> int:
        return self._waiting_inputs

    async def submit(self, inputs: Sequence[X]) -> R:
        if self._closed:
            raise NotReadyError(f"the {self.name} worker is shutting down")
        n = len(inputs)
        tokens = sum(self._tokens(x) for x in inputs)  # before the counts: a failure leaks none
        with self._count_lock:
            over_inputs = (
                self.max_queue_inputs is not None
                and self._waiting > 0  # a lone request is always admitted, whatever its size
                and self._waiting_inputs + n > self.max_queue_inputs
            )
            if self._waiting >= self.max_queue or over_inputs:
                raise OverloadedError(
                    f"{self._waiting} requests ({self._waiting_inputs} inputs) are waiting for the "
                    f"{self.name} model; try again shortly",
                    retry_after_s=1.0,
                )
            self._waiting += 1
            self._waiting_inputs += n
            self._inflight += 1
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        job = _Job(inputs, tokens, loop, loop.create_future(), now, now + self.timeout_s)
        self._queue.put(job)
        try:
            # The deadline bounds the WAIT for the model, not the model call: a job the worker
            # has taken runs to its end and is answered (a large valid request must be able to
            # succeed however long its own forward pass takes).
            done, _ = await asyncio.wait({job.future}, timeout=self.timeout_s)
            if not done and self._drop(job):
                raise DeadlineError(
                    f"waited {self.timeout_s:g} s for the {self.name} model (the queue deadline); try again",
                    retry_after_s=max(1.0, self.timeout_s / 2),
                )
            result = cast(R, await job.future)
        except asyncio.CancelledError:  # the caller went away: its work is not run
            self._drop(job)
            job.abandoned = True  # gathered or carried but not yet run: the worker skips it too
            raise
        finally:
            with self._count_lock:
                self._inflight -= 1
        return result

    def _drop(self, job: _Job[X]) -> bool:
        """Take a job that is still queued out of the admission counts (the worker then skips
        it); returns whether it was. A job already taken is left to run."""
        with self._count_lock:
            if job.state != QUEUED:
                return False
            job.state = DROPPED
            job.abandoned = True
            self._waiting -= 1
            self._waiting_inputs -= len(job.inputs)
            self.dropped += 1
            return True

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------ worker thread
    def _next(self, timeout: float | None) -> _Job[X] | None:
        """The next job to run (a dropped or expired one is skipped), or None."""
        if self._carry is not None:
            carried, self._carry = self._carry, None
            return carried
        end = None if timeout is None else time.perf_counter() + timeout
        while True:
            left = None if end is None else end - time.perf_counter()
            try:
                job = self._queue.get(timeout=left) if left is None or left > 0 else self._queue.get_nowait()
            except queue.Empty:
                return None
            if job is None:
                return None
            with self._count_lock:
                if job.state == DROPPED:
                    continue
                job.state = TAKEN
                self._waiting -= 1
                self._waiting_inputs -= len(job.inputs)
                expired = time.perf_counter() > job.deadline
                if expired:
                    self.dropped += 1
            if expired:  # its caller's wait is about to answer 503: answer that, do not run it
                job.loop.call_soon_threadsafe(
                    _set_exception, job.future, DeadlineError(f"past its deadline for the {self.name} model")
                )
                continue
            return job

    def _gather(self, first: _Job[X]) -> list[_Job[X]]:
        jobs = [first]
        size, tokens = len(first.inputs), first.tokens
        deadline = time.perf_counter() + self.max_wait_s
        while size < self.max_batch:
            # Wait for stragglers only when other requests are in flight (their callers will be
            # back soon); a lone request runs at once instead of paying max_wait in latency.
            wait = deadline - time.perf_counter() if self._inflight > len(jobs) else 0.0
            job = self._next(wait)
            if job is None:
                if self._closed:
                    self._queue.put(None)  # keep the stop signal for the outer loop
                break
            if size + len(job.inputs) > self.max_batch or tokens + job.tokens > self.max_tokens:
                self._carry = job  # first in line for the next batch: order is kept
                break
            jobs.append(job)
            size += len(job.inputs)
            tokens += job.tokens
        return jobs

    def _work(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                self._fail_pending()
                return
            # A caller may have gone while its job was gathered or carried: drop it here, unrun.
            jobs = [job for job in self._gather(first) if not job.abandoned]
            if not jobs:
                continue
            started = time.perf_counter()
            inputs: list[X] = [x for job in jobs for x in job.inputs]
            try:
                result = model_thread.call(self._run, inputs)  # every model on one thread
            except BaseException as exc:
                for job in jobs:
                    job.loop.call_soon_threadsafe(_set_exception, job.future, exc)
                continue
            offset = 0
            for job in jobs:
                part = self._take(result, offset, offset + len(job.inputs))
                offset += len(job.inputs)
                job.loop.call_soon_threadsafe(_set_result, job.future, part)
            if self._on_batch is not None:
                stats = BatchStats(
                    size=len(inputs),
                    requests=len(jobs),
                    queue_wait_s=[started - job.submitted for job in jobs],
                    run_s=time.perf_counter() - started,
                )
                try:
                    self._on_batch(stats)
                except Exception:  # metrics must never take the worker down
                    log.exception("batch metrics hook failed")

    def _fail_pending(self) -> None:
        while True:
            job = self._next(0)
            if job is None:
                return
            job.loop.call_soon_threadsafe(
                _set_exception, job.future, NotReadyError(f"the {self.name} worker stopped")
            )


def _set_result(future: asyncio.Future[object], value: object) -> None:
    if not future.done():  # the caller may have gone away (client disconnect cancels it)
        future.set_result(value)


def _set_exception(future: asyncio.Future[object], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
