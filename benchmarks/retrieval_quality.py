"""Retrieval quality on MEDLINE and ADI: dense, BM25, and the design space of their fusion,
each setting chosen on one collection and reported on the other (never tuned on what it reports).

    python benchmarks/retrieval_quality.py --data ../shared/data/ir-classic [--work-dir /tmp/rq] \\
        [--json results.json]

Each collection is indexed (exact flat index, the packaged all-MiniLM-L6-v2, ``index build``'s
defaults) and its queries embedded as ``semsearch eval retrieval`` embeds them (core.embedding:
the index's precision). Per query, every document's dense score (inner product of unit vectors)
and BM25 score (the index's own bm25s) are computed once; the fusions are then replayed from
those scores exactly as the service fuses them: over the top ``--depth`` (100) of each list,
documents missing from a list taking no part of its score in rank fusion. nDCG@10 by pytrec_eval
over every judged query (``evaluation.retrieval.score_runs``).

Fusions measured:

- ``rrf k``: reciprocal rank fusion, sum of 1 / (k + rank), k in --rrf-k;
- ``rrf k w``: the same with the dense list weighted w and BM25 1 - w;
- ``convex norm a``: a * dense + (1 - a) * bm25 over the union of both candidate lists, each
  normalised by ``minmax`` (its range over the candidates), ``zscore`` (mean and standard deviation
  over the candidates) or ``tmm`` (theoretical min-max: from the score's floor, -1 for cosine and
  0 for BM25, to its maximum over the candidates; Bruch et al. 2023, "An analysis of fusion
  functions for hybrid retrieval");
- the service's own path (``IndexFolder.search_hybrid`` with its default fusion), as a check that
  the replay matches it.

The selection rule: on the tuning collection, the setting with the best nDCG@10 of its family;
the table reports it on the other collection.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from harness.machine import cpu_model

from core.defaults import default_model_dir
from core.embedding import encoder_for_index, query_vectors
from core.fusion_names import DEFAULT_ALPHA
from core.index.folder import IndexFolder
from evaluation.retrieval import read_qrels, read_queries, score_runs

COLLECTIONS = {"adi": "ADI", "med": "MED"}
NAMES = {"adi": "ADI", "med": "MEDLINE"}
DENSE_FLOOR, BM25_FLOOR = -1.0, 0.0  # cosine's and BM25's lowest possible scores (tmm)


class Scored:
    """One collection's queries with every document's dense and BM25 score."""

    def __init__(self, ids: list[str], qrels: dict[str, dict[str, int]]) -> None:
        self.ids = np.array(ids, dtype=object)
        self.qrels = qrels
        self.dense: dict[str, np.ndarray] = {}
        self.bm25: dict[str, np.ndarray] = {}
        self.service_hybrid: dict[str, list[str]] = {}


def build(data: Path, name: str, work: Path, model: Path, precision: str) -> Path:
    """The collection's flat index, rebuilt when the corpus or model changed."""
    from indexer.build import BuildConfig, build_index

    corpus = data / name / f"{COLLECTIONS[name]}.ALL"
    out = work / f"{name}-index-{precision}"
    stamp = out.parent / f"{out.name}.stamp"
    key = hashlib.sha256(corpus.read_bytes() + str(model).encode()).hexdigest()
    if not (out.is_dir() and stamp.is_file() and stamp.read_text() == key):
        cfg = BuildConfig(model=str(model), corpus=str(corpus), output=str(out), progress=False)
        cfg.index_type, cfg.precision = "flat", precision
        build_index(cfg)
        stamp.write_text(key)
    return out


def score_collection(data: Path, name: str, index: Path, model: Path, depth: int) -> tuple[Scored, str]:
    folder = IndexFolder.open(index)
    try:
        encoder, _ = encoder_for_index(folder, model, "cpu")
        queries = read_queries(data / name / f"{COLLECTIONS[name]}.QRY")
        qrels = read_qrels(data / name / f"{COLLECTIONS[name]}.REL")
        judged = [q for q in queries if q in qrels]
        live = [(iid, doc.id) for batch in folder.store.iter_live() for iid, doc in batch]
        iids = np.array([iid for iid, _ in live], dtype=np.int64)
        vectors = folder.segments.reconstruct(iids)
        lexical = folder.lexical()
        scored = Scored([doc_id for _, doc_id in live], qrels)
        q_vectors = query_vectors(folder.manifest, encoder.encode([queries[q] for q in judged]))
        for qid, vec in zip(judged, q_vectors, strict=True):
            scored.dense[qid] = vectors @ vec
            scored.bm25[qid] = lexical.scores_for(queries[qid], iids)
            hits = folder.search_hybrid(vec, queries[qid], depth, depth=depth)
            scored.service_hybrid[qid] = [h.id for h in hits]
        return scored, encoder.precision
    finally:
        folder.close()


# ------------------------------------------------------------------------------------- fusions
Fusion = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (dense, bm25, depth) -> doc order


def top(scores: np.ndarray, depth: int, positive: bool = False) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")[:depth]
    return order[scores[order] > 0] if positive else order


def dense_only(dense: np.ndarray, bm25: np.ndarray, depth: int) -> np.ndarray:
    return top(dense, depth)


def bm25_only(dense: np.ndarray, bm25: np.ndarray, depth: int) -> np.ndarray:
    return top(bm25, depth, positive=True)  # as the service: only documents sharing a term


