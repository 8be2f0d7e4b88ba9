"""Service load scenario ``batching``: concurrency ``--batching-concurrency`` (32) with
``SEMSEARCH_MICRO_BATCHING=true`` then ``=false``, one server start each.

    python benchmarks/load_batching.py --data ../shared/data/ir-classic
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from harness.load import ours_search
from harness.report import errors_cell, fmt, lat, phase_from_dict, ratio
from harness.scenario import Ctx


async def run(ctx: Ctx) -> None:
    c = ctx.args.batching_concurrency
    out: dict[str, Any] = {}
    for name, value in (("on", "true"), ("off", "false")):
        with ctx.ours_server(f"ours-batching-{name}", SEMSEARCH_MICRO_BATCHING=value) as srv:
            srv.start(ctx.args.start_timeout_s)
            out[name] = asdict(
                await ctx.phase(srv, ours_search(ctx.coll.queries), f"micro-batching {value}", c)
            )
            out[f"{name}_ready"] = srv.ready_body
    ctx.results["batching"] = out


def report(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The micro-batching on/off table."""
    lines: list[str] = []
    b = res["batching"]
    on, off = phase_from_dict(b["on"]), phase_from_dict(b["off"])
    lines += [
        "",
        f"### Micro-batching at concurrency {on.concurrency}",
        "",
        "| `SEMSEARCH_MICRO_BATCHING` | `/ready` says | ok / completed | QPS | p50 ms | p99 ms "
        "| errors | server CPU ms/req |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, key, r in (("true", "on", on), ("false", "off", off)):
        s = r.latency.get("search")
        ready = b.get(f"{key}_ready")
        says = ready.get("micro_batching", "–") if isinstance(ready, dict) else "–"
        lines.append(
            f"| {name} | {says} | {r.ok:,}/{r.completed:,} | **{fmt(r.qps)}** | {fmt(lat(s, 'p50_ms'))} | "
            f"{fmt(lat(s, 'p99_ms'))} | {errors_cell(r)} | {fmt(r.server_cpu_ms_per_req)} |"
        )
    lines += ["", f"QPS on / off: **{ratio(on.qps, off.qps)}**."]
    return lines


if __name__ == "__main__":
    import service_load

    raise SystemExit(service_load.main([*sys.argv[1:], "--scenarios", "batching"]))
