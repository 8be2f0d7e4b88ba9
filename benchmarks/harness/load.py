"""The load generator: a bounded phase of concurrent requests against a loopback server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from harness.proc import proc_cpu_s, rss_mb
from harness.server_process import LOOPBACK
from harness.stats import LatencyStats, PhaseResult, Sample, is_ok, percentile

K = 10  # hits per search


RequestFn = Callable[[httpx.AsyncClient, int], Awaitable[tuple[str, int, float | None]]]


class KindedError(Exception):
    """A transport error of a request whose kind is not "search"."""

    def __init__(self, kind: str, status: str) -> None:
        super().__init__(f"{kind}: {status}")
        self.kind = kind
        self.status = status


async def _timed(fn: RequestFn, client: httpx.AsyncClient, i: int) -> Sample:
    t0 = time.perf_counter()
    kind = "search"
    try:
        kind, code, took = await fn(client, i)
        status = str(code)
    except httpx.HTTPError as exc:
        status, took = type(exc).__name__, None
    except KindedError as exc:
        kind, status, took = exc.kind, exc.status, None
    return Sample(kind, time.perf_counter() - t0, status, took)


async def run_phase(
    base_url: str,
    fn: RequestFn,
    *,
    label: str,
    concurrency: int,
    requests: int,
    duration_s: float,
    warmup: int,
    timeout_s: float,
    server_pid: int | None = None,
    start_index: int = 0,
) -> PhaseResult:
    """``requests`` calls of ``fn`` by ``concurrency`` workers, stopping early at ``duration_s``;
    preceded (when ``warmup`` > 0) by a warm-up of max(warmup, concurrency) calls whose results
    are dropped. ``fn`` gets the call's index, counting from ``start_index`` (warm-up included)."""
    host = urlsplit(base_url).hostname
    if host != LOOPBACK:
        raise SystemExit(f"refusing to load {base_url}: only {LOOPBACK} is allowed")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(timeout_s)
    counter = itertools.count(start_index)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def drive(n: int, bound_s: float) -> tuple[list[Sample], float, bool]:
            samples: list[Sample] = []
            issued = 0
            deadline = time.monotonic() + bound_s
            hit_deadline = False

            async def worker() -> None:
                nonlocal issued, hit_deadline
                while issued < n:
                    if time.monotonic() >= deadline:
                        hit_deadline = True
                        return
                    issued += 1
                    samples.append(await _timed(fn, client, next(counter)))

            t0 = time.perf_counter()
            tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
            try:
                # Safety net over the per-request timeouts: nothing outlives bound + one timeout.
                await asyncio.wait_for(asyncio.gather(*tasks), bound_s + timeout_s + 5)
            except TimeoutError:
                hit_deadline = True
            return samples, time.perf_counter() - t0, hit_deadline

        if warmup > 0:  # 0: no warm-up at all (the soak warms up with searches beforehand)
            await drive(max(warmup, concurrency), max(30.0, duration_s))
        cpu0 = proc_cpu_s(server_pid)
        client0 = time.process_time()
        samples, elapsed, stopped = await drive(requests, duration_s)
        client_cpu = time.process_time() - client0
        cpu1 = proc_cpu_s(server_pid)
    ok = [s for s in samples if is_ok(s.status)]
    errors = Counter(f"{s.kind}:{s.status}" for s in samples if not is_ok(s.status))
    kinds = sorted({s.kind for s in samples})
    took = [s.took_ms for s in ok if s.took_ms is not None]
    return PhaseResult(
        label=label,
        concurrency=concurrency,
        requested=requests,
        completed=len(samples),
        ok=len(ok),
        elapsed_s=elapsed,
        qps=len(ok) / elapsed if elapsed > 0 else 0.0,
        stopped_by_time=stopped,
        errors=dict(errors),
        latency={k: LatencyStats.of([s.seconds for s in ok if s.kind == k]) for k in kinds},
        server_took_ms_p50=percentile(took, 50) if took else None,
        server_cpu_ms_per_req=(
            (cpu1 - cpu0) * 1000 / len(samples) if cpu0 is not None and cpu1 is not None and samples else None
        ),
        client_cpu_share=client_cpu / elapsed if elapsed > 0 else None,
        server_rss_mb=rss_mb(server_pid),
    )


def ours_search(queries: list[str], with_took: bool = False) -> RequestFn:
    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        r = await client.post("/search", json={"query": queries[i % len(queries)], "k": K})
        took = None
        if with_took and r.status_code == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                took = float(r.json()["took_ms"])
        return "search", r.status_code, took

    return fn


async def top_ids(url: str, queries: list[str], txtai: bool, timeout_s: float) -> list[list[str]]:
    """Top-k ids of the first queries, one at a time (outside the measured phases): the two
    servers must return the same documents for the comparison to be fair."""
    out: list[list[str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
        for q in queries:
            try:
                if txtai:
                    r = await client.get("/search", params={"query": q, "limit": K})
                    out.append([str(h["id"]) for h in r.json()])
                else:
                    r = await client.post("/search", json={"query": q, "k": K})
                    out.append([str(h["id"]) for h in r.json()["hits"]])
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                out.append([])
    return out
