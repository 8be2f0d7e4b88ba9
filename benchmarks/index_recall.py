"""Recall@10 and query time of each index type against exact ``flat``, on the same real vectors.

    python benchmarks/index_recall.py --index /tmp/bench-mem/idx-200000 \
        --data ../shared/data --out /tmp/bench-recall

The corpus vectors come from a built flat index (e.g. the 200k-sentence one that
``index_memory.py`` makes); the queries are 1,000 STS-B test sentences embedded with the same
model. Each type is planned exactly as ``--index-type`` would plan it for that many vectors
(the ``auto`` rules), with the manifest's default ``nprobe`` / ``efSearch``, then a sweep.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from core.defaults import default_model_dir
from core.encoder import Encoder
from core.index.folder import IndexFolder
from core.index.vectors import VectorIndex, plan_index
from training.data import read_pairs


def timed_search(
    index: VectorIndex, queries: np.ndarray, k: int, params: dict[str, int]
) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    _, ids = index.search(queries, k, params)
    return ids, (time.perf_counter() - t0) * 1000 / len(queries)


def recall(found: np.ndarray, truth: np.ndarray, queries: np.ndarray, vectors: np.ndarray) -> float:
    """Share of returned hits that are true top-10 hits, by score: a hit counts when its exact
    similarity reaches the exact 10th-best one. Counting by id would punish an index for picking
    one of several identical vectors (the repeated corpus has many) over another."""
    hits = 0
    for q, f, t in zip(queries, found, truth, strict=True):
        cutoff = float(vectors[t[-1]] @ q) - 1e-6
        hits += int(sum(float(vectors[i] @ q) >= cutoff for i in f if i >= 0))
    return hits / truth.size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, type=Path, help="a built flat index folder")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    folder = IndexFolder.open(args.index)
    n = folder.count
    vectors = np.vstack([folder.vectors.index.reconstruct(i) for i in range(n)])
    folder.close()
    pairs = read_pairs(args.data / "stsbenchmark" / "sts-test.csv", "stsb")
    sentences = list(dict.fromkeys(s for p in pairs for s in (p.s1, p.s2)))[: args.queries]
    encoder = Encoder.load(default_model_dir(), "cpu")
    queries = encoder.encode(sentences, batch_size=64)

    flat = VectorIndex.create(vectors.shape[1])
    flat.add(np.arange(n), vectors)
    truth, flat_ms = timed_search(flat, queries, 10, {})
    rows = [
        {
            "type": "flat",
            "factory": flat.factory,
            "params": {},
            "recall@10": 1.0,
            "ms_per_query": flat_ms,
            "build_s": 0.0,
        }
    ]
    for index_type in ("ivf", "ivfpq", "hnsw"):
        plan = plan_index(index_type, n, vectors.shape[1])
        t0 = time.perf_counter()
        index = VectorIndex.create(vectors.shape[1], plan.factory)
        if plan.train_size:
            sample = vectors[np.random.default_rng(1234).choice(n, plan.train_size, replace=False)]
            index.train(sample)
        index.add(np.arange(n), vectors)
        build_s = time.perf_counter() - t0
        default = plan.search_params or {}
        key = "nprobe" if "nprobe" in default else "ef_search"
        sweep = sorted({default[key], max(1, default[key] // 4), default[key] * 2, default[key] * 4})
        for value in sweep:
            found, ms = timed_search(index, queries, 10, {key: value})
            rows.append(
                {
                    "type": index_type,
                    "factory": plan.factory,
                    "params": {key: value},
                    "default": value == default[key],
                    "recall@10": recall(found, truth, queries, vectors),
                    "ms_per_query": ms,
                    "build_s": build_s,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "vectors": n,
        "queries": len(queries),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
