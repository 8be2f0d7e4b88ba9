"""Retrieval quality on MEDLINE and ADI: dense, BM25, and the design space of their fusion,
each setting chosen on one collection and reported on the other (never tuned on what it reports).

    python benchmarks/retrieval_quality.py --data ../shared/data/ir-classic [--pairs-data ../shared/data] \\
        [--work-dir /tmp/rq] [--json results.json]

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
- ``feedback a m b``: convex min-max at alpha a after pseudo-relevance feedback
  (core.index.feedback): the query vector moved toward the mean of the first round's top m fused
  documents' vectors, weighted b, and the fusion replayed with the moved query's dense scores;
- the service's own path (``IndexFolder.search_hybrid`` with serve's defaults: hybrid,
  the default fusion and feedback), as a check that the replay matches it.

``--pairs-data`` (the shared data folder) adds two check collections that nothing is chosen on:
paraphrase retrieval built from MRPC test (query: a sentence of a paraphrase pair; corpus: every
second sentence; relevant: its paraphrase) and from STS-B test (pairs scored 4 of 5 or more), as
BEIR's duplicate-question sets are built. A setting that only suits long abstracts shows there.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from harness.machine import cpu_model

from core.defaults import default_model_dir
from core.embedding import encoder_for_index, query_vectors
from core.fusion_names import DEFAULT_ALPHA, DEFAULT_FEEDBACK_DOCS, FEEDBACK_WEIGHT
from core.index.feedback import expand
from core.index.folder import IndexFolder
from evaluation.retrieval import read_qrels, read_queries, score_runs
from training.data import PairExample, read_pairs

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
        self.query: dict[str, np.ndarray] = {}  # the query vector (feedback moves it)
        self.vectors = np.empty((0, 0), np.float32)  # every document's stored vector
        self.service_hybrid: dict[str, list[str]] = {}

    def case(self, qid: str) -> Case:
        return Case(self.dense[qid], self.bm25[qid], self.query[qid], self.vectors)


@dataclass
class Case:
    """One query's scores over every document, and what feedback needs to move it."""

    dense: np.ndarray
    bm25: np.ndarray
    query: np.ndarray
    vectors: np.ndarray


def build(corpus: Path, name: str, work: Path, model: Path, precision: str) -> Path:
    """The collection's flat index, rebuilt when the corpus or model changed."""
    from indexer.build import BuildConfig, build_index

    out = work / f"{name}-index-{precision}"
    stamp = out.parent / f"{out.name}.stamp"
    key = hashlib.sha256(corpus.read_bytes() + str(model).encode()).hexdigest()
    if not (out.is_dir() and stamp.is_file() and stamp.read_text() == key):
        cfg = BuildConfig(model=str(model), corpus=str(corpus), output=str(out), progress=False)
        cfg.index_type, cfg.precision = "flat", precision
        build_index(cfg)
        stamp.write_text(key)
    return out


@dataclass
class Collection:
    name: str
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def classic(data: Path, name: str) -> Collection:
    stem = data / name / COLLECTIONS[name]
    return Collection(
        name, Path(f"{stem}.ALL"), read_queries(Path(f"{stem}.QRY")), read_qrels(Path(f"{stem}.REL"))
    )


def paraphrases(name: str, path: Path, relevant: Callable[[PairExample], bool], work: Path) -> Collection:
    """Paraphrase retrieval from a pair file: each first sentence of a relevant pair is a query,
    every distinct second sentence a document (a JSONL corpus written under ``work``)."""
    pairs = read_pairs(path)
    docs = sorted({p.s2 for p in pairs})
    doc_id = {t: f"d{i}" for i, t in enumerate(docs)}
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    by_text: dict[str, str] = {}
    for p in pairs:
        if relevant(p):
            qid = by_text.setdefault(p.s1, f"q{len(by_text)}")
            queries[qid] = p.s1
            qrels.setdefault(qid, {})[doc_id[p.s2]] = 1
    corpus = work / f"{name}.jsonl"
    corpus.write_text("".join(json.dumps({"id": doc_id[t], "text": t}) + "\n" for t in docs))
    return Collection(name, corpus, queries, qrels)


