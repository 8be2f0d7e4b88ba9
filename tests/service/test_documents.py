"""Online updates over HTTP: upsert/read/delete, durability, consistency under concurrent searches."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

from core.index.folder import IndexFolder
from tests.service.helpers import assert_error_shape

NEW_TEXT = "the red cat sees the blue bird in the park ."


def _search(client: Any, query: str, k: int = 5, **extra: Any) -> list[dict[str, Any]]:
    resp = client.post("/search", json={"query": query, "k": k, **extra})
    assert resp.status_code == 200, resp.text
    hits: list[dict[str, Any]] = resp.json()["hits"]
    return hits


def test_upsert_then_search_finds_it_and_delete_removes_it(fresh_index: Path, make_client) -> None:
    client = make_client(fresh_index)
    gen0 = client.get("/ready").json()["generation"]
    doc = {"id": "new-1", "text": NEW_TEXT, "metadata": {"topic": "fresh", "n": 7}}
    resp = client.put("/documents", json={"documents": [doc]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["upserted"] == 1 and body["generation"] == gen0 + 1

    assert client.get("/documents/new-1").json() == doc
    assert _search(client, NEW_TEXT, k=1)[0]["id"] == "new-1"
    ready = client.get("/ready").json()
    assert ready["documents"] == 51 and ready["generation"] == gen0 + 1

    # Durable: what the 200 acknowledged is in the published folder on disk.
    on_disk = IndexFolder.open(fresh_index)
    assert on_disk.get("new-1") is not None and on_disk.count == 51
    on_disk.close()

    resp = client.delete("/documents/new-1")
    assert resp.status_code == 200 and resp.json()["deleted"] == 1
    assert_error_shape(client.get("/documents/new-1"), 404, "not_found")
    assert all(h["id"] != "new-1" for h in _search(client, NEW_TEXT, k=50))
    assert client.get("/ready").json()["documents"] == 50
    assert_error_shape(client.delete("/documents/new-1"), 404, "not_found")


def test_upsert_replaces_text_and_metadata(fresh_index: Path, make_client, tiny_docs) -> None:
    client = make_client(fresh_index)
    target = tiny_docs[0]["id"]
    resp = client.put(
        "/documents", json={"documents": [{"id": target, "text": NEW_TEXT, "metadata": {"v": 2}}]}
    )
    assert resp.status_code == 200
    assert client.get(f"/documents/{target}").json() == {"id": target, "text": NEW_TEXT, "metadata": {"v": 2}}
    assert client.get("/ready").json()["documents"] == 50  # replaced, not added
    hits = _search(client, NEW_TEXT, k=50)
    assert [h["id"] for h in hits].count(target) == 1
    assert hits[0]["id"] == target


def test_read_only_service_refuses_writes_with_403(tiny_index: Path, make_client) -> None:
    client = make_client(tiny_index, read_only=True)
    doc = {"id": "x", "text": NEW_TEXT}
    assert_error_shape(client.put("/documents", json={"documents": [doc]}), 403, "forbidden")
    assert_error_shape(client.delete("/documents/x"), 403, "forbidden")
    assert client.get("/ready").json()["read_only"] is True
    assert client.get("/documents/x").status_code == 404  # reads still work


def test_metadata_over_limit_is_413(fresh_index: Path, make_client) -> None:
    client = make_client(fresh_index, max_metadata_bytes=100)
    doc = {"id": "m", "text": NEW_TEXT, "metadata": {"blob": "x" * 200}}
    assert_error_shape(client.put("/documents", json={"documents": [doc]}), 413, "payload_too_large")


def test_concurrent_writes_group_commit_and_all_land(fresh_index: Path, make_client) -> None:
    client = make_client(fresh_index)
    gen0 = client.get("/ready").json()["generation"]

    def put(i: int) -> dict[str, Any]:
        doc = {
            "id": f"c{i}",
            "text": f"the cat {'runs' if i % 2 else 'sleeps'} in the park .",
            "metadata": {"i": i},
        }
        resp = client.put("/documents", json={"documents": [doc]})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(put, range(24)))
    ready = client.get("/ready").json()
    assert ready["documents"] == 74
    assert all(gen0 < a["generation"] <= ready["generation"] for a in answers)
    assert ready["generation"] - gen0 <= 24  # group commit may fold several writes into one
    for i in range(24):
        assert client.get(f"/documents/c{i}").json()["metadata"] == {"i": i}


def test_searches_never_see_half_a_batch(fresh_index: Path, make_client) -> None:
    """Each upsert adds 5 documents with one marker; a concurrent filtered search sees all 5 or none."""
    client = make_client(fresh_index)
    rounds = 8

    def writer() -> None:
        for r in range(rounds):
            docs = [{"id": f"b{r}-{j}", "text": NEW_TEXT, "metadata": {"batch": r}} for j in range(5)]
            assert client.put("/documents", json={"documents": docs}).status_code == 200

    seen: list[int] = []

    def reader() -> None:
        for _ in range(60):
            for r in range(rounds):
                n = len(_search(client, NEW_TEXT, k=10, filter={"batch": r}))
                seen.append(n)
                assert n in (0, 5), f"batch {r}: saw {n} of 5 documents"

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(writer), pool.submit(reader), pool.submit(reader)]
        for f in futures:
            f.result(timeout=120)
    assert 5 in seen


def test_a_write_from_the_cli_meanwhile_is_not_lost(fresh_index: Path, make_client, tiny_encoder) -> None:
    """The indexer publishes a generation behind the service's back; the service's next write
    starts from it (not from its stale in-memory copy), so both changes survive."""
    from core.index.doc_store import Document
    from core.index.mutable import MutableIndex

    client = make_client(fresh_index)
    with MutableIndex(fresh_index) as index:
        index.upsert([Document("cli-1", NEW_TEXT)], tiny_encoder.encode([NEW_TEXT]))
    resp = client.put("/documents", json={"documents": [{"id": "svc-1", "text": NEW_TEXT}]})
    assert resp.status_code == 200
    assert client.get("/documents/cli-1").status_code == 200
    assert client.get("/documents/svc-1").status_code == 200
    assert client.get("/ready").json()["documents"] == 52
    reader = IndexFolder.open(fresh_index)  # what another process opening the folder sees
    assert (reader.count, {reader.get("cli-1") is not None, reader.get("svc-1") is not None}) == (52, {True})
    reader.close()


def test_upsert_with_its_own_vector_stores_that_vector_not_the_texts(fresh_index: Path, make_client) -> None:
    client = make_client(fresh_index)
    other = "a green frog jumps over the old wall ."
    emb = client.post("/embed", json={"texts": [other]}).json()["embeddings"][0]
    given = [3.0 * x for x in emb]  # not unit length: the index is normalised, so it is scaled
    docs = [
        {"id": "own-vec", "text": NEW_TEXT, "metadata": {}, "vector": given},
        {"id": "encoded", "text": NEW_TEXT, "metadata": {}},  # the same request may mix both
    ]
    resp = client.put("/documents", json={"documents": docs})
    assert resp.status_code == 200, resp.text
    assert resp.json()["upserted"] == 2

    top = _search(client, other, k=1, hybrid=False)[0]  # dense: the score is the cosine
    assert top["id"] == "own-vec" and abs(top["score"] - 1.0) < 1e-4  # searched by the given vector
    assert _search(client, NEW_TEXT, k=1)[0]["id"] == "encoded"
    assert client.get("/documents/own-vec").json() == {"id": "own-vec", "text": NEW_TEXT, "metadata": {}}
    on_disk = IndexFolder.open(fresh_index)  # durable like any other write
    assert on_disk.get("own-vec") is not None
    on_disk.close()


def test_a_bad_given_vector_is_422_and_nothing_of_its_request_is_stored(
    fresh_index: Path, make_client
) -> None:
    client = make_client(fresh_index)
    dim = client.post("/embed", json={"texts": ["x"]}).json()["dim"]
    good = {"id": "good", "text": NEW_TEXT, "metadata": {}}
    bad_vectors = {
        "short": [0.1] * (dim - 1),
        "long": [0.1] * (dim + 1),
        "zeros": [0.0] * dim,
        "overflows float32": [1e300] + [0.0] * (dim - 1),
        "rounds to zero": [1e-60] * dim,
        "not numbers": ["a"] * dim,
        "too long for any index": [0.1] * 9000,
    }
    before = client.get("/ready").json()
    for what, vector in bad_vectors.items():
        bad = {"id": "bad", "text": NEW_TEXT, "metadata": {}, "vector": vector}
        resp = client.put("/documents", json={"documents": [good, bad]})
        assert "vector" in assert_error_shape(resp, 422)["message"], what
    after = client.get("/ready").json()
    assert (after["documents"], after["generation"]) == (before["documents"], before["generation"])
    assert_error_shape(client.get("/documents/good"), 404, "not_found")
