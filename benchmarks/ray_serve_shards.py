"""Serving on Ray Serve with 1, 2 and 4 shards against the single-process service, in one run.

    python benchmarks/ray_serve_shards.py --data ../shared/data/ir-classic [--docs 100000]

The index holds ``--docs`` MEDLINE + ADI abstracts (repeated with fresh ids) with random unit
vectors (search cost depends on the count, not on the values; embedding 100k abstracts would
take most of an hour here), made for the packaged MiniLM so that real queries are encoded. It is
written once unsharded (the single-process service and the 1-shard Ray service serve it) and
once per shard count, each document in the shard its id routes to (core.index.sharding).

Every server is a `semsearch serve` subprocess (`--engine ray` starts its own local Ray).
Each is loaded with MEDLINE and ADI's queries, dense searches of k 10, at concurrency 1 and 32
(``--requests`` each, bounded by ``--phase-s``), then hybrid at concurrency 1. Per server: QPS,
p50/p99, and the RSS of every process it runs (the ingress, the encoder, each shard replica),
read from /proc. The fan-out's overhead is the ratio to the single process in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from harness.ir_corpus import load_collection
from harness.load import RequestFn, run_phase
from harness.machine import cpu_model
from harness.proc import rss_mb
from harness.random_index import model_manifest, random_unit_vectors, write_index
from harness.server_process import Server, free_port

from core.defaults import default_model_dir
from core.encoder import Encoder
from core.index.manifest import Manifest
from core.index.sharding import ShardedManifest, group_by_shard, shard_dir_name, shard_of


def build(work: Path, data: Path, n: int, model: Path, shard_counts: list[int]) -> dict[int, Path]:
    """{shards: folder}; 1 is the unsharded folder. Reused when already written."""
    encoder = Encoder.load(model, "cpu")
    docs = load_collection(data, n).docs
    vectors = random_unit_vectors(len(docs), encoder.dim)
    out = {1: work / f"flat-{n}"}
    if not (out[1] / "manifest.json").exists():
        write_index(out[1], model_manifest(encoder, model), docs, vectors)
    for shards in shard_counts:
        if shards == 1:
            continue
        folder = out[shards] = work / f"sharded-{shards}-{n}"
        if (folder / "manifest.json").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for i, rows in enumerate(
            group_by_shard([d["id"] for d in docs], partial(shard_of, shards=shards), shards)
        ):
            write_index(
                folder / shard_dir_name(i),
                model_manifest(encoder, model),
                [docs[r] for r in rows],
                vectors[rows],
            )
        top = ShardedManifest(
            shards=shards,
            model_fingerprint=encoder.fingerprint or "",
            model_dir=str(model),
            dim=encoder.dim,
            max_seq_length=encoder.max_seq_length,
            precision=Manifest.read(folder / shard_dir_name(0)).precision,
        )
        top.write(folder)
    return out


def searches(queries: list[str], hybrid: bool) -> RequestFn:
    async def fn(client: Any, i: int) -> tuple[str, int, float | None]:
        r = await client.post("/search", json={"query": queries[i % len(queries)], "k": 10, "hybrid": hybrid})
        return "search", r.status_code, None

    return fn


def process_rss(root_pid: int | None) -> dict[str, float]:
    """RSS (MB) of the server and of every Ray process serving for it, by its process title."""
    out: dict[str, float] = {}
    if root_pid is not None:
        out["server"] = rss_mb(root_pid) or 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ServeReplica:semsearch:" in title:
            name = title.split("ServeReplica:semsearch:")[1].split()[0]
            out[f"{name} ({entry.name})"] = rss_mb(int(entry.name)) or 0.0
    return out


def measure(
    name: str, argv: list[str], env: dict[str, str], queries: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    server = Server(name, [*argv, "--port", str(port)], env, port, "/ready", args.work_dir / f"{name}.log")
    result: dict[str, Any] = {}
    with server:
        server.start(timeout_s=300)
        result["start_s"] = round(server.start_s, 1)
        for hybrid, c in ((False, 1), (False, 32), (True, 1)):
            r = asyncio.run(
                run_phase(
                    server.url,
                    searches(queries, hybrid),
                    label=name,
                    concurrency=c,
                    requests=args.requests,
                    duration_s=args.phase_s,
                    warmup=10,
                    timeout_s=60,
                )
            )
            s = r.latency["search"]
            key = f"{'hybrid' if hybrid else 'dense'} c={c}"
            result[key] = {"qps": round(r.qps, 1), "p50_ms": round(s.p50_ms, 1), "p99_ms": round(s.p99_ms, 1)}
            result[key]["ok"], result[key]["errors"] = r.ok, r.errors
        result["rss_mb"] = {k: round(v, 1) for k, v in process_rss(server.pid).items()}
    print(json.dumps({name: result}), flush=True)
    time.sleep(3)  # the previous server's Ray is gone before the next one starts
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--shards", default="1,2,4")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/ray-serve-shards"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--phase-s", type=float, default=60.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    model = default_model_dir()
    counts = [int(x) for x in args.shards.split(",")]
    folders = build(args.work_dir, args.data, args.docs, model, counts)
    queries = load_collection(args.data, 0).queries
    env = {**os.environ, "SEMSEARCH_RELOAD_INTERVAL_S": "0", "SEMSEARCH_DEVICE": "cpu"}
    serve = [sys.executable, "-m", "semsearch.cli", "serve", "--host", "127.0.0.1", "--model", str(model)]
    result: dict[str, Any] = {"machine": cpu_model(), "date": time.strftime("%Y-%m-%d"), "docs": args.docs}
    result["one process"] = measure("one-process", [*serve, "--index", str(folders[1])], env, queries, args)
    for shards in counts:
        name = f"ray {shards} shard{'s' if shards > 1 else ''}"
        argv = [*serve, "--index", str(folders[shards]), "--engine", "ray"]
        result[name] = measure(name.replace(" ", "-"), argv, env, queries, args)
    base = result["one process"]
    for name, r in result.items():
        if isinstance(r, dict) and "dense c=1" in r and name != "one process":
            r["vs one process"] = {
                key: {
                    "qps_ratio": round(r[key]["qps"] / base[key]["qps"], 2),
                    "p50_added_ms": round(r[key]["p50_ms"] - base[key]["p50_ms"], 1),
                }
                for key in ("dense c=1", "dense c=32", "hybrid c=1")
            }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
