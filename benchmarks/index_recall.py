"""Recall@10, query time and memory of each index type against exact ``flat``, on the same real vectors.

    python benchmarks/index_recall.py --index /tmp/bench-mem/idx-200000 \
        --data ../shared/data --out /tmp/bench-recall

The corpus vectors come from a built flat index (e.g. the 200k-sentence one that
``index_memory.py`` makes); the queries are 1,000 STS-B test sentences embedded with the same
model. Each type is planned exactly as ``--index-type`` would plan it for that many vectors
(the ``auto`` rules), with the manifest's default ``nprobe`` / ``efSearch`` /
``rescore_multiplier``, then a sweep (binary: rescore multipliers 1, 4 and 10; 1 keeps the
Hamming top k, so its recall is that of the sign bits alone).

Memory per type: the bytes each vector's code takes, the saved file's size, and the growth of
resident memory (VmRSS) when a fresh process loads that file with ``VectorIndex.load`` (this
includes the id -> row hash table that ``IDMap2`` rebuilds on load, which the file lacks).
``--limit N`` takes only the first N vectors, ``--types`` a subset, for a quick check.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.defaults import default_model_dir
from core.encoder import Encoder
from core.index.folder import IndexFolder
from core.index.vectors import VectorIndex, plan_index
from training.data import read_pairs

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("ivf", "ivfpq", "hnsw", "sq8", "binary")
SWEEP_KEYS = ("nprobe", "ef_search", "rescore_multiplier")
_LOAD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from core.index.vectors import VectorIndex  # imports faiss before the first reading

def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024

before = rss()
index = VectorIndex.load(Path(sys.argv[1]), sys.argv[2])
print(rss() - before, index.count)
"""


def sweep(key: str, default: int) -> list[int]:
    if key == "rescore_multiplier":
        return sorted({1, default, 10})
    return sorted({default, max(1, default // 4), default * 2, default * 4})


def footprint(index: VectorIndex, out: Path, name: str) -> dict[str, Any]:
    """File size and resident memory of ``index`` once saved and loaded in a fresh process."""
    path = out / f"{name}.faiss"
    index.save(path)
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path), index.factory, str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
    )
    rss, count = map(int, proc.stdout.split())
    assert count == index.count
    n = max(index.count, 1)
    size = path.stat().st_size
    path.unlink()
    return {
        "code_bytes_per_vector": code_bytes(index),
        "file_bytes": size,
        "file_bytes_per_vector": round(size / n, 1),
        "rss_bytes": rss,
        "rss_bytes_per_vector": round(rss / n, 1),
    }


def code_bytes(index: VectorIndex) -> float | None:
    """Bytes of one stored vector (PQ code, int8 row, sign bits...), without ids or graph."""
    if index.binary:
        return index.dim / 8
    inner: Any = faiss.downcast_index(getattr(index.index, "index", index.index))  # inside IDMap2
    ivf = faiss.try_extract_index_ivf(inner)
    if ivf is not None:
        return float(ivf.code_size)
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    size = getattr(inner, "code_size", None)
    return float(size) if size is not None else None


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
    ap.add_argument("--limit", type=int, default=0, help="use only the first N vectors (0: all)")
    ap.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    folder = IndexFolder.open(args.index)
    n = min(folder.count, args.limit) if args.limit else folder.count
    vectors = folder.vectors.reconstruct(np.arange(n, dtype=np.int64))
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
            **footprint(flat, args.out, "flat"),
        }
    ]
    print(json.dumps(rows[-1]), flush=True)
    for index_type in args.types:
        plan = plan_index(index_type, n, vectors.shape[1])
        t0 = time.perf_counter()
        index = VectorIndex.create(vectors.shape[1], plan.factory)
        if plan.train_size:
            sample = vectors[np.random.default_rng(1234).choice(n, plan.train_size, replace=False)]
            index.train(sample)
        index.add(np.arange(n), vectors)
        build_s = time.perf_counter() - t0
        memory = footprint(index, args.out, index_type)
        default = plan.search_params or {}
        key = next((k for k in SWEEP_KEYS if k in default), None)
        settings = [{key: value} for value in sweep(key, default[key])] if key else [{}]
        for params in settings:
            found, ms = timed_search(index, queries, 10, params)
            rows.append(
                {
                    "type": index_type,
                    "factory": plan.factory,
                    "params": params,
                    "default": key is None or params[key] == default[key],
                    "recall@10": recall(found, truth, queries, vectors),
                    "ms_per_query": ms,
                    "build_s": build_s,
                    **memory,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "vectors": n,
        "dim": int(vectors.shape[1]),
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
