"""Retrieval evaluation of an index folder: nDCG@10, Recall@100 and MRR@10 with pytrec_eval.

Readers for the queries (SMART ``.QRY``, TSV ``qid<TAB>text``, JSONL ``{"id", "text"}``) and the
judgments (TREC ``qid 0 docid grade``, SMART ``.REL`` ``qid docid 0 0.0``). Document ids in the
judgments are the corpus ids the index was built with. Modes: ``dense`` (the encoder + FAISS),
``bm25`` (bm25s over the index's documents) and ``hybrid`` (their fusion, with pseudo-relevance
feedback, as the service does). The default mode and feedback are ``semsearch serve``'s defaults
(core.fusion_names), so that an evaluation with no flags measures what a server with none serves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytrec_eval

from core.cross_encoder import CrossEncoder, rerank_order
from core.embedding import encoder_for_index, query_vectors
from core.encoder import Encoder
from core.errors import DataError, InvalidInputError, UnsupportedError
from core.fusion_names import DEFAULT_FEEDBACK_DOCS, DEFAULT_FUSION, DEFAULT_SEARCH_MODE
from core.index.feedback import check_feedback
from core.index.folder import Hit, IndexFolder
from core.index.sharded_folder import ShardedFolder, open_for_search
from core.smart import read_smart
from core.textfile import iter_lines

MEASURES = {"ndcg_cut.10": "ndcg@10", "recall.100": "recall@100"}
DEPTH = 100
MODES = ("dense", "bm25", "hybrid")


@dataclass
class RetrievalReport:
    mode: str
    queries: int  # judged queries evaluated
    means: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    unjudged_queries: list[str] = field(default_factory=list)
    queries_per_s: float = 0.0
    precision: str = ""  # the query encoder's ("" for bm25)


def read_queries(path: str | Path) -> dict[str, str]:
    """qid -> text, from SMART ``.QRY``, JSONL or TSV (chosen by the file's content)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "queries file not found")
    first = next((line for _, line in iter_lines(path) if isinstance(line, str) and line.strip()), "")
    if isinstance(first, str) and first.startswith(".I"):
        return {qid: text for qid, text in read_smart(path, ("W", "T"))}
    out: dict[str, str] = {}
    for line_no, line in iter_lines(path):
        if isinstance(line, DataError):
            raise line
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
                qid, text = str(obj["id"]), str(obj["text"])
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(path, line_no, f'expected {{"id", "text"}} JSON ({exc})') from None
        else:
            qid, sep, text = line.partition("\t")
            if not sep:
                raise DataError(path, line_no, "expected qid<TAB>text")
        if not text.strip():
            raise DataError(path, line_no, f"query {qid!r} is empty")
        out[qid.strip()] = text.strip()
    return out


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """qid -> {docid: grade}. TREC rows have the literal iteration ``0`` (or ``Q0``) second; SMART
    ``.REL`` rows have the doc id second and count every listed document as relevant (grade 1)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "qrels file not found")
    rows: list[tuple[int, list[str]]] = []
    for line_no, line in iter_lines(path):
        if isinstance(line, DataError):
            raise line
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise DataError(path, line_no, "expected 'qid 0 docid grade' (TREC) or 'qid docid 0 0.0' (SMART)")
        rows.append((line_no, parts))
    trec = all(p[1] in ("0", "Q0") and len(p) == 4 for _, p in rows)
    qrels: dict[str, dict[str, int]] = {}
    for line_no, parts in rows:
        if trec:
            try:
                grade = int(float(parts[3]))
            except ValueError:
                raise DataError(path, line_no, f"grade {parts[3]!r} is not a number") from None
            qid, docid = parts[0], parts[2]
        else:
            qid, docid, grade = parts[0], parts[1], 1
        qrels.setdefault(qid, {})[docid] = grade
    return qrels


def _run_of(ranked: Sequence[tuple[str, float]]) -> dict[str, float]:
    # Scores by rank: trec_eval breaks score ties by doc id, which would reorder equal scores.
    return {doc_id: float(len(ranked) - r) for r, (doc_id, _) in enumerate(ranked)}


def _hits(hits: Sequence[Hit]) -> list[tuple[str, float]]:
    return [(h.id, float(h.score)) for h in hits]


def evaluate(
    folder: IndexFolder | ShardedFolder,
    encoder: Encoder | None,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    mode: str = DEFAULT_SEARCH_MODE,
    alpha: float | None = None,
    batch_size: int = 32,
    reranker: CrossEncoder | None = None,
    rerank_k: int = 50,
    rerank_weight: float | None = None,
    fusion: str = DEFAULT_FUSION,
    feedback: int = DEFAULT_FEEDBACK_DOCS,
) -> RetrievalReport:
    """``reranker``: re-score the top ``rerank_k`` of each run with the cross-encoder, ordered by
    :func:`core.cross_encoder.fuse_scores` with ``rerank_weight`` (default: the model's own);
    the rest of the run keeps its place after them."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    check_feedback(feedback)
    judged = [q for q in queries if q in qrels]
    if not judged:
        raise InvalidInputError("no query has judgments: do the query ids match the qrels' ids?")
    texts = [queries[q] for q in judged]
    started = time.perf_counter()
    ranked: dict[str, list[tuple[str, float]]] = {}
    if mode == "bm25":
        if isinstance(folder, ShardedFolder):
            raise UnsupportedError("mode bm25 alone does not take a sharded index yet: use dense or hybrid")
        lexical = folder.lexical()
        for qid, found in zip(judged, lexical.search(texts, DEPTH), strict=True):
            docs = folder.store.get_many(found.iids.tolist())
            ranked[qid] = [(docs[int(i)].id, float(s)) for i, s in zip(found.iids, found.scores, strict=True)]
    else:
        if encoder is None:
            raise InvalidInputError(f"mode {mode} needs the encoder")
        vectors = query_vectors(folder.manifest, encoder.encode(texts, batch_size))
        if mode == "dense":
            for qid, hits in zip(judged, folder.search(vectors, DEPTH), strict=True):
                ranked[qid] = _hits(hits)
        else:
            for qid, vec, text in zip(judged, vectors, texts, strict=True):
                hits = folder.search_hybrid(vec, text, DEPTH, alpha=alpha, fusion=fusion, feedback=feedback)
                ranked[qid] = _hits(hits)
    if reranker is not None:
        weight = reranker.rerank_weight if rerank_weight is None else rerank_weight
        for qid in judged:
            head, tail = ranked[qid][:rerank_k], ranked[qid][rerank_k:]
            head_docs = [folder.get(doc_id) for doc_id, _ in head]
            pairs = [(queries[qid], doc.text if doc else "") for doc in head_docs]
            first = np.array([s for _, s in head])
            order, fused = rerank_order(first, reranker.scores(pairs, batch_size), weight)
            ranked[qid] = [(head[i][0], float(fused[i])) for i in order] + tail
        mode = f"{mode}+rerank"
    runs = {qid: _run_of(r) for qid, r in ranked.items()}
    rate = len(judged) / max(time.perf_counter() - started, 1e-9)
    means, table = score_runs(runs, {q: qrels[q] for q in judged})
    unjudged = [q for q in queries if q not in qrels]
    precision = encoder.precision if encoder is not None and mode != "bm25" else ""
    return RetrievalReport(mode, len(judged), means, table, unjudged, rate, precision)


def score_runs(
    runs: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(means, per-query) nDCG@10, Recall@100 and MRR@10 by pytrec_eval; a judged query with no
    run scores 0. MRR@10 is trec_eval's reciprocal rank over each run's top 10."""
    top10 = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in runs.items()}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, set(MEASURES)).evaluate(runs)
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    table: dict[str, dict[str, float]] = {}
    for q in qrels:
        row = {
            name: float(per_query.get(q, {}).get(m.replace(".", "_"), 0.0)) for m, name in MEASURES.items()
        }
        row["mrr@10"] = float(mrr.get(q, {}).get("recip_rank", 0.0))
        table[q] = row
    names = [*MEASURES.values(), "mrr@10"]
    means = {n: float(np.mean([table[q][n] for q in qrels])) for n in names}
    return means, table


def evaluate_files(
    index: str | Path,
    queries_path: str | Path,
    qrels_path: str | Path,
    mode: str = DEFAULT_SEARCH_MODE,
    model: str | Path | None = None,
    alpha: float | None = None,
    device: str = "auto",
    rerank: str | Path | None = None,
    rerank_k: int = 50,
    rerank_weight: float | None = None,
    precision: str = "index",
    reranker_precision: str = "auto",
    fusion: str = DEFAULT_FUSION,
    feedback: int = DEFAULT_FEEDBACK_DOCS,
) -> RetrievalReport:
    """:func:`evaluate` on files, with the encoder set up as ``semsearch serve`` sets it up
    (core.embedding): the index's model, checked, at ``precision`` (by default the index's own,
    measured on its documents), and the reranker at ``reranker_precision``."""
    folder = open_for_search(index)
    try:
        encoder = None
        if mode != "bm25":
            encoder, _ = encoder_for_index(folder, model, device, precision)
        reranker = CrossEncoder.load(rerank, device) if rerank else None
        if reranker is not None:
            reranker.to_precision(reranker_precision)
        queries, qrels = read_queries(queries_path), read_qrels(qrels_path)
        return evaluate(
            folder,
            encoder,
            queries,
            qrels,
            mode,
            alpha,
            reranker=reranker,
            rerank_k=rerank_k,
            rerank_weight=rerank_weight,
            fusion=fusion,
            feedback=feedback,
        )
    finally:
        folder.close()


def report_json(report: RetrievalReport) -> dict[str, Any]:
    return {
        "mode": report.mode,
        "queries": report.queries,
        "means": report.means,
        "per_query": report.per_query,
        "unjudged_queries": report.unjudged_queries,
        "queries_per_s": report.queries_per_s,
        "precision": report.precision,
    }
