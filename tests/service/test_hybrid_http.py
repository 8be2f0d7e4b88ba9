"""POST /search with hybrid: true: BM25 + dense over the served generation, with online updates."""

from __future__ import annotations

from pathlib import Path


def test_hybrid_search_follows_online_updates_and_filters(fresh_index: Path, make_client, tiny_docs) -> None:
    client = make_client(fresh_index)
    assert client.get("/ready").json()["hybrid"] is True
    query = tiny_docs[3]["text"]
    body = client.post("/search", json={"query": query, "k": 5, "hybrid": True}).json()
    assert body["hits"][0]["id"] == tiny_docs[3]["id"]  # first in both rankings
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)

    # A new generation gets its own BM25: the upserted document is found by its words.
    doc = {"id": "h1", "text": "the red bird and the red fish in the river .", "metadata": {"topic": "new"}}
    assert client.put("/documents", json={"documents": [doc]}).status_code == 200
    hits = client.post(
        "/search", json={"query": "red fish river", "k": 3, "hybrid": True, "alpha": 0.2}
    ).json()
    assert hits["hits"][0]["id"] == "h1"

    filtered = client.post(
        "/search",
        json={
            "query": query,
            "k": 50,
            "hybrid": True,
            "filter": {"topic": tiny_docs[0]["metadata"]["topic"]},
        },
    ).json()["hits"]
    assert filtered and all(h["metadata"]["topic"] == tiny_docs[0]["metadata"]["topic"] for h in filtered)
    assert len(filtered) == 5  # all five documents of that topic, no more
