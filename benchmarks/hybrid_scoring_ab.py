"""Hybrid search in one process, two checkouts in the same run (A/B): the time of
``IndexFolder.search_hybrid`` per query, so a change to the hybrid path is measured against the
code before it on the same machine at the same time.

    python benchmarks/hybrid_scoring_ab.py --index /tmp/ray-serve-shards/flat-100000 \\
        --data ../shared/data/ir-classic --a /tmp/ab/old --b . [--rounds 3]

``--index``: a built index folder (benchmarks/ray_serve_shards.py writes a 100k one with random
vectors); the queries are MEDLINE and ADI's, with random unit query vectors (the dense side's
cost does not depend on the values). Each checkout runs in its own process (PYTHONPATH), A and
B alternating ``--rounds`` times; each process builds BM25 first (not timed), then times every
query once after a warm-up pass. Reported: p50 and mean ms per query, and B / A.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
from core.index.folder import IndexFolder
from harness.ir_corpus import load_collection
from pathlib import Path
index = IndexFolder.open(sys.argv[1])
queries = load_collection(Path(sys.argv[2]), 0).queries
rng = np.random.default_rng(0)
vectors = rng.standard_normal((len(queries), index.manifest.dim)).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
index.lexical()
for v, q in zip(vectors, queries):
    index.search_hybrid(v, q, 10)
times = []
for v, q in zip(vectors, queries):
    t = time.perf_counter()
    index.search_hybrid(v, q, 10)
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps(times))
"""


def run(checkout: Path, index: Path, data: Path) -> list[float]:
    here = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": f"{checkout.resolve()}:{here}"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(index), str(data)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--a", type=Path, required=True, help="the checkout before the change")
    ap.add_argument("--b", type=Path, required=True, help="the checkout with it")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"A": [], "B": []}
    for _ in range(args.rounds):
        times["A"] += run(args.a, args.index, args.data)
        times["B"] += run(args.b, args.index, args.data)
    result = {
        name: {
            "queries": len(t),
            "p50_ms": round(statistics.median(t), 2),
            "mean_ms": round(statistics.mean(t), 2),
        }
        for name, t in times.items()
    }
    result["B/A p50"] = round(result["B"]["p50_ms"] / result["A"]["p50_ms"], 3)  # type: ignore[index]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