def score_collection(c: Collection, index: Path, model: Path, depth: int) -> tuple[Scored, str]:
    folder = IndexFolder.open(index)
    try:
        encoder, _ = encoder_for_index(folder, model, "cpu")
        judged = [q for q in c.queries if q in c.qrels]
        live = [(iid, doc.id) for batch in folder.store.iter_live() for iid, doc in batch]
        iids = np.array([iid for iid, _ in live], dtype=np.int64)
        vectors = folder.segments.reconstruct(iids)
        lexical = folder.lexical()
        scored = Scored([doc_id for _, doc_id in live], c.qrels)
        scored.vectors = vectors
        q_vectors = query_vectors(folder.manifest, encoder.encode([c.queries[q] for q in judged]))
        for qid, vec in zip(judged, q_vectors, strict=True):
            scored.dense[qid] = vectors @ vec
            scored.bm25[qid] = lexical.scores_for(c.queries[qid], iids)
            scored.query[qid] = vec
            hits = folder.search_hybrid(vec, c.queries[qid], depth, feedback=DEFAULT_FEEDBACK_DOCS)
            scored.service_hybrid[qid] = [h.id for h in hits]
        return scored, encoder.precision
    finally:
        folder.close()


# ------------------------------------------------------------------------------------- fusions
Fusion = Callable[[Case, int], np.ndarray]  # (one query's scores, depth) -> doc order


def top(scores: np.ndarray, depth: int, positive: bool = False) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")[:depth]
    return order[scores[order] > 0] if positive else order


def dense_only(case: Case, depth: int) -> np.ndarray:
    return top(case.dense, depth)


def bm25_only(case: Case, depth: int) -> np.ndarray:
    return top(case.bm25, depth, positive=True)  # as the service: only documents sharing a term


def rrf(k: float, w: float = 0.5) -> Fusion:
    def fuse(case: Case, depth: int) -> np.ndarray:
        fused: dict[int, float] = {}
        for weight, ranking in ((w, top(case.dense, depth)), (1 - w, top(case.bm25, depth, positive=True))):
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
    def fuse(case: Case, depth: int) -> np.ndarray:
        union = np.union1d(top(case.dense, depth), top(case.bm25, depth, positive=True))
        d = _normalise(case.dense[union].astype(np.float64), how, DENSE_FLOOR)
        b = _normalise(case.bm25[union].astype(np.float64), how, BM25_FLOOR)
        fused = alpha * d + (1 - alpha) * b
        return union[np.argsort(-fused, kind="stable")][:depth]

    return fuse


def feedback(alpha: float, docs: int, weight: float) -> Fusion:
    """The service's feedback (core.index.feedback.expand) replayed: the first round's top
    ``docs`` fused documents move the query, whose dense scores the second round fuses."""
    first = convex("minmax", alpha)

    def fuse(case: Case, depth: int) -> np.ndarray:
        moved = expand(case.query, case.vectors[first(case, depth)[:docs]], weight)
        return first(Case(case.vectors @ moved, case.bm25, moved, case.vectors), depth)

    return fuse