def rrf(k: float, w: float = 0.5) -> Fusion:
    def fuse(dense: np.ndarray, bm25: np.ndarray, depth: int) -> np.ndarray:
        fused: dict[int, float] = {}
        for weight, ranking in ((w, top(dense, depth)), (1 - w, top(bm25, depth, positive=True))):
            for rank, doc in enumerate(ranking.tolist()):
                fused[doc] = fused.get(doc, 0.0) + 2 * weight / (k + rank + 1)
        return np.array(sorted(fused, key=lambda d: -fused[d])[:depth], dtype=np.int64)

    return fuse


def _normalise(x: np.ndarray, how: str, floor: float) -> np.ndarray:
    if how == "minmax":
        span = float(x.max() - x.min())
        return (x - x.min()) / span if span > 0 else np.ones_like(x)
    if how == "zscore":
        sd = float(x.std())
        return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
    span = float(x.max()) - floor  # tmm
    return (x - floor) / span if span > 0 else np.ones_like(x)


def convex(how: str, alpha: float) -> Fusion:
    def fuse(dense: np.ndarray, bm25: np.ndarray, depth: int) -> np.ndarray:
        union = np.union1d(top(dense, depth), top(bm25, depth, positive=True))
        d = _normalise(dense[union].astype(np.float64), how, DENSE_FLOOR)
        b = _normalise(bm25[union].astype(np.float64), how, BM25_FLOOR)
        fused = alpha * d + (1 - alpha) * b
        return union[np.argsort(-fused, kind="stable")][:depth]

    return fuse


def ndcg(scored: Scored, fusion: Fusion, depth: int) -> float:
    runs = {}
    for qid in scored.dense:
        order = fusion(scored.dense[qid], scored.bm25[qid], depth)
        runs[qid] = {str(scored.ids[d]): float(len(order) - r) for r, d in enumerate(order)}
    means, _ = score_runs(runs, {q: scored.qrels[q] for q in scored.dense})
    return means["ndcg@10"]


def families(args: argparse.Namespace) -> dict[str, list[tuple[str, Fusion]]]:
    alphas = [round(a, 2) for a in np.arange(0.1, 0.95, 0.1)]
    weights = [0.3, 0.4, 0.5, 0.6, 0.7]
    ks = [int(k) for k in args.rrf_k.split(",")]
    out: dict[str, list[tuple[str, Fusion]]] = {"rrf": [(f"rrf k={k}", rrf(k)) for k in ks]}
    out["weighted rrf"] = [(f"rrf k={k} w={w}", rrf(k, w)) for k, w in itertools.product(ks, weights)]
    for how in ("minmax", "zscore", "tmm"):
        out[f"convex {how}"] = [(f"convex {how} a={a}", convex(how, a)) for a in alphas]
    return out


def service_ndcg(scored: Scored) -> float:
    runs = {q: {d: float(len(h) - r) for r, d in enumerate(h)} for q, h in scored.service_hybrid.items()}
    return score_runs(runs, {q: scored.qrels[q] for q in scored.dense})[0]["ndcg@10"]


def table(rows: Iterable[list[str]], head: list[str]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the ir-classic folder")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/retrieval-quality"))
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--build-precision", default="auto", help="index build's --precision (default auto)")
    ap.add_argument("--depth", type=int, default=100, help="candidates from each list (the service's)")
    ap.add_argument("--rrf-k", default="1,5,10,20,30,60,100")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model = (args.model or default_model_dir()).resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    scored, precision = {}, ""
    for name in COLLECTIONS:
        scored[name], precision = score_collection(
            args.data,
            name,
            build(args.data, name, args.work_dir, model, args.build_precision),
            model,
            args.depth,
        )
    results: dict[str, Any] = {
        "machine": cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
        "precision": precision,
    }
    base = {
        name: {
            "dense": ndcg(s, dense_only, args.depth),
            "bm25": ndcg(s, bm25_only, args.depth),
            "service hybrid (its default fusion)": service_ndcg(s),
            f"replayed convex minmax a={DEFAULT_ALPHA}": ndcg(s, convex("minmax", DEFAULT_ALPHA), args.depth),
            "replayed rrf k=60 (the default before)": ndcg(s, rrf(60), args.depth),
        }
        for name, s in scored.items()
    }
    results["baselines"] = base
    grid: dict[str, dict[str, dict[str, float]]] = {}
    for family, options in families(args).items():
        grid[family] = {label: {n: ndcg(s, f, args.depth) for n, s in scored.items()} for label, f in options}
    results["grid"] = grid
    lines = [
        f"## Retrieval quality: fusion chosen on one collection, reported on the other ({results['date']})",
        "",
        f"Machine: {results['machine']}. all-MiniLM-L6-v2, flat index, queries at {precision} (the "
        f"index's precision, as `eval retrieval` and `serve` embed them); candidates: top {args.depth} "
        f"of each list. {time.perf_counter() - started:.0f} s in all.",
        "",
        "```sh",
        f"python benchmarks/retrieval_quality.py --data {args.data} --build-precision {args.build_precision}",
        "```",
        "",
    ]
    lines += table(
        ([m, *(f"{base[n][m]:.4f}" for n in COLLECTIONS)] for m in base["adi"]),
        ["nDCG@10", *(NAMES[n] for n in COLLECTIONS)],
    )
    rows = []
    for family, options in grid.items():
        for tune, report in (("adi", "med"), ("med", "adi")):
            label = max(options, key=lambda lab, t=tune: options[lab][t])
            gain = options[label][report] - base[report]["dense"]
            rows.append(
                [
                    family,
                    NAMES[tune],
                    f"`{label}`",
                    f"{options[label][tune]:.4f}",
                    NAMES[report],
                    f"**{options[label][report]:.4f}**",
                    f"{gain:+.4f}",
                ]
            )
    lines += [
        "",
        *table(rows, ["family", "tuned on", "chosen", "there", "reported on", "nDCG@10", "vs dense"]),
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
