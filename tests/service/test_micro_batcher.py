"""The micro-batcher on its own: gathering, isolation of results, backpressure, failures."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from core.errors import OverloadedError
from service.micro_batcher import BatchStats, MicroBatcher


def _take(result: list[str], start: int, stop: int) -> list[str]:
    return result[start:stop]


def make(run=None, **kw) -> tuple[MicroBatcher[str, list[str]], list[BatchStats]]:
    stats: list[BatchStats] = []

    def echo(xs: list[str]) -> list[str]:
        time.sleep(0.01)  # a model call takes time: requests pile up meanwhile
        return [x.upper() for x in xs]

    batcher = MicroBatcher("test", run or echo, _take, tokens=len, on_batch=stats.append, **kw)
    return batcher, stats


def test_concurrent_requests_share_calls_and_each_gets_its_own_result() -> None:
    batcher, stats = make(max_batch=64, max_wait_s=0.005)

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(batcher.submit([f"q{i}", f"r{i}"]) for i in range(100)))

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results == [[f"Q{i}", f"R{i}"] for i in range(100)]
    assert sum(s.requests for s in stats) == 100
    assert max(s.size for s in stats) <= 64
    assert len(stats) < 20, "100 concurrent requests should share a few model calls"
    assert all(len(s.queue_wait_s) == s.requests for s in stats)


def test_disabled_runs_one_request_per_call() -> None:
    batcher, stats = make(enabled=False)

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(batcher.submit([f"q{i}"]) for i in range(10)))

    try:
        assert asyncio.run(main()) == [[f"Q{i}"] for i in range(10)]
    finally:
        batcher.close()
    assert [s.requests for s in stats] == [1] * 10


def test_token_budget_splits_batches_and_keeps_order() -> None:
    batcher, stats = make(max_batch=100, max_tokens=10, max_wait_s=0.02)

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(batcher.submit(["abcd"]) for _ in range(6)))

    try:
        assert asyncio.run(main()) == [["ABCD"]] * 6
    finally:
        batcher.close()
    assert all(s.size * 4 <= 10 for s in stats)  # 4 tokens each, at most 10 per call


def test_full_queue_answers_overloaded() -> None:
    gate = threading.Event()

    def blocked(xs: list[str]) -> list[str]:
        gate.wait(5)
        return xs

    batcher, _ = make(run=blocked, max_queue=3, max_batch=1)

    async def main() -> list[object]:
        tasks = [asyncio.ensure_future(batcher.submit(["x"])) for _ in range(3)]
        await asyncio.sleep(0.05)  # the worker holds one; the others wait in the queue
        extra = [asyncio.ensure_future(batcher.submit(["y"])) for _ in range(3)]
        await asyncio.sleep(0.05)
        gate.set()
        done = await asyncio.gather(*extra, return_exceptions=True)
        return [*done, *(await asyncio.gather(*tasks))]

    try:
        out = asyncio.run(main())
    finally:
        batcher.close()
    overloaded = [o for o in out if isinstance(o, OverloadedError)]
    assert len(overloaded) >= 1
    assert overloaded[0].retry_after_s >= 1
    assert out[-3:] == [["x"], ["x"], ["x"]]


def test_a_failing_model_call_fails_its_requests_and_the_worker_survives() -> None:
    calls = {"n": 0}

    def flaky(xs: list[str]) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return xs

    batcher, _ = make(run=flaky, max_wait_s=0)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["a"])
        assert await batcher.submit(["b"]) == ["b"]

    try:
        asyncio.run(main())
    finally:
        batcher.close()


def gated() -> tuple[threading.Event, list[str], Callable[[list[str]], list[str]]]:
    """A model call held on a gate (up to 5 s), recording every input it was asked to run."""
    gate = threading.Event()
    seen: list[str] = []

    def blocked(xs: list[str]) -> list[str]:
        gate.wait(5)
        seen.extend(xs)
        return xs

    return gate, seen, blocked


def test_admission_counts_inputs_not_requests() -> None:
    """Two requests of 3 texts fill a 6-input queue: the next one is refused, though only two
    requests wait; a lone request bigger than the budget is still admitted (it could never run)."""
    gate = threading.Event()
    seen: list[list[str]] = []

    def blocked(xs: list[str]) -> list[str]:
        gate.wait(5)
        seen.append(list(xs))
        return xs

    batcher, _ = make(run=blocked, max_queue=100, max_queue_inputs=6, max_batch=1)

    async def main() -> list[object]:
        first = asyncio.ensure_future(batcher.submit(["big"] * 9))  # alone: admitted, taken at once
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(batcher.submit(["a", "b", "c"])) for _ in range(2)]
        await asyncio.sleep(0.02)
        assert batcher.waiting == 2 and batcher.waiting_inputs == 6
        with pytest.raises(OverloadedError, match="6 inputs"):
            await batcher.submit(["d"])
        gate.set()
        return await asyncio.gather(first, *waiting)

    try:
        out = asyncio.run(main())
    finally:
        batcher.close()
    assert out == [["big"] * 9, ["a", "b", "c"], ["a", "b", "c"]]
    assert ["d"] not in seen and batcher.waiting_inputs == 0


def test_the_deadline_bounds_the_wait_not_the_model_call() -> None:
    """A call slower than the deadline still answers: only waiting in the queue is bounded."""

    def slow(xs: list[str]) -> list[str]:
        time.sleep(0.4)
        return xs

    batcher, _ = make(run=slow, timeout_s=0.1)
    try:
        assert asyncio.run(batcher.submit(["big"])) == ["big"]
    finally:
        batcher.close()


def test_a_request_past_its_deadline_is_503_and_never_runs() -> None:
    from core.errors import DeadlineError

    gate, seen, blocked = gated()
    batcher, _ = make(run=blocked, max_batch=1, timeout_s=0.2)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.05)  # the worker is stuck on "first"
        started = time.perf_counter()
        with pytest.raises(DeadlineError) as info:
            await batcher.submit(["late"])
        assert 0.15 < time.perf_counter() - started < 2
        assert info.value.retry_after_s >= 1
        assert batcher.waiting == 0 and batcher.waiting_inputs == 0  # out of admission at once
        gate.set()
        assert await first == ["first"]  # taken before its deadline: it runs and is answered
        assert await batcher.submit(["after"]) == ["after"]

    try:
        asyncio.run(main())
    finally:
        batcher.close()
    assert seen == ["first", "after"]  # "late" was dropped unrun
    assert batcher.dropped == 1


def test_a_cancelled_request_is_dropped_before_it_runs() -> None:
    gate, seen, blocked = gated()
    batcher, _ = make(run=blocked, max_batch=1)

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(batcher.submit(["gone"]))
        await asyncio.sleep(0.02)
        gone.cancel()  # what a client disconnect does to its handler
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert batcher.waiting == 0
        gate.set()
        assert await first == ["first"]
        assert await batcher.submit(["next"]) == ["next"]

    try:
        asyncio.run(main())
    finally:
        batcher.close()
    assert seen == ["first", "next"] and batcher.dropped == 1
