"""Service load scenario ``soak``: ``--soak-n`` requests at concurrency ``--soak-concurrency``
(64) against ours on a copy of the index, one ``PUT /documents`` upsert every
``--soak-upsert-every`` (50) requests, the rest searches. Errors must be 0; the server's VmRSS is
read at start and end.

    python benchmarks/load_soak.py --data ../shared/data/ir-classic [--soak-n 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
import sys
from dataclasses import asdict
from typing import Any

import httpx
from harness.load import K, KindedError, RequestFn, ours_search, run_phase
from harness.proc import hwm_mb, rss_mb
from harness.report import errors_cell, fmt, lat, phase_from_dict
from harness.scenario import Ctx


def soak_text(texts: list[str], n: int) -> str:
    """A corpus text made unique, so that searching for it must find ``soak-<n>`` first."""
    return f"soak document {n}: {texts[n % len(texts)]}"


def soak_mix(queries: list[str], texts: list[str], upsert_every: int) -> RequestFn:
    """Every ``upsert_every``-th request is ``PUT /documents`` with a new id ``soak-<n>``."""
    upserts = itertools.count()

    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        if upsert_every > 0 and i % upsert_every == upsert_every - 1:
            n = next(upserts)
            doc = {"id": f"soak-{n}", "text": soak_text(texts, n), "metadata": {"source": "soak"}}
            try:
                r = await client.put("/documents", json={"documents": [doc]})
            except httpx.HTTPError as exc:
                raise KindedError("upsert", type(exc).__name__) from exc
            return "upsert", r.status_code, None
        r = await client.post("/search", json={"query": queries[i % len(queries)], "k": K})
        return "search", r.status_code, None

    return fn


async def run(ctx: Ctx) -> None:
    a = ctx.args
    soak_index = ctx.work / "soak-index"
    if soak_index.exists():
        shutil.rmtree(soak_index)
    shutil.copytree(ctx.index_dir, soak_index)  # upserts must not change the index the others use
    texts = [d["text"] for d in ctx.coll.docs]
    try:
        with ctx.ours_server("ours-soak", soak_index) as srv:
            srv.start(a.start_timeout_s)
            rss_ready = rss_mb(srv.pid)
            fn = soak_mix(ctx.coll.queries, texts, a.soak_upsert_every)
            # Warm-up: searches only, so that the upserts' ids all fall in the measured phase.
            await run_phase(
                srv.url,
                ours_search(ctx.coll.queries),
                label="soak warm-up",
                concurrency=a.soak_concurrency,
                requests=0,
                duration_s=60,
                warmup=a.warmup,
                timeout_s=a.request_timeout_s,
            )
            rss_warm = rss_mb(srv.pid)
            print(
                f"  soak: {a.soak_n} requests at concurrency {a.soak_concurrency} ...",
                file=sys.stderr,
                flush=True,
            )
            r = await run_phase(
                srv.url,
                fn,
                label="soak",
                concurrency=a.soak_concurrency,
                requests=a.soak_n,
                duration_s=a.soak_duration_s,
                warmup=0,
                timeout_s=a.request_timeout_s,
                server_pid=srv.pid,
            )
            print(f"    {r.ok}/{r.completed} ok, {r.qps:.1f} QPS, errors {r.errors or 0}", file=sys.stderr)
            ready_after, found = "?", "?"
            n_upserts = sum(
                1 for i in range(r.completed) if i % a.soak_upsert_every == a.soak_upsert_every - 1
            )
            async with httpx.AsyncClient(base_url=srv.url, timeout=a.request_timeout_s) as client:
                with contextlib.suppress(httpx.HTTPError):
                    ready_after = str((await client.get("/ready")).status_code)
                if n_upserts and not any(k.startswith("upsert:") for k in r.errors):
                    last = n_upserts - 1
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                        resp = await client.post("/search", json={"query": soak_text(texts, last), "k": K})
                        ids = [h["id"] for h in resp.json()["hits"]]
                        found = "yes" if f"soak-{last}" in ids else f"no (top ids {ids[:3]})"
            ctx.results["soak"] = {
                "phase": asdict(r),
                "rss_ready_mb": rss_ready,
                "rss_after_warmup_mb": rss_warm,
                "rss_end_mb": rss_mb(srv.pid),
                "hwm_end_mb": hwm_mb(srv.pid),
                "ready_after": ready_after,
                "last_upsert_found": found,
            }
    finally:
        if not a.keep_soak_index:
            shutil.rmtree(soak_index, ignore_errors=True)


def report(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The soak table."""
    lines: list[str] = []
    s = res["soak"]
    r = phase_from_dict(s["phase"])
    sl, ul = r.latency.get("search"), r.latency.get("upsert")
    searches = sl.n if sl else 0
    upserts = ul.n if ul else 0
    lines += [
        "",
        f"### Soak: {r.requested:,} requests at concurrency {r.concurrency}, 1 upsert per "
        f"{args.soak_upsert_every}",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| completed (ok searches + ok upserts) | {r.completed:,} ({searches:,} + {upserts:,})"
        + (" — stopped by the time bound" if r.stopped_by_time else "")
        + " |",
        f"| **errors** | **{sum(r.errors.values())}** ({errors_cell(r)}) |",
        f"| duration, QPS | {fmt(r.elapsed_s)} s, {fmt(r.qps)} req/s |",
        f"| search p50 / p99 ms | {fmt(lat(sl, 'p50_ms'))} / {fmt(lat(sl, 'p99_ms'))} |",
        f"| upsert p50 / p99 ms | {fmt(lat(ul, 'p50_ms'))} / {fmt(lat(ul, 'p99_ms'))} |",
        f"| server RSS at ready / after warm-up / at end | {fmt(s['rss_ready_mb'], 0)} / "
        f"{fmt(s['rss_after_warmup_mb'], 0)} / **{fmt(s['rss_end_mb'], 0)} MB** |",
        f"| server peak RSS (VmHWM) | {fmt(s['hwm_end_mb'], 0)} MB |",
        f"| `/ready` after the soak | {s.get('ready_after')} |",
        f"| last upserted document found by searching its text | {s.get('last_upsert_found')} |",
    ]
    return lines


if __name__ == "__main__":
    import service_load

    raise SystemExit(service_load.main([*sys.argv[1:], "--scenarios", "soak"]))
