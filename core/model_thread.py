"""One OS thread for every model call of a long-running process (the service).

torch's CPU kernels run on an OpenMP thread team that belongs to the thread calling them. When
a model is loaded (or warmed up) on one thread and called on another, or two batchers call
models from their own threads, the process holds several teams: more OpenMP threads than CPUs,
so libgomp stops spinning between parallel regions and every small kernel (a layer norm over a
few tokens) pays a futex wake-up. Measured on machine A (2 vCPUs), all-MiniLM-L6-v2 on one
short text: 4-6 ms when load and calls share a thread, 9-12 ms when they do not.

So the service loads its models and makes every model call through :func:`call`: one thread,
one team, whatever thread asks. A call from the model thread itself runs at once.

FAISS counts too. When torch is imported first, FAISS's parallel regions bind to torch's libgomp
(``faiss.omp_get_max_threads()`` follows ``torch.set_num_threads``), and one search with several
queries on an asyncio worker thread gives that thread a team as well. Every other thread that
does native work in the service (searches, index opening, the writer) therefore calls
:func:`one_native_thread` first, which sets its own OpenMP thread count (a per-thread setting) to
one, in every OpenMP runtime loaded. A search then runs on the thread that asked, and concurrent
requests spread over the CPUs; a one-query flat, HNSW or IVF search is serial in FAISS anyway.
Measured on machine A, all-MiniLM-L6-v2 on one short text on the model thread: p50 12 ms alone,
19-32 ms once one search of 50 queries had run on another thread.
"""

from __future__ import annotations

import ctypes
import os
import sys
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


def _openmp_runtimes() -> list[ctypes.CDLL]:
    """Every OpenMP runtime mapped into this process: torch's libgomp, and any other copy (the one
    in faiss-cpu's wheel is used when faiss was imported before torch)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "/lib" in line}
    except OSError:  # not Linux: nothing to set
        return []
    names = ("libgomp", "libomp", "libiomp")
    runtimes = []
    for path in sorted(paths):
        name = os.path.basename(path)
        if not (name.startswith(names) and ".so" in name):
            continue
        try:  # RTLD_NOLOAD: the copy already loaded, never a new one
            runtimes.append(ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY))
        except OSError:
            continue
    return runtimes


def one_native_thread() -> None:
    """Limit the calling thread's OpenMP parallel regions to itself (no team of its own).

    For every thread of a long-running process other than the model thread; a no-op there and on
    a second call. Runtimes loaded after the first call on a thread are not covered: the service
    has imported torch and faiss before it serves."""
    if getattr(_local, "is_model_thread", False) or getattr(_local, "one_thread", False):
        return
    torch = sys.modules.get("torch")
    if torch is not None:
        # torch sets each thread's OpenMP count to its own setting on the thread's first parallel
        # op (a lazy, once-per-thread init): run that init now, so it cannot undo the limit later.
        torch.get_num_threads()
    for runtime in _openmp_runtimes():
        setter = getattr(runtime, "omp_set_num_threads", None)
        if setter is not None:
            setter(1)
    _local.one_thread = True


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


def worker_pool() -> ThreadPoolExecutor:
    """A thread pool whose threads each run :func:`one_native_thread` first: the service's event
    loop takes it as its default executor, so every ``asyncio.to_thread`` (searches, reads,
    reloads) leaves the model thread's team alone. Sized as asyncio's own default."""
    return ThreadPoolExecutor(
        max_workers=min(32, (os.cpu_count() or 1) + 4),
        thread_name_prefix="worker",
        initializer=one_native_thread,
    )