def ndcg(scored: Scored, fusion: Fusion, depth: int) -> float:
    runs = {}
    for qid in scored.dense:
        order = fusion(scored.case(qid), depth)
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
    out["convex minmax + feedback"] = [
        (f"feedback a={a} m={m} b={b}", feedback(a, m, b))
        for a, m, b in itertools.product(
            [0.5, 0.6, 0.7, 0.8, 0.9], [1, 2, 3, 5, 10], [0.25, 0.5, 1.0, 1.5, 2.0]
        )
    ]
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
    ap.add_argument(
        "--pairs-data", type=Path, help="the shared data folder: MRPC and STS-B check collections"
    )
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
    collections = [classic(args.data, name) for name in COLLECTIONS]
    if args.pairs_data:
        collections += [
            paraphrases(
                "mrpc", args.pairs_data / "mrpc/msr-para-test.tsv", lambda p: p.label == "1", args.work_dir
            ),
            paraphrases(
                "sts",
                args.pairs_data / "stsbenchmark/sts-test.csv",
                lambda p: (p.score or 0) >= 0.8,
                args.work_dir,
            ),
        ]
    scored, precision = {}, ""
    for c in collections:
        index = build(c.corpus, c.name, args.work_dir, model, args.build_precision)
        scored[c.name], precision = score_collection(c, index, model, args.depth)
    checks = [c.name for c in collections if c.name not in COLLECTIONS]
    results: dict[str, Any] = {
        "machine": cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
        "precision": precision,
    }
    default = f"feedback a={DEFAULT_ALPHA} m={DEFAULT_FEEDBACK_DOCS} b={FEEDBACK_WEIGHT}"
    base = {
        name: {
            "dense": ndcg(s, dense_only, args.depth),
            "bm25": ndcg(s, bm25_only, args.depth),
            "**serve's default** (hybrid + feedback, the service's own path)": service_ndcg(s),
            f"replayed {default}": ndcg(
                s, feedback(DEFAULT_ALPHA, DEFAULT_FEEDBACK_DOCS, FEEDBACK_WEIGHT), args.depth
            ),
            f"replayed convex minmax a={DEFAULT_ALPHA} (hybrid, no feedback)": ndcg(
                s, convex("minmax", DEFAULT_ALPHA), args.depth
            ),
            "replayed rrf k=60": ndcg(s, rrf(60), args.depth),
        }
        for name, s in scored.items()
    }
    results["baselines"] = base
    grid: dict[str, dict[str, dict[str, float]]] = {}
    for family, options in families(args).items():
        grid[family] = {
            label: {n: ndcg(scored[n], f, args.depth) for n in COLLECTIONS} for label, f in options
        }
    results["grid"] = grid
    lines = [
        f"## Retrieval quality: fusion chosen on one collection, reported on the other ({results['date']})",
        "",
        f"Machine: {results['machine']}. all-MiniLM-L6-v2, flat index, queries at {precision} (the "
        f"index's precision, as `eval retrieval` and `serve` embed them); candidates: top {args.depth} "
        f"of each list. {time.perf_counter() - started:.0f} s in all.",
        "",
        "```sh",
        f"python benchmarks/retrieval_quality.py --data {args.data}"
        + (f" --pairs-data {args.pairs_data}" if args.pairs_data else "")
        + f" --build-precision {args.build_precision}",
        "```",
        "",
    ]
    names = {**NAMES, "mrpc": "MRPC-test paraphrases (check)", "sts": "STS-B-test paraphrases (check)"}
    lines += table(
        ([m, *(f"{base[n][m]:.4f}" for n in scored)] for m in base["adi"]),
        ["nDCG@10", *(names[n] for n in scored)],
    )
    options_of = {family: dict(options) for family, options in families(args).items()}
    rows = []
    for family, options in grid.items():
        for tune, report in (("adi", "med"), ("med", "adi")):
            label = max(options, key=lambda lab, t=tune: options[lab][t])
            gain = options[label][report] - base[report]["dense"]
            check = []
            for n in checks:
                got = ndcg(scored[n], options_of[family][label], args.depth)
                check.append(f"{got:.4f} ({got - base[n]['dense']:+.4f})")
            rows.append(
                [
                    family,
                    NAMES[tune],
                    f"`{label}`",
                    f"{options[label][tune]:.4f}",
                    NAMES[report],
                    f"**{options[label][report]:.4f}**",
                    f"{gain:+.4f}",
                    *check,
                ]
            )
    head = ["family", "tuned on", "chosen", "there", "reported on", "nDCG@10", "vs dense"]
    lines += ["", *table(rows, head + [f"{n} (vs dense)" for n in checks])]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
