"""/metrics: Prometheus text with request, queue, batch and index metrics."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_requests_batches_and_index(fresh_index: Path, make_client) -> None:
    client = make_client(fresh_index)
    for _ in range(3):
        assert client.post("/search", json={"query": "the cat"}).status_code == 200
    client.post("/search", json={"query": " "})  # a 422
    client.get("/documents/nope-1")  # a 404 on a templated route
    client.get("/nope/2")  # an unknown URL: no label of its own
    client.put("/documents", json={"documents": [{"id": "m1", "text": "the dog runs ."}]})

    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    got = _samples(resp.text)
    assert (
        got[("semsearch_requests_total", (("method", "POST"), ("route", "/search"), ("status", "200")))] == 3
    )
    assert (
        got[("semsearch_requests_total", (("method", "POST"), ("route", "/search"), ("status", "422")))] == 1
    )
    assert (
        got[
            (
                "semsearch_requests_total",
                (("method", "GET"), ("route", "/documents/{doc_id}"), ("status", "404")),
            )
        ]
        == 1
    )
    assert (
        got[("semsearch_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1
    )
    assert (
        got[
            (
                "semsearch_request_duration_seconds_count",
                (("method", "POST"), ("route", "/search"), ("status", "200")),
            )
        ]
        == 3
    )
    assert got[("semsearch_batch_size_count", (("model", "encoder"),))] >= 4
    assert got[("semsearch_queue_wait_seconds_count", (("model", "encoder"),))] >= 4
    assert got[("semsearch_index_documents", ())] == 51
    assert got[("semsearch_index_generation", ())] == client.get("/ready").json()["generation"]
    assert got[("semsearch_document_writes_total", (("op", "upsert"),))] == 1
