"""Memory a served index takes, per index type: file size and resident memory after loading.

    python benchmarks/index_footprint.py --index /tmp/bench-mem2/idx-200000 --out /tmp/bench-footprint

Takes the vectors of an existing flat index folder (the 200k all-MiniLM-L6-v2 vectors of
``index_memory.py``), builds each index type from them as ``--index-type`` plans it for that many
vectors (plus ``IDMap2,SQ8``, which the indexer does not offer, for sizing), saves it, then loads
each saved file in a fresh process and reads the growth of its resident memory (VmRSS) over
the same process before the load, and for IVF types once more after the id hash table that
the service builds on the first filtered search. Bytes per vector and the per-million figures
follow from those measurements; docs/deploy.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_LOAD = """
import sys, faiss
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
before = rss()
index = faiss.read_index(sys.argv[1])
loaded = rss()
# IVF: the service builds an id -> (list, offset) hash table on the first filtered search
# (VectorIndex.reconstruct); measure it too.
ivf = faiss.try_extract_index_ivf(index)
if ivf is not None:
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
print(loaded - before, rss() - before, index.ntotal)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, type=Path, help="a flat index folder to take the vectors from")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--types", nargs="+", default=["flat", "sq8", "ivf", "ivfpq", "hnsw"])
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import faiss
    import numpy as np

    from core.index.manifest import Manifest
    from core.index.vectors import VectorIndex, plan_index

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.read(args.index)
    loaded = faiss.read_index(str(args.index / manifest.index_file))  # owns what the casts below view
    flat: Any = faiss.downcast_index(loaded)
    n, dim = int(flat.ntotal), int(flat.d)
    inner: Any = faiss.downcast_index(flat.index) if hasattr(flat, "id_map") else flat
    vectors = inner.reconstruct_n(0, n)
    del inner, flat, loaded
    ids = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(1234)
    rows = []
    for kind in args.types:
        if kind == "sq8":
            factory, train = "IDMap2,SQ8", n
        else:
            plan = plan_index(kind, n, dim)
            factory, train = plan.factory, plan.train_size
        index = VectorIndex.create(dim, factory)
        t0 = time.monotonic()
        if not index.is_trained:
            index.train(vectors[rng.choice(n, size=min(train or n, n), replace=False)])
        index.add(ids, vectors)
        build_s = time.monotonic() - t0
        path = args.out / f"{kind}.faiss"
        index.save(path)
        out = subprocess.run(
            [sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, check=True
        )
        rss_bytes, rss_mapped, count = map(int, out.stdout.split())
        assert count == n
        row = {
            "type": kind,
            "factory": factory,
            "vectors": n,
            "dim": dim,
            "file_bytes": path.stat().st_size,
            "rss_bytes": rss_bytes,
            "file_bytes_per_vector": round(path.stat().st_size / n, 1),
            "rss_bytes_per_vector": round(rss_bytes / n, 1),
            "rss_mb_per_million": round(rss_bytes / n * 1e6 / 1e6),
            "rss_with_id_map_bytes_per_vector": round(rss_mapped / n, 1),
            "build_s": round(build_s, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        path.unlink()
    (args.out / "footprint.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
