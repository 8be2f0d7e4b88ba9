"""One OS thread for every model call of a long-running process (the service).

torch's CPU kernels run on an OpenMP thread team that belongs to the thread calling them. When
a model is loaded (or warmed up) on one thread and called on another, or two batchers call
models from their own threads, the process holds several teams: more OpenMP threads than CPUs,
so libgomp stops spinning between parallel regions and every small kernel (a layer norm over a
few tokens) pays a futex wake-up. Measured on machine A (2 vCPUs), all-MiniLM-L6-v2 on one
short text: 4-6 ms when load and calls share a thread, 9-12 ms when they do not.

So the service loads its models and makes every model call through :func:`call`: one thread,
one team, whatever thread asks. A call from the model thread itself runs at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_local = threading.local()


def _mark() -> None:
    _local.is_model_thread = True


def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the model thread; its result, or its exception re-raised."""
    global _executor
    if getattr(_local, "is_model_thread", False):
        return fn(*args, **kwargs)
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model", initializer=_mark)
        executor = _executor
    return executor.submit(fn, *args, **kwargs).result()
