"""HNSW search with deleted vectors (tombstones): over-fetching k + tombstones and dropping the
dead hits (the old way) against FAISS skipping them through an id selector (the current way),
in the same run, on random unit vectors (the storage engine apart from the encoder).

    python benchmarks/tombstone_search.py [--n 100000] [--dim 384] [--deleted 0.05,0.2] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.index.vectors import VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _p50_ms(fn, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q[None, :])
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--deleted", default="0.05,0.2")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = _unit(rng, args.n, args.dim)
    index = VectorIndex.create(args.dim, "IDMap2,HNSW32")
    t0 = time.perf_counter()
    index.add(np.arange(args.n, dtype=np.int64), data)
    build_s = time.perf_counter() - t0
    queries = _unit(rng, args.queries, args.dim)
    params = {"ef_search": 128}
    rows = []
    for share in (float(x) for x in args.deleted.split(",")):
        dead = np.sort(rng.choice(args.n, int(args.n * share), replace=False)).astype(np.int64)
        k = args.k
        alive = np.ones(args.n, bool)
        alive[dead] = False
        sims = queries @ data.T
        sims[:, ~alive] = -np.inf
        truth = np.argsort(-sims, axis=1)[:, :k]  # exact top k among the live vectors

        def over_fetch(q: np.ndarray, dead: np.ndarray = dead, k: int = k) -> np.ndarray:
            _, ids = index.search(q, k + len(dead), params)
            ids = ids[0]
            return ids[~np.isin(ids, dead)][:k]

        def selector(q: np.ndarray, dead: np.ndarray = dead, k: int = k) -> np.ndarray:
            return index.search(q, k, params, dead)[1][0]

        for fn in (over_fetch, selector):  # warm-up
            fn(queries[0][None, :])
        a, b = _p50_ms(over_fetch, queries), _p50_ms(selector, queries)

        def recall(fn, truth: np.ndarray = truth, k: int = k) -> float:
            got = [
                len(set(fn(q[None, :]).tolist()) & set(t.tolist())) / k
                for q, t in zip(queries, truth, strict=True)
            ]
            return float(np.mean(got))

        rows.append(
            {
                "deleted": share,
                "tombstones": len(dead),
                "over_fetch_p50_ms": round(a, 3),
                "selector_p50_ms": round(b, 3),
                "speedup": round(a / b, 2),
                "over_fetch_recall@k": round(recall(over_fetch), 4),
                "selector_recall@k": round(recall(selector), 4),
            }
        )
    print(
        json.dumps(
            {"n": args.n, "dim": args.dim, "k": args.k, "build_s": round(build_s, 1), "rows": rows}, indent=1
        )
    )


if __name__ == "__main__":
    main()
