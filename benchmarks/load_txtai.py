"""Service load scenario ``txtai``: txtai's API (``uvicorn txtai.api:app`` from its own venv, see
``benchmarks/setup_txtai.sh``) serving the same corpus with the same model, ``GET
/search?query=...&limit=10`` at the same concurrency levels, in the same run as ``conc`` (the
ratios compare the two). Its index is built beforehand in a separate process
(``benchmarks/txtai_build_index.py``), as ours is.

    python benchmarks/load_txtai.py --data ../shared/data/ir-classic --txtai-venv /tmp/txtai-venv
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import asdict
from pathlib import Path
from string import Template
from typing import Any

import httpx
from harness.load import K, RequestFn, top_ids
from harness.proc import rss_mb
from harness.report import PHASE_HEAD, fmt, lat, phase_from_dict, phase_row, ratio
from harness.scenario import Ctx
from harness.server_process import LOOPBACK, REPO, Server, build_stamp, ensure_built, free_port
from load_conc import SAMPLE_QUERIES


def txtai_search(queries: list[str]) -> RequestFn:
    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        r = await client.get("/search", params={"query": queries[i % len(queries)], "limit": K})
        return "search", r.status_code, None

    return fn


def agreement(a: list[list[str]], b: list[list[str]]) -> float | None:
    """Mean share of top-k ids two servers have in common, over the queries both answered."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x and y]
    if not pairs:
        return None
    return sum(len(set(x) & set(y)) / max(len(x), len(y)) for x, y in pairs) / len(pairs)


async def run(ctx: Ctx, levels: list[int]) -> None:
    a = ctx.args
    venv = Path(a.txtai_venv)
    py, uvicorn = venv / "bin" / "python", venv / "bin" / "uvicorn"
    if not uvicorn.exists():
        raise RuntimeError(f"no txtai venv at {venv}: run `bash benchmarks/setup_txtai.sh {venv}` first")
    index_dir = ctx.work / "txtai-index"
    template = Template((REPO / "benchmarks" / "txtai_app.yml").read_text())
    config = ctx.work / "txtai_app.yml"
    config.write_text(template.substitute(TXTAI_INDEX_DIR=str(index_dir), MODEL_DIR=str(ctx.model_dir)))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("VIRTUAL_ENV", None)
    settings = "\n".join(x for x in config.read_text().splitlines() if x.strip() and not x.startswith("#"))
    stamp = build_stamp(
        hashlib.sha256(ctx.corpus.read_bytes()).hexdigest() + hashlib.sha256(settings.encode()).hexdigest(),
        ctx.model_dir,
        "txtai",
    )
    build_s = ensure_built(
        index_dir,
        stamp,
        [
            str(py),
            str(REPO / "benchmarks" / "txtai_build_index.py"),
            "--config",
            str(config),
            "--corpus",
            str(ctx.corpus),
        ],
        env,
        a.build_timeout_s,
        ctx.work / "logs" / "txtai-build.log",
    )
    port = free_port()
    argv = [
        str(uvicorn),
        "txtai.api:app",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--log-level",
        a.server_log_level,
        "--no-access-log",
    ]
    ready = f"/search?query=ready&limit={K}"
    with Server(
        "txtai", argv, {**env, "CONFIG": str(config)}, port, ready, ctx.work / "logs" / "txtai.log"
    ) as srv:
        srv.start(a.start_timeout_s)
        rss_ready = rss_mb(srv.pid)
        if not isinstance(srv.ready_body, list) or len(srv.ready_body) != min(K, len(ctx.coll.docs)):
            raise RuntimeError(f"txtai's /search answered {str(srv.ready_body)[:300]}")
        ids = await top_ids(srv.url, ctx.coll.queries[:SAMPLE_QUERIES], True, a.request_timeout_s)
        phases = []
        for c in levels:
            phases.append(asdict(await ctx.phase(srv, txtai_search(ctx.coll.queries), "txtai", c)))
        ctx.results["txtai"] = {
            "phases": phases,
            "server": {"start_s": srv.start_s, "rss_ready_mb": rss_ready},
            "build_s": build_s,
            "config": config.read_text(),
            "top_ids": ids,
        }


def report(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """txtai's table, and ours / txtai in the same run."""
    lines: list[str] = []
    t = res["txtai"]
    lines += [
        "",
        "### txtai's API under the same load (`GET /search?query=…&limit=10`)",
        "",
        PHASE_HEAD,
    ]
    lines += [phase_row(phase_from_dict(r)) for r in t["phases"]]
    lines += [
        "",
        f"txtai server start to first answer: {fmt(t['server'].get('start_s'))} s; RSS after load "
        f"{fmt(t['phases'][-1].get('server_rss_mb') if t['phases'] else None, 0)} MB"
        + (f"; index built in {fmt(t['build_s'])} s" if t.get("build_s") else "")
        + ".",
    ]
    if "top_ids_ours" in res:
        agree = agreement(res["top_ids_ours"], t.get("top_ids", []))
        lines += [
            "",
            f"Same documents returned: top-{K} ids in common between ours and txtai, mean over the first "
            f"{SAMPLE_QUERIES} queries: **{fmt(agree and agree * 100)}%**.",
        ]
    if "conc" in res:
        ours = {r["concurrency"]: phase_from_dict(r) for r in res["conc"]}
        lines += [
            "",
            "| concurrency | ours QPS | txtai QPS | QPS ours / txtai | ours p50 ms | txtai p50 ms "
            "| ours p99 ms | txtai p99 ms |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for raw in t["phases"]:
            th = phase_from_dict(raw)
            o_ = ours.get(th.concurrency)
            if o_ is None:
                continue
            os_, ts = o_.latency.get("search"), th.latency.get("search")
            lines.append(
                f"| {th.concurrency} | {fmt(o_.qps)} | {fmt(th.qps)} | **{ratio(o_.qps, th.qps)}** | "
                f"{fmt(lat(os_, 'p50_ms'))} | {fmt(lat(ts, 'p50_ms'))} | {fmt(lat(os_, 'p99_ms'))} | "
                f"{fmt(lat(ts, 'p99_ms'))} |"
            )
    return lines


if __name__ == "__main__":
    import service_load

    raise SystemExit(service_load.main([*sys.argv[1:], "--scenarios", "txtai"]))
