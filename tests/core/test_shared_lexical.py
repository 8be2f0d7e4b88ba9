"""SharedLexical: one BM25 build per generation, in the background, the newest built serving."""

from __future__ import annotations

import threading
import time

import numpy as np

from core.index.lexical import LexicalIndex, SharedLexical


def _index(tag: str) -> LexicalIndex:
    return LexicalIndex.from_texts([1, 2], [f"{tag} alpha", f"{tag} beta"])


def _until(cond, bound_s: float = 10.0) -> bool:
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_the_first_build_is_synchronous_then_later_generations_build_behind() -> None:
    shared = SharedLexical(wait_s=0.0)
    first = _index("g1")
    assert shared.for_snapshot(1, lambda: first) == (first, True)
    gate, second = threading.Event(), _index("g2")

    def slow() -> LexicalIndex:
        assert gate.wait(10)
        return second

    index, own = shared.for_snapshot(2, slow)
    assert index is first and not own  # generation 1's BM25 serves while 2's is built
    assert shared.for_snapshot(2, slow) == (first, False)  # no second build started
    gate.set()
    assert _until(lambda: shared.for_snapshot(2, slow) == (second, True))
    assert shared.builds == 2
    assert shared.for_snapshot(1, lambda: first)[0] is second  # an older snapshot: the newest one


def test_builds_coalesce_to_the_newest_generation() -> None:
    shared = SharedLexical()
    shared.for_snapshot(1, lambda: _index("g1"))
    gate, built = threading.Event(), []

    def make(generation: int):
        def build() -> LexicalIndex:
            if generation == 2:
                assert gate.wait(10)
            built.append(generation)
            return _index(f"g{generation}")

        return build

    for generation in (2, 3, 4, 5):
        shared.for_snapshot(generation, make(generation))
    gate.set()
    assert _until(lambda: shared.for_snapshot(5, make(5))[1])
    assert built == [2, 5]  # 3 and 4 were overtaken while 2 was building


def test_a_search_waits_up_to_wait_s_for_its_generation() -> None:
    shared = SharedLexical(wait_s=5.0)
    shared.for_snapshot(1, lambda: _index("g1"))
    fresh = _index("g2")
    assert shared.for_snapshot(2, lambda: fresh) == (fresh, True)  # a quick build: waited for
    stuck = threading.Event()
    shared_short = SharedLexical(wait_s=0.05)
    old = _index("g1")
    shared_short.for_snapshot(1, lambda: old)
    started = time.monotonic()
    assert shared_short.for_snapshot(2, lambda: (stuck.wait(10), _index("g2"))[1]) == (old, False)
    assert time.monotonic() - started < 5  # bounded by wait_s, not by the build
    stuck.set()


def test_a_failed_background_build_is_retried_by_the_next_search() -> None:
    shared = SharedLexical()
    shared.for_snapshot(1, lambda: _index("g1"))
    calls = []

    def broken() -> LexicalIndex:
        calls.append(1)
        raise RuntimeError("store closed")

    shared.for_snapshot(2, broken)
    assert _until(lambda: calls == [1] and not shared._running)
    fixed = _index("g2")
    assert _until(lambda: shared.for_snapshot(2, lambda: fixed)[1])
    assert np.array_equal(shared.for_snapshot(2, lambda: fixed)[0].iids, fixed.iids)
