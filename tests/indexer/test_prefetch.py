"""The build's reader thread: chunks read and tokenised ahead of the model, errors in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from indexer.build import prefetch


def test_items_arrive_in_order_from_another_thread() -> None:
    threads: list[str] = []

    def items() -> Iterator[int]:
        for i in range(5):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetch(items())) == [0, 1, 2, 3, 4]
    assert set(threads) == {"indexer-prefetch"}


def test_an_error_comes_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad row at line 3")

    got: list[int] = []
    with pytest.raises(ValueError, match="line 3"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_the_producer_stays_at_most_depth_ahead_and_stops_with_the_consumer() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=1)
    assert next(stream) == 0
    time.sleep(0.3)
    assert len(produced) <= 3  # one handed over, one queued, one waiting to be queued
    stream.close()  # the consumer stops early (an error in the build, say)
    time.sleep(0.3)
    assert len(produced) <= 3
