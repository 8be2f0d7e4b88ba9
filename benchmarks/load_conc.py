"""Service load scenario ``conc``: ``POST /search`` (k=10) at each ``--concurrency`` level: p50/p95/p99
latency (client-side, HTTP included), QPS of successful requests, errors by status.

    python benchmarks/load_conc.py --data ../shared/data/ir-classic [--concurrency 1,8,32,64]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from harness.load import ours_search, top_ids
from harness.proc import rss_mb
from harness.report import PHASE_HEAD, fmt, phase_from_dict, phase_row
from harness.scenario import Ctx

SAMPLE_QUERIES = 20  # queries whose top-k ids are compared between ours and txtai


async def run(ctx: Ctx, levels: list[int]) -> None:
    with ctx.ours_server("ours-default") as srv:
        srv.start(ctx.args.start_timeout_s)
        ctx.results["conc_server"] = {
            "start_s": srv.start_s,
            "rss_ready_mb": rss_mb(srv.pid),
            "ready": srv.ready_body,
        }
        ctx.results["top_ids_ours"] = await top_ids(
            srv.url, ctx.coll.queries[:SAMPLE_QUERIES], False, ctx.args.request_timeout_s
        )
        phases = []
        for c in levels:
            r = await ctx.phase(srv, ours_search(ctx.coll.queries, with_took=c == 1), "ours", c)
            phases.append(asdict(r))
        ctx.results["conc"] = phases


def report(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The concurrency sweep table."""
    lines: list[str] = []
    lines += ["", "### Concurrency sweep, ours (`POST /search`)", "", PHASE_HEAD]
    lines += [phase_row(phase_from_dict(r)) for r in res["conc"]]
    srv = res.get("conc_server", {})
    lines += [
        "",
        f"Server start to ready: {fmt(srv.get('start_s'))} s; "
        f"RSS at ready {fmt(srv.get('rss_ready_mb'), 0)} MB.",
    ]
    return lines


if __name__ == "__main__":
    import service_load

    raise SystemExit(service_load.main([*sys.argv[1:], "--scenarios", "conc"]))
