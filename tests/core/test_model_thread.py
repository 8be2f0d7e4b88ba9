"""core.model_thread: one OpenMP team in a long-running process (the model thread's)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from core import model_thread

ROOT = Path(__file__).resolve().parents[2]
multi_cpu = pytest.mark.skipif(torch.get_num_threads() < 2, reason="needs two intra-op threads")


def _on_thread(fn):  # type: ignore[no-untyped-def]
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@multi_cpu
def test_one_native_thread_limits_only_the_calling_thread() -> None:
    torch.set_num_threads(torch.get_num_threads())  # set explicitly, as the service does

    def limited() -> tuple[int, int]:
        model_thread.one_native_thread()
        model_thread.one_native_thread()  # a second call is a no-op
        torch.randn(64, 64) @ torch.randn(64, 64)  # torch's per-thread lazy init must not undo it
        return faiss.omp_get_max_threads(), torch.get_num_threads()

    assert _on_thread(limited) == (1, 1)
    assert _on_thread(faiss.omp_get_max_threads) > 1  # another thread keeps its own setting
    assert model_thread.call(faiss.omp_get_max_threads) > 1  # and the model thread its team


@multi_cpu
def test_the_model_thread_is_never_limited() -> None:
    def on_model_thread() -> int:
        model_thread.one_native_thread()
        return faiss.omp_get_max_threads()

    assert model_thread.call(on_model_thread) > 1


@multi_cpu
def test_worker_pool_threads_start_limited() -> None:
    torch.set_num_threads(torch.get_num_threads())
    pool = model_thread.worker_pool()
    try:
        assert pool.submit(faiss.omp_get_max_threads).result() == 1
        assert pool.submit(torch.get_num_threads).result() == 1
    finally:
        pool.shutdown()


def test_a_search_on_a_limited_thread_starts_no_openmp_worker() -> None:
    """The failure this guards against: FAISS (bound to torch's libgomp) giving a second thread
    its own team, which throttles the model thread's spinning (module docstring)."""
    code = """
import os, threading, numpy as np, torch, faiss
from core import model_thread
ix = faiss.IndexFlatIP(64); ix.add(np.random.rand(5000, 64).astype('float32'))
def search(limit):
    if limit:
        model_thread.one_native_thread()
    ix.search(np.random.rand(64, 64).astype('float32'), 5)
    return len(os.listdir('/proc/self/task'))
def on_thread(limit):
    out, go = [], threading.Event()
    def run():
        go.wait()  # counted first: the search's workers cannot be in the count before it
        out.append(search(limit))
    t = threading.Thread(target=run); t.start()
    before = len(os.listdir('/proc/self/task'))
    go.set(); t.join()
    return out[0], before
print(*on_thread(True), *on_thread(False))
"""
    if not os.path.isdir("/proc/self/task") or os.cpu_count() == 1:
        pytest.skip("needs Linux's /proc and two CPUs")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    limited_during, limited_base, free_during, free_base = map(int, run.stdout.split())
    assert limited_during == limited_base  # the limited search ran on its thread alone
    assert free_during > free_base  # the same search unlimited starts a worker: the test can fail


def test_importing_the_encoder_runs_no_parallel_region() -> None:
    """Importing core.encoder (and its oneDNN probe) leaves no OpenMP worker on the importer."""
    code = (
        "import os, torch, faiss; n = len(os.listdir('/proc/self/task')); import core.encoder; "
        "print(n, len(os.listdir('/proc/self/task')))"
    )
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs Linux's /proc")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after = map(int, run.stdout.split())
    assert after == before


def test_vectors_are_unchanged_by_the_limit() -> None:
    x = np.random.default_rng(0).random((200, 32), dtype=np.float32)
    ix = faiss.IndexFlatIP(32)
    ix.add(x)
    q = x[:40]

    def limited() -> np.ndarray:
        model_thread.one_native_thread()
        return ix.search(q, 5)[1]

    np.testing.assert_array_equal(_on_thread(limited), ix.search(q, 5)[1])
