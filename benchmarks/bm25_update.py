"""BM25 after a write: a full rebuild against the incremental build from the previous
generation's parts (core.index.lexical_parts), in the same run, on a real index folder.

    python benchmarks/bm25_update.py --index /tmp/hybrid-after-write/index-default [--rounds 5]

The folder is one ``benchmarks/hybrid_after_write.py`` made (100k MEDLINE + ADI abstracts). Each
round commits one new document and one delete through ``MutableIndex``, then times, at the new
generation, ``LexicalIndex.build(store)`` (what every generation cost before) and
``LexicalIndex.build(store, previous)``, and checks that both rank a query's top 100 the same.
The folder is changed: use a copy you can throw away.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from harness.machine import cpu_model

from core.index.doc_store import Document
from core.index.folder import IndexFolder
from core.index.lexical import LexicalIndex
from core.index.mutable import MutableIndex

QUERIES = ["insulin resistance in obese children", "renal failure after surgery", "library indexing"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    folder = IndexFolder.open(args.index)
    t0 = time.perf_counter()
    previous = LexicalIndex.build(folder.store)
    first_s = time.perf_counter() - t0
    dim, full_s, inc_s = folder.manifest.dim, [], []
    victims = [iid for batch in folder.store.iter_live(batch=args.rounds) for iid, _ in batch][: args.rounds]
    names = folder.store.doc_ids(victims)
    folder.close()
    for n in range(args.rounds):
        vec = np.ones((1, dim), np.float32) / np.sqrt(dim)
        with MutableIndex(args.index) as index:
            index.upsert([Document(f"bm25-update-{time.time_ns()}", f"zebrafish round {n}", {})], vec)
            index.delete([names[victims[n]]])
        snap = IndexFolder.open(args.index)
        try:
            t0 = time.perf_counter()
            full = LexicalIndex.build(snap.store)
            full_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            inc = LexicalIndex.build(snap.store, previous)
            inc_s.append(time.perf_counter() - t0)
            for q in QUERIES:
                a, b = full.search([q], 100)[0], inc.search([q], 100)[0]
                assert a.iids.tolist() == b.iids.tolist(), q
            previous = inc
        finally:
            snap.close()
    out = {
        "machine": cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
        "docs": previous.docs,
        "first_build_s": round(first_s, 2),
        "full_rebuild_s": [round(x, 3) for x in full_s],
        "incremental_s": [round(x, 3) for x in inc_s],
        "ratio_p50": round(statistics.median(full_s) / statistics.median(inc_s), 1),
        "parts": len(previous.parts),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
