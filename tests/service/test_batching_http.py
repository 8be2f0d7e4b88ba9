"""Micro-batching through HTTP: concurrent callers each get their own answer, and they did share calls."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import tiny_corpus_docs


def _batch_counts(metrics_text: str) -> tuple[float, float]:
    """(model calls, requests served by them) from the batch histograms."""
    calls = requests = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "semsearch_batch_requests_count":
                calls = s.value
            if s.name == "semsearch_batch_requests_sum":
                requests = s.value
    return calls, requests


def test_concurrent_callers_get_their_own_results(tiny_index: Path, make_client, tiny_encoder) -> None:
    client = make_client(tiny_index, batch_max_wait_ms=20)
    texts = [d["text"] for d in tiny_corpus_docs()[:40]]
    expected = tiny_encoder.encode(texts)

    def embed(i: int) -> np.ndarray:
        resp = client.post("/embed", json={"texts": [texts[i]]})
        assert resp.status_code == 200, resp.text
        return np.array(resp.json()["embeddings"][0], dtype=np.float32)

    def search(i: int) -> str:
        resp = client.post("/search", json={"query": texts[i], "k": 1})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["hits"][0]["id"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        got = list(pool.map(embed, range(len(texts))))
        ids = list(pool.map(search, range(len(texts))))
    for i, vec in enumerate(got):
        np.testing.assert_allclose(vec, expected[i], atol=1e-5, err_msg=f"caller {i} got another's vector")
    assert ids == [d["id"] for d in tiny_corpus_docs()[:40]]
    calls, requests = _batch_counts(client.get("/metrics").text)
    assert requests == 80
    assert calls < requests, "no model call was shared"


def test_full_queue_answers_429_with_retry_after(tiny_index: Path, make_client, monkeypatch) -> None:
    client = make_client(tiny_index, queue_max=1, micro_batching=False)
    encoder = client.app.state.engine.encoder
    slow = encoder.encode_detailed

    def slow_encode(*args, **kwargs):  # a model call that takes long enough for callers to pile up
        time.sleep(0.3)
        return slow(*args, **kwargs)

    monkeypatch.setattr(encoder, "encode_detailed", slow_encode)

    def search(_: int):
        return client.post("/search", json={"query": "the cat"})

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(search, range(6)))
    codes = sorted(r.status_code for r in answers)
    assert 200 in codes and 429 in codes, codes
    refused = next(r for r in answers if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"
