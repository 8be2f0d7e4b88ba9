"""Hybrid search on a written-to index: what the first search after each write costs, how long a
new document takes to be found by its words, and hybrid's cost against dense search.

    python benchmarks/hybrid_after_write.py --data ../shared/data/ir-classic [--docs 100000]

The index holds ``--docs`` MEDLINE + ADI abstracts (repeated with fresh ids) with random unit
vectors (the dense side's cost depends on the count, not on the values; building real
embeddings of 100k abstracts would take most of an hour here), made for the packaged MiniLM so
that ``semsearch serve`` encodes real queries. Two servers in the same run:

- ``SEMSEARCH_BM25_REFRESH_WAIT_MS=60000``: a hybrid search waits for its generation's whole
  BM25 build, as every hybrid search after a write did before BM25 was built in the background;
- the default (100 ms): it waits that long, then searches the newest BM25 built.

Each does ``--rounds`` times: ``PUT /documents`` one new document, then one hybrid search
(timed), then hybrid searches (``alpha`` 0: BM25's score alone) for the new document's unique
word until it comes first: the lag until it is found lexically, bounded by ``--lag-bound-s``.
Each round starts once the previous write is found, so no build is left running. Then, on the
default server, a
load phase of ``--requests`` searches at concurrency 1 and 32 for each of: dense, hybrid without
feedback, and serve's default (hybrid with pseudo-relevance feedback: two rounds). ``--load-only``
skips the write rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from harness.ir_corpus import load_collection
from harness.load import RequestFn, run_phase
from harness.machine import cpu_model
from harness.random_index import model_manifest, random_unit_vectors, write_index
from harness.server_process import start_server

from core.defaults import default_model_dir
from core.encoder import Encoder

DIM = 384


def build(out: Path, data: Path, n: int, model: Path) -> None:
    if (out / "manifest.json").exists():
        return
    encoder = Encoder.load(model, "cpu")
    docs = load_collection(data, n).docs
    write_index(out, model_manifest(encoder, model), docs, random_unit_vectors(len(docs), encoder.dim))


def search(client: httpx.Client, query: str, alpha: float | None = None) -> tuple[float, list[str]]:
    started = time.perf_counter()
    body: dict[str, Any] = {"query": query, "k": 10, "hybrid": True}
    if alpha is not None:
        body["alpha"] = alpha
    r = client.post("/search", json=body)
    r.raise_for_status()
    return (time.perf_counter() - started) * 1000, [h["id"] for h in r.json()["hits"]]


def writes(url: str, rounds: int, lag_bound_s: float) -> dict[str, Any]:
    after, lags = [], []
    with httpx.Client(base_url=url, timeout=600) as client:
        first_ms, _ = search(client, "blood pressure in elderly patients")  # the first BM25 build
        for i in range(rounds):
            word = f"zyxqu{i}"
            doc = {"id": f"new-{i}", "text": f"{word} a new abstract about kidney stones", "metadata": {}}
            client.put("/documents", json={"documents": [doc]}).raise_for_status()
            written = time.perf_counter()
            ms, _ = search(client, "kidney function in children")
            after.append(ms)
            while time.perf_counter() - written < lag_bound_s:
                # alpha 0: the BM25 score alone orders the candidates, so only a BM25 that knows
                # the new document puts it first (its real embedding stands out among the random
                # vectors, which would let the dense side find it at once).
                _, ids = search(client, word, alpha=0.0)
                if ids[:1] == [doc["id"]]:
                    break
                time.sleep(0.05)
            lags.append(time.perf_counter() - written)
    return {
        "first_hybrid_ms": round(first_ms, 1),
        "after_write_ms": [round(x, 1) for x in after],
        "after_write_p50_ms": round(statistics.median(after), 1),
        "after_write_max_ms": round(max(after), 1),
        "found_lag_s_p50": round(statistics.median(lags), 2),
        "found_lag_s_max": round(max(lags), 2),
    }


# The load phase's searches: what a request that says nothing gets (serve's default: hybrid with
# pseudo-relevance feedback), hybrid without feedback, and dense alone.
MODES: dict[str, dict[str, Any]] = {
    "dense": {"hybrid": False},
    "hybrid, no feedback": {"hybrid": True, "feedback": 0},
    "default (hybrid + feedback)": {},
}


def searches(queries: list[str], options: dict[str, Any]) -> RequestFn:
    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        body = {"query": queries[i % len(queries)], "k": 10, **options}
        r = await client.post("/search", json=body)
        return "search", r.status_code, None

    return fn


def load(url: str, queries: list[str], requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, options in MODES.items():
        for c in (1, 32):
            r = asyncio.run(
                run_phase(
                    url,
                    searches(queries, options),
                    label=mode,
                    concurrency=c,
                    requests=requests,
                    duration_s=120,
                    warmup=10,
                    timeout_s=60,
                )
            )
            s = r.latency["search"]
            key = f"{mode} c={c}"
            out[key] = {"qps": round(r.qps, 1), "p50_ms": round(s.p50_ms, 1), "p99_ms": round(s.p99_ms, 1)}
            out[key]["errors"] = r.errors
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/hybrid-after-write"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lag-bound-s", type=float, default=60.0)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--load-only", action="store_true", help="only the default server's load phase")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model = default_model_dir()
    queries = load_collection(args.data, 0).queries
    result: dict[str, Any] = {"machine": cpu_model(), "date": time.strftime("%Y-%m-%d"), "docs": args.docs}
    servers = (("wait for the whole build", "60000"), ("default (100 ms)", None))
    for name, wait in servers[1:] if args.load_only else servers:
        index = args.work_dir / f"index-{name.split()[0]}"
        build(index, args.data, args.docs, model)  # one copy each: the writes change it
        env = {
            "SEMSEARCH_RELOAD_INTERVAL_S": "0",
            **({"SEMSEARCH_BM25_REFRESH_WAIT_MS": wait} if wait else {}),
        }
        proc, url = start_server(str(index), str(model), env)
        try:
            if not args.load_only:
                result[name] = writes(url, args.rounds, args.lag_bound_s)
            if wait is None:
                result["load"] = load(url, queries, args.requests)
        finally:
            proc.terminate()
            proc.wait(60)
        print(json.dumps({name: result.get(name)}), flush=True)
    if args.load_only:
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    old, new = result["wait for the whole build"], result["default (100 ms)"]
    result["after_write_p50_ratio_old_over_new"] = round(
        old["after_write_p50_ms"] / new["after_write_p50_ms"], 1
    )
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
