"""Retrieval evaluation: readers, metrics against hand computation, and an end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from core.encoder import Encoder
from core.errors import DataError
from core.index.folder import IndexFolder
from evaluation.retrieval import evaluate, read_qrels, read_queries, score_runs


def test_metrics_match_hand_computation() -> None:
    qrels = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2}, "q3": {"z": 1}}
    runs = {"q1": {"x": 3.0, "a": 2.0, "b": 1.0}, "q2": {"c": 5.0}}  # q3 has no run at all
    means, per = score_runs(runs, qrels)
    ideal = 1 + 1 / math.log2(3)
    assert per["q1"]["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / ideal)
    assert per["q1"]["mrr@10"] == pytest.approx(0.5)
    assert per["q1"]["recall@100"] == 1.0
    assert per["q2"] == {"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    assert per["q3"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert means["mrr@10"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_mrr_counts_only_the_top_ten() -> None:
    run = {f"d{i}": float(100 - i) for i in range(12)}  # the relevant one is 11th
    means, _ = score_runs({"q": run}, {"q": {"d10": 1}})
    assert means["mrr@10"] == 0.0 and means["recall@100"] == 1.0


def test_readers(tmp_path: Path) -> None:
    smart = tmp_path / "Q.QRY"
    smart.write_text(".I 1\r\n.W\r\nfirst query\r\n.I 2\r\n.W\r\nsecond\r\nline\r\n")
    assert read_queries(smart) == {"1": "first query", "2": "second line"}
    tsv = tmp_path / "q.tsv"
    tsv.write_text("a\tthe cat\nb\tthe dog\n")
    assert read_queries(tsv) == {"a": "the cat", "b": "the dog"}
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"id": 1, "text": "x y"}\n')
    assert read_queries(jsonl) == {"1": "x y"}
    trec = tmp_path / "qrels.trec"
    trec.write_text("1 0 13 1\n1 0 14 2\n2 0 7 0\n")
    assert read_qrels(trec) == {"1": {"13": 1, "14": 2}, "2": {"7": 0}}
    rel = tmp_path / "ADI.REL"
    rel.write_text("1   17   0   0.000000   \n1   46   0   0.000000\n2 3 0 0.0\n")
    assert read_qrels(rel) == {"1": {"17": 1, "46": 1}, "2": {"3": 1}}


def test_reader_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "q.tsv"
    bad.write_text("a\tfine\nno tab here\n")
    with pytest.raises(DataError, match=r"q\.tsv:2"):
        read_queries(bad)
    qrels = tmp_path / "r.trec"
    qrels.write_text("1 0 13 1\n1 0\n")
    with pytest.raises(DataError, match=r"r\.trec:2"):
        read_qrels(qrels)


def test_end_to_end_each_document_finds_itself(tiny_index: Path, tiny_encoder: Encoder, tiny_docs) -> None:
    out = tiny_index
    queries = {f"q{i}": d["text"] for i, d in enumerate(tiny_docs[:10])}
    qrels = {f"q{i}": {d["id"]: 1} for i, d in enumerate(tiny_docs[:10])}
    folder = IndexFolder.open(out)
    try:
        for mode in ("dense", "bm25", "hybrid"):
            report = evaluate(folder, tiny_encoder, {**queries, "extra": "the cat"}, qrels, mode)
            assert report.queries == 10 and report.unjudged_queries == ["extra"]
            assert report.means["recall@100"] == 1.0, mode
            assert report.means["mrr@10"] >= (1.0 if mode == "dense" else 0.5), (mode, report.means)
    finally:
        folder.close()


def test_rerank_reorders_the_head_of_each_run(
    tiny_index: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs
) -> None:
    from core.cross_encoder import CrossEncoder

    out = tiny_index
    reranker = CrossEncoder.new(tiny_model_dir, "regression", ["score"], "cpu")
    queries = {"q": tiny_docs[0]["text"]}
    qrels = {"q": {tiny_docs[0]["id"]: 1}}
    folder = IndexFolder.open(out)
    try:
        plain = evaluate(folder, tiny_encoder, queries, qrels, "dense")
        reranked = evaluate(folder, tiny_encoder, queries, qrels, "dense", reranker=reranker, rerank_k=5)
    finally:
        folder.close()
    assert reranked.mode == "dense+rerank"
    assert plain.means["recall@100"] == reranked.means["recall@100"] == 1.0  # the run keeps its documents
    reopened = IndexFolder.open(out)
    head = [h.id for h in reopened.search(tiny_encoder.encode([queries["q"]]), 5)[0]]
    reopened.close()
    texts = [next(d["text"] for d in tiny_docs if d["id"] == i) for i in head]
    order = np.argsort(-reranker.scores([(queries["q"], t) for t in texts]), kind="stable")
    reranked_ids = [head[i] for i in order]
    assert reranked.means["mrr@10"] == pytest.approx(1 / (reranked_ids.index(tiny_docs[0]["id"]) + 1))


def test_rerank_weight_zero_keeps_the_first_stage_order(
    tiny_index: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs
) -> None:
    from core.cross_encoder import CrossEncoder

    reranker = CrossEncoder.new(tiny_model_dir, "regression", ["score"], "cpu")
    queries = {"q": tiny_docs[3]["text"]}
    qrels = {"q": {tiny_docs[5]["id"]: 1}}
    folder = IndexFolder.open(tiny_index)
    try:
        plain = evaluate(folder, tiny_encoder, queries, qrels, "dense")
        kept = evaluate(folder, tiny_encoder, queries, qrels, "dense", reranker=reranker, rerank_weight=0.0)
        alone = evaluate(folder, tiny_encoder, queries, qrels, "dense", reranker=reranker, rerank_weight=1.0)
        reranker.rerank_weight = 1.0
        default = evaluate(folder, tiny_encoder, queries, qrels, "dense", reranker=reranker)
    finally:
        folder.close()
    assert kept.per_query == plain.per_query
    assert default.per_query == alone.per_query


def test_eval_retrieval_sets_the_precision_as_serve_does(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path, tiny_docs
) -> None:
    """Without --precision, the queries are embedded at the index's precision (serve's default),
    not at fp32 whatever the index holds."""
    import torch

    from core.device import int8_supported
    from evaluation.retrieval import evaluate_files
    from indexer.build import BuildConfig, build_index

    if not int8_supported(torch.device("cpu")):
        pytest.skip("no int8 on this CPU")
    out = tmp_path / "idx"
    cfg = BuildConfig(model=str(tiny_model_dir), corpus=str(tiny_corpus), output=str(out), progress=False)
    cfg.precision = "int8"
    build_index(cfg)
    queries, qrels = tmp_path / "q.tsv", tmp_path / "qrels.trec"
    queries.write_text("".join(f"q{i}\t{d['text']}\n" for i, d in enumerate(tiny_docs[:5])))
    qrels.write_text("".join(f"q{i} 0 {d['id']} 1\n" for i, d in enumerate(tiny_docs[:5])))
    report = evaluate_files(out, queries, qrels, device="cpu")
    assert report.precision == "int8" and report.means["recall@100"] == 1.0
    assert evaluate_files(out, queries, qrels, mode="bm25").precision == ""
