"""The cross-encoder in the service: /rerank, /classify and rerank in /search (tiny random model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.cross_encoder import CrossEncoder
from service.app import create_app
from service.settings import Settings
from tests.service.helpers import assert_error_shape


@pytest.fixture(scope="module")
def client(tiny_index: Path, tiny_reranker: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    settings = Settings(
        index_dir=tiny_index,
        model_dir=tiny_model_dir,
        reranker_dir=tiny_reranker,
        reranker_precision="fp32",  # compared below with an fp32 model's exact scores
        device="cpu",
        reload_interval_s=0,
        max_texts_per_request=8,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def test_rerank_classify_and_search_rerank(client: TestClient, tiny_reranker: Path, tiny_docs) -> None:
    model = CrossEncoder.load(tiny_reranker, "cpu")
    assert client.get("/ready").json()["reranker"] is True

    query, docs = tiny_docs[0]["text"], [d["text"] for d in tiny_docs[1:6]]
    ranked = client.post("/rerank", json={"query": query, "documents": docs}).json()
    expected = model.scores([(query, d) for d in docs])
    assert [r["index"] for r in ranked] == list(np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose([r["score"] for r in ranked], np.sort(expected)[::-1], atol=1e-5)
    assert len(client.post("/rerank", json={"query": query, "documents": docs, "top_k": 2}).json()) == 2

    classified = client.post("/classify", json={"pairs": [[query, docs[0]], [docs[1], docs[2]]]}).json()
    assert len(classified) == 2
    for row in classified:
        assert set(row["probabilities"]) == {"contradiction", "entailment", "neutral"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)

    body = client.post("/search", json={"query": query, "k": 3, "rerank": True, "rerank_k": 20}).json()
    hits = body["hits"]
    assert len(hits) == 3 and all("rerank_score" in h and "score" in h for h in hits)
    rerank_scores = [h["rerank_score"] for h in hits]
    assert rerank_scores == sorted(rerank_scores, reverse=True)  # reordered by the cross-encoder
    plain = client.post("/search", json={"query": query, "k": 20}).json()["hits"]
    by_ce = model.scores([(query, h["text"]) for h in plain])
    assert [h["id"] for h in hits] == [plain[i]["id"] for i in np.argsort(-by_ce, kind="stable")[:3]]
    hybrid = client.post("/search", json={"query": query, "k": 3, "rerank": True, "hybrid": True}).json()
    assert len(hybrid["hits"]) == 3


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/rerank", {"query": "the cat", "documents": []}, 422),
        ("/rerank", {"query": " ", "documents": ["the cat"]}, 422),
        ("/rerank", {"query": "the cat", "documents": ["a"] * 9}, 413),
        ("/rerank", {"query": "the cat", "documents": ["the dog"], "top_k": 0}, 422),
        ("/classify", {"pairs": [["only one"]]}, 422),
        ("/classify", {"pairs": [["a", "b", "c"]]}, 422),
        ("/classify", {"pairs": []}, 422),
        ("/classify", {"pairs": [["a", "b"]] * 5}, 413),
    ],
)
def test_reranker_routes_bad_input(client: TestClient, path: str, body: dict[str, Any], status: int) -> None:
    assert_error_shape(client.post(path, json=body), status)


def test_rerank_weight_fuses_the_cross_encoder_with_the_retrieval_score(
    tiny_index: Path, tiny_reranker: Path, tiny_model_dir: Path, tiny_docs
) -> None:
    """Weight 0 keeps the retrieval order (the cross-encoder's score still comes back); an
    unset weight uses the one stored in the reranker's folder (1.0 here: its order alone)."""
    query = tiny_docs[2]["text"]
    orders = {}
    for weight in (0.0, None):
        settings = Settings(
            index_dir=tiny_index,
            model_dir=tiny_model_dir,
            reranker_dir=tiny_reranker,
            reranker_precision="fp32",
            rerank_weight=weight,
            device="cpu",
            reload_interval_s=0,
        )
        with TestClient(create_app(settings)) as c:
            body = {"query": query, "k": 5, "rerank": True, "rerank_k": 10}
            hits = c.post("/search", json=body).json()["hits"]
            plain = c.post("/search", json={"query": query, "k": 10}).json()["hits"]
        assert all(h["rerank_score"] is not None for h in hits)
        orders[weight] = [h["id"] for h in hits]
        if weight == 0.0:
            assert orders[weight] == [h["id"] for h in plain[:5]]
        else:
            scores = [h["rerank_score"] for h in hits]
            assert scores == sorted(scores, reverse=True)
    assert orders[0.0] != orders[None]  # the random head reorders; a fused weight of 0 does not


def test_cross_encoder_pairs_have_their_own_bound(
    tiny_index: Path, tiny_reranker: Path, tiny_model_dir: Path, tiny_docs
) -> None:
    """rerank_k (and /rerank's documents, /classify's pairs) past SEMSEARCH_MAX_RERANK_PAIRS is
    413 before any model call; rerank_k is not checked when rerank is off."""
    settings = Settings(
        index_dir=tiny_index,
        model_dir=tiny_model_dir,
        reranker_dir=tiny_reranker,
        device="cpu",
        reload_interval_s=0,
        max_rerank_pairs=4,
    )
    query, docs = tiny_docs[0]["text"], [d["text"] for d in tiny_docs[1:6]]
    with TestClient(create_app(settings)) as c:
        over = c.post("/search", json={"query": query, "k": 3, "rerank": True, "rerank_k": 5})
        assert "SEMSEARCH_MAX_RERANK_PAIRS" in assert_error_shape(over, 413)["message"]
        assert (
            c.post("/search", json={"query": query, "k": 3, "rerank": True, "rerank_k": 4}).status_code == 200
        )
        assert c.post("/search", json={"query": query, "k": 3, "rerank_k": 500}).status_code == 200
        # every fetched candidate is scored: k past the bound is refused too (k=40, rerank_k=1)
        by_k = c.post("/search", json={"query": query, "k": 40, "rerank": True, "rerank_k": 1})
        assert_error_shape(by_k, 413)
        assert_error_shape(c.post("/rerank", json={"query": query, "documents": docs}), 413)
        assert c.post("/rerank", json={"query": query, "documents": docs[:4]}).status_code == 200
        pairs = [[query, d] for d in docs]
        assert_error_shape(c.post("/classify", json={"pairs": pairs}), 413)
