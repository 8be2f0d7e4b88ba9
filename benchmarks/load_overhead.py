"""Service load scenario ``overhead``: at concurrency 1, the service's p50/p99 against the
in-process time of the same queries through ``Encoder.encode_detailed([q])`` +
``IndexFolder.search(emb, k)`` (same model folder, same index), measured in this process while
no server runs. The service side is the ``conc`` scenario's concurrency-1 phase when that ran,
else a phase of its own.

    python benchmarks/load_overhead.py --data ../shared/data/ir-classic
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.load import K, ours_search
from harness.report import fmt, ratio
from harness.scenario import Ctx
from harness.stats import LatencyStats


def in_process(
    model_dir: Path, index_dir: Path, queries: list[str], n: int, warmup: int, duration_s: float
) -> dict[str, Any]:
    """``encode_detailed([q])`` + ``index.search(emb, k)`` per query, as the service does."""
    from core.encoder import Encoder
    from core.index.folder import IndexFolder

    encoder = Encoder.load(model_dir, "auto")
    index = IndexFolder.open(index_dir)
    try:
        for i in range(warmup):
            index.search(encoder.encode_detailed([queries[i % len(queries)]]).embeddings, K)
        total: list[float] = []
        encode: list[float] = []
        deadline = time.monotonic() + duration_s
        for i in range(n):
            if time.monotonic() >= deadline:
                break
            q = queries[i % len(queries)]
            t0 = time.perf_counter()
            emb = encoder.encode_detailed([q]).embeddings
            t1 = time.perf_counter()
            hits = index.search(emb, K)
            t2 = time.perf_counter()
            if len(hits[0]) != min(K, index.count):
                raise RuntimeError(f"in-process search returned {len(hits[0])} hits")
            total.append(t2 - t0)
            encode.append(t1 - t0)
        return {
            "total": asdict(LatencyStats.of(total)),
            "encode": asdict(LatencyStats.of(encode)),
            "device": str(encoder.device),
            "precision": encoder.precision,
            "stopped_by_time": len(total) < n,
        }
    finally:
        index.close()


async def run(ctx: Ctx) -> None:
    a = ctx.args
    print("  in-process encode + search ...", file=sys.stderr, flush=True)
    ip = await asyncio.to_thread(
        in_process, ctx.model_dir, ctx.index_dir, ctx.coll.queries, a.requests, a.warmup, a.duration_s
    )
    service: dict[str, Any] | None = next(
        (r for r in ctx.results.get("conc", []) if r["concurrency"] == 1), None
    )
    if service is None:
        with ctx.ours_server("ours-overhead") as srv:
            srv.start(a.start_timeout_s)
            service = asdict(await ctx.phase(srv, ours_search(ctx.coll.queries, with_took=True), "ours", 1))
    ctx.results["overhead"] = {"in_process": ip, "service": service}


def report(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The service-over-in-process table."""
    lines: list[str] = []
    o = res["overhead"]
    ip, sv = o["in_process"]["total"], o["service"]["latency"]["search"]
    enc = o["in_process"]["encode"]
    lines += [
        "",
        "### Service overhead at concurrency 1",
        "",
        "| measure | p50 ms | p99 ms |",
        "| --- | --- | --- |",
        f"| in-process `encode_detailed([q])` + `IndexFolder.search` ({ip['n']} queries) | "
        f"{fmt(ip['p50_ms'], 2)} | {fmt(ip['p99_ms'], 2)} |",
        f"| of which encode | {fmt(enc['p50_ms'], 2)} | {fmt(enc['p99_ms'], 2)} |",
        f"| service `POST /search`, client-side ({sv['n']} requests) | {fmt(sv['p50_ms'], 2)} | "
        f"{fmt(sv['p99_ms'], 2)} |",
        f"| service's own `took_ms` (p50) | {fmt(o['service'].get('server_took_ms_p50'), 2)} | |",
        f"| ratio service / in-process | {ratio(sv['p50_ms'], ip['p50_ms'])} | "
        f"{ratio(sv['p99_ms'], ip['p99_ms'])} |",
        f"| **service p99 / in-process p50** (target ≤ 1.5×) | **{ratio(sv['p99_ms'], ip['p50_ms'])}** | |",
    ]
    return lines


if __name__ == "__main__":
    import service_load

    raise SystemExit(service_load.main([*sys.argv[1:], "--scenarios", "overhead"]))
