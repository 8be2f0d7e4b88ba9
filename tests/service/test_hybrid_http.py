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


def test_a_write_never_makes_a_hybrid_search_wait_for_a_whole_bm25_rebuild(
    fresh_index: Path, make_client, tiny_docs, monkeypatch
) -> None:
    """With the refresh wait at 0, the search after a write is served by the previous
    generation's BM25 while the new one builds; a deleted document is never returned through
    it, and the new document becomes findable by its words once the build lands."""
    import threading
    import time

    from core.index import lexical as lexical_mod

    client = make_client(fresh_index, bm25_refresh_wait_ms=0)
    query = tiny_docs[3]["text"]
    assert client.post("/search", json={"query": query, "k": 5, "hybrid": True}).status_code == 200
    gate = threading.Event()
    real_build = lexical_mod.LexicalIndex.build.__func__

    def gated(cls, store, previous=None):
        assert gate.wait(30)
        return real_build(cls, store, previous)

    monkeypatch.setattr(lexical_mod.LexicalIndex, "build", classmethod(gated))
    assert client.delete(f"/documents/{tiny_docs[3]['id']}").status_code == 200
    doc = {"id": "h2", "text": "the red bird and the red fish in the river .", "metadata": {"topic": "new"}}
    assert client.put("/documents", json={"documents": [doc]}).status_code == 200
    body = client.post("/search", json={"query": query, "k": 50, "hybrid": True}).json()  # build blocked
    assert tiny_docs[3]["id"] not in [h["id"] for h in body["hits"]]
    gate.set()
    deadline, top = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        hits = client.post("/search", json={"query": "red fish river", "k": 3, "hybrid": True, "alpha": 0.2})
        top = hits.json()["hits"][0]["id"]
        if top == "h2":
            break
        time.sleep(0.05)
    assert top == "h2"


def test_fusion_is_convex_by_default_and_rrf_on_request(fresh_index: Path, make_client, tiny_docs) -> None:
    client = make_client(fresh_index)
    query = tiny_docs[3]["text"]

    def ask(**extra):
        return client.post("/search", json={"query": query, "k": 5, "hybrid": True, **extra})

    default, convex, rrf = ask(), ask(fusion="convex", alpha=0.8), ask(fusion="rrf")
    assert [h["id"] for h in default.json()["hits"]] == [h["id"] for h in convex.json()["hits"]]
    assert rrf.status_code == 200 and max(h["score"] for h in rrf.json()["hits"]) < 0.05  # 2 / (60 + 1)
    for bad in ({"fusion": "rrf", "alpha": 0.5}, {"fusion": "sum"}):
        r = ask(**bad)
        assert r.status_code == 422 and set(r.json()["error"]) == {"code", "message"}, bad


def test_a_search_that_does_not_say_gets_the_server_s_default_mode(
    fresh_index: Path, make_client, tiny_docs
) -> None:
    """Hybrid with feedback unless the request or SEMSEARCH_SEARCH_MODE says otherwise; the
    options that only weigh a hybrid search are refused, in the one error shape, on a dense one."""
    client = make_client(fresh_index)
    info = client.get("/ready").json()
    assert (info["search_mode"], info["search_feedback"]) == ("hybrid", 3)
    query = tiny_docs[8]["text"]

    def ids(**extra):
        r = client.post("/search", json={"query": query, "k": 8, **extra})
        assert r.status_code == 200, r.text
        return [h["id"] for h in r.json()["hits"]]

    assert ids() == ids(hybrid=True) == ids(hybrid=True, feedback=3)
    batch = client.post("/search/batch", json={"queries": [query], "k": 8}).json()
    assert [h["id"] for h in batch["results"][0]["hits"]] == ids()  # the batch route: the same default
    for bad in ({"hybrid": False, "alpha": 0.5}, {"hybrid": False, "feedback": 2}):
        r = client.post("/search", json={"query": query, **bad})
        assert r.status_code == 422 and "hybrid" in r.json()["error"]["message"], bad
    for bad in ({"feedback": -1}, {"feedback": 21}, {"feedback": 1.5}, {"feedback": "3"}):
        r = client.post("/search", json={"query": query, **bad})
        assert r.status_code == 422 and set(r.json()["error"]) == {"code", "message"}, bad

    dense_server = make_client(fresh_index, search_mode="dense", search_feedback=0)
    assert dense_server.get("/ready").json()["search_mode"] == "dense"
    plain = dense_server.post("/search", json={"query": query, "k": 8}).json()["hits"]
    assert [h["id"] for h in plain] == ids(hybrid=False)
    r = dense_server.post("/search", json={"query": query, "alpha": 0.5})
    assert r.status_code == 422 and set(r.json()["error"]) == {"code", "message"}


def test_bm25_is_built_at_start_when_hybrid_is_the_default(fresh_index: Path, make_client) -> None:
    import time

    hybrid = make_client(fresh_index).app.state.engine
    deadline = time.monotonic() + 10
    while hybrid.index.lexical.builds == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert hybrid.index.lexical.builds == 1  # before any search asked for it
    dense = make_client(fresh_index, search_mode="dense").app.state.engine
    time.sleep(0.2)
    assert dense.index.lexical.builds == 0  # nothing built that no search may need
