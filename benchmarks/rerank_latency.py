"""Rerank latency: what the cross-encoder adds to a search, one query at a time, on CPU.

    .venv/bin/python benchmarks/rerank_latency.py --data ../shared/data --reranker CE_DIR \\
        [--model DIR] [--index DIR] [--work-dir /tmp/rerank-bench] [--rerank-ks 20,50,100] \\
        [--k 10] [--queries 0] [--repeats 3] [--warmup 5] [--device cpu] [--json results.json]

Corpus: MEDLINE + ADI (``ir-classic``, SMART format, read as ``benchmarks/service_load.py`` reads
it: 1,033 + 82 documents, their 30 + 35 queries). Without ``--index`` the corpus is written as
JSONL to the work dir and indexed with ``semsearch index build --index-type flat`` (rebuilt only
when the corpus or the model changed); ``--index`` takes a folder built with the same ``--model``.

What runs is the service's own code in this process, without HTTP: a ``SearchEngine`` (micro-
batcher, encoder, FAISS, SQLite) with the cross-encoder loaded as its ``Reranker``, called as
``POST /search`` calls it (``service/routes/search.py``): ``engine.search(q, k)`` alone, or
``engine.search(q, max(k, rerank_k))`` then ``reranker.rerank_hits(q, hits, k)``. Leaving HTTP
out isolates the rerank cost (the service's HTTP overhead is in ``service_load.py``'s tables).

Per query and round, the variants (search alone, then rerank at each rerank_k) run back to back,
in an order rotated from query to query, at concurrency 1. "added" is, per query and round,
search + rerank minus search alone of the same query in the same round; its p50 / p99 are over
those differences (not p99 of one minus p99 of the other). "rerank step" is ``rerank_hits``
alone. Percentiles interpolate between ranks (numpy's default); with 65 queries x 3 rounds the
p99 sits between the two or three slowest of 195. ``--warmup`` queries run every variant first,
excluded from the figures. Prints a Markdown table ready for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness.ir_corpus import load_collection, write_corpus
from harness.machine import machine_info
from harness.server_process import REPO, build_stamp, default_semsearch, ensure_built
from harness.stats import LatencyStats

from core.cross_encoder import CrossEncoder
from core.defaults import default_model_dir
from core.encoder import Encoder
from core.index.folder import IndexFolder
from service.engine import SearchEngine
from service.settings import Settings

# ----------------------------------------------------------------------------- measuring


async def measure(
    engine: SearchEngine,
    queries: list[str],
    rerank_ks: list[int],
    k: int,
    repeats: int,
    warmup: int,
) -> dict[str, dict[str, list[float]]]:
    """Seconds per variant: ``search`` alone, and per rerank_k its ``total``, ``added`` (paired
    with search alone of the same query and round) and ``step`` (``rerank_hits`` alone)."""
    reranker = engine.reranker
    assert reranker is not None
    count = engine.index.current.count

    async def alone(q: str) -> float:
        t0 = time.perf_counter()
        result = await engine.search(q, k)
        took = time.perf_counter() - t0
        if len(result.hits) != min(k, count):
            raise RuntimeError(f"search returned {len(result.hits)} hits, wanted {min(k, count)}")
        return took

    async def reranked(q: str, rerank_k: int) -> tuple[float, float]:
        t0 = time.perf_counter()
        result = await engine.search(q, max(k, rerank_k))
        t1 = time.perf_counter()
        top = await reranker.rerank_hits(q, result.hits, k)
        t2 = time.perf_counter()
        if len(result.hits) != min(max(k, rerank_k), count) or len(top) != min(k, len(result.hits)):
            raise RuntimeError(f"rerank_k {rerank_k}: {len(result.hits)} candidates, {len(top)} hits")
        return t2 - t0, t2 - t1

    variants: list[int | None] = [None, *rerank_ks]
    for i in range(warmup):
        for v in variants:
            q = queries[i % len(queries)]
            await (alone(q) if v is None else reranked(q, v))

    out: dict[str, dict[str, list[float]]] = {"search": {"total": []}}
    for r in rerank_ks:
        out[str(r)] = {"total": [], "added": [], "step": []}
    turn = 0
    for _ in range(repeats):
        for q in queries:
            order = variants[turn % len(variants) :] + variants[: turn % len(variants)]
            turn += 1
            plain: float | None = None
            rows: dict[int, tuple[float, float]] = {}
            for v in order:
                if v is None:
                    plain = await alone(q)
                else:
                    rows[v] = await reranked(q, v)
            assert plain is not None
            out["search"]["total"].append(plain)
            for r, (total, step) in rows.items():
                out[str(r)]["total"].append(total)
                out[str(r)]["added"].append(total - plain)
                out[str(r)]["step"].append(step)
    return out


def pair_tokens(engine: SearchEngine, queries: list[str], rerank_ks: list[int], k: int) -> dict[str, float]:
    """Median tokens of a (query, candidate) pair as the cross-encoder sees them (after
    truncation), per rerank_k. Outside the timed loop."""
    reranker = engine.reranker
    assert reranker is not None
    folder = engine.index.current
    embeddings = engine.encoder.encode_detailed(queries).embeddings
    deepest = max([k, *rerank_ks])
    hits = folder.search(embeddings, deepest)
    out: dict[str, float] = {}
    for r in rerank_ks:
        pairs = [(q, h.text) for q, hs in zip(queries, hits, strict=True) for h in hs[: max(k, r)]]
        lengths = [len(row["input_ids"]) for row in reranker.model.tokenize(pairs)]
        out[str(r)] = float(np.median(lengths))
    return out


# ----------------------------------------------------------------------------- markdown


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{x:,.{digits}f}"


def markdown(res: dict[str, Any], command: str) -> str:
    m, c = res["machine"], res["corpus"]
    ce = res["reranker"]
    s = res["stats"]["search"]["total"]
    loads = ", ".join(f"{x:.2f}" for x in m["loadavg_start"])
    lines = [
        f"## Rerank latency at concurrency 1 ({m['date']})",
        "",
        f"Machine: {m.get('lscpu Model name', '?')}, {m.get('cpus')} CPUs "
        f"({m.get('lscpu Flags') or 'no avx512_bf16/amx'}), {m.get('mem_gib')} GiB, Python {m['python']}, "
        f"torch {m.get('torch')} ({res['torch_threads']} threads), faiss-cpu {m.get('faiss-cpu')}; "
        f"commit {m.get('git', '?')}. Load average at start {loads}"
        + (f", at end {', '.join(f'{x:.2f}' for x in m['loadavg_end'])}" if "loadavg_end" in m else "")
        + ".",
        "",
        f"Corpus: MEDLINE + ADI, {c['documents']:,} documents, exact flat index, bi-encoder "
        f"`{res['model']}` ({res['precision']}, {res['device']}); {c['queries']} queries × "
        f"{res['repeats']} rounds, k = {res['k']}, one query at a time after {res['warmup']} warm-up "
        f"queries. Cross-encoder `{ce['path']}`: {ce['layers']} layers, hidden {ce['hidden']}, "
        f"max_seq_length {ce['max_seq_length']}, {ce['problem']}. In-process `SearchEngine` with the "
        "reranker, "
        "as `POST /search` with `rerank: true` runs it (micro-batcher, encoder, FAISS, SQLite, then "
        "`Reranker.rerank_hits` over rerank_k candidates), no HTTP. Added = per query and round, search + "
        "rerank minus search alone of the same query (paired).",
        "",
        "```sh",
        command,
        "```",
        "",
        "| rerank_k | pair tokens (median) | search alone p50 ms | p99 ms | search + rerank p50 ms | p99 ms "
        "| **added p50 ms** | **added p99 ms** | rerank step p50 ms | p99 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rerank_ks"]:
        st = res["stats"][str(r)]
        cells = [
            _f(res["pair_tokens"].get(str(r)), 0),
            _f(s["p50_ms"]),
            _f(s["p99_ms"]),
            _f(st["total"]["p50_ms"]),
            _f(st["total"]["p99_ms"]),
            f"**{_f(st['added']['p50_ms'])}**",
            f"**{_f(st['added']['p99_ms'])}**",
            _f(st["step"]["p50_ms"]),
            _f(st["step"]["p99_ms"]),
        ]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += ["", f"Samples per cell: {s['n']}."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="the ir-classic folder (or its parent)")
    ap.add_argument("--reranker", required=True, type=Path, help="a cross-encoder folder")
    ap.add_argument("--model", type=Path, default=None, help="bi-encoder (default: the packaged MiniLM)")
    ap.add_argument("--index", type=Path, default=None, help="an index folder built with --model")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/rerank-bench"), help="corpus and index")
    ap.add_argument("--rerank-ks", default="20,50,100", help="comma-separated candidate counts")
    ap.add_argument("--k", type=int, default=10, help="hits returned")
    ap.add_argument("--queries", type=int, default=0, help="the first N queries (0: all 65)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over the queries")
    ap.add_argument("--warmup", type=int, default=5, help="warm-up queries, every variant, not counted")
    ap.add_argument("--device", default="cpu", help="cpu (the figure asked for), auto or cuda")
    ap.add_argument("--precision", default="auto", help="cross-encoder precision (auto: bf16 where native)")
    ap.add_argument("--build-timeout-s", type=float, default=1800.0)
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    args.rerank_k_list = sorted({int(x) for x in args.rerank_ks.split(",") if x.strip()})
    if not args.rerank_k_list or min(args.rerank_k_list) < 1:
        ap.error("--rerank-ks needs positive integers")
    if args.k < 1 or args.queries < 0 or args.repeats < 1 or args.warmup < 0:
        ap.error("--k and --repeats must be >= 1, --queries and --warmup >= 0")
    return args


def ensure_index(args: argparse.Namespace, model_dir: Path) -> tuple[Path, int]:
    coll = load_collection(args.data, 0)
    if args.index is not None:
        return args.index.expanduser().resolve(), len(coll.docs)
    work: Path = args.work_dir.expanduser().resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit(f"--work-dir {work} is inside the repository; use a folder outside it")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    index_dir = work / "index"
    argv = [str(default_semsearch()), "index", "build", "--corpus", str(corpus), "--output", str(index_dir)]
    argv += ["--model", str(model_dir), "--index-type", "flat", "--no-progress"]
    stamp = build_stamp(write_corpus(coll, corpus), model_dir, "flat")
    ensure_built(index_dir, stamp, argv, dict(os.environ), args.build_timeout_s, work / "logs" / "build.log")
    return index_dir, len(coll.docs)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    model_dir = (args.model or default_model_dir()).expanduser().resolve()
    index_dir, documents = ensure_index(args, model_dir)
    queries = load_collection(args.data, 0).queries
    if args.queries:
        queries = queries[: args.queries]
    results: dict[str, Any] = {"machine": machine_info(None)}
    encoder = Encoder.load(model_dir, args.device)
    cross = CrossEncoder.load(args.reranker, args.device)
    cross.to_precision(args.precision)
    engine = SearchEngine(encoder, IndexFolder.open(index_dir), Settings(device=args.device), None, cross)
    try:
        raw = await measure(engine, queries, args.rerank_k_list, args.k, args.repeats, args.warmup)
        tokens = pair_tokens(engine, queries, args.rerank_k_list, args.k)
    finally:
        engine.close()
    results["machine"]["loadavg_end"] = os.getloadavg()
    results.update(
        {
            "corpus": {"documents": documents, "queries": len(queries)},
            "model": str(model_dir),
            "index": str(index_dir),
            "precision": encoder.precision,
            "device": str(encoder.device),
            "torch_threads": torch.get_num_threads(),
            "reranker": {
                "path": str(args.reranker),
                "layers": cross.model.config.num_hidden_layers,
                "hidden": cross.model.config.hidden_size,
                "max_seq_length": cross.max_seq_length,
                "problem": cross.problem,
            },
            "k": args.k,
            "rerank_ks": args.rerank_k_list,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "pair_tokens": tokens,
            "stats": {
                name: {part: asdict(LatencyStats.of(xs)) for part, xs in parts.items()}
                for name, parts in raw.items()
            },
        }
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(amain(args))
    command = " ".join(["python", "benchmarks/rerank_latency.py", *(sys.argv[1:] if argv is None else argv)])
    print(markdown(results, command))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
