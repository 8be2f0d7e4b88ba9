"""End to end with the real packaged MiniLM: build an index of 50 English documents, serve it
in-process (lifespan included) and search it with paraphrases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.encoder import Encoder
from indexer.build import BuildConfig, build_index
from service.app import create_app
from service.settings import Settings

pytestmark = pytest.mark.slow

# Paraphrases that share few words with their target document.
PARAPHRASES = [
    ("which planet in the solar system is the biggest", "astro-2"),
    ("how do I make my bread dough rise", "cook-1"),
    ("shares dropped after the interest rate increase", "fin-1"),
    ("when should I put tulips in the ground", "garden-5"),
    ("how to move my commits onto the latest main branch", "prog-3"),
]


@pytest.fixture(scope="module")
def minilm_index(tmp_path_factory, minilm_dir: Path, real_corpus: Path, minilm_encoder: Encoder) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "idx"
    report = build_index(
        BuildConfig(model=str(minilm_dir), corpus=str(real_corpus), output=str(out), progress=False),
        encoder=minilm_encoder,
    )
    assert report.manifest.count == 50
    assert report.manifest.dim == 384
    return out


@pytest.fixture(scope="module")
def client(minilm_index: Path, minilm_dir: Path) -> Iterator[TestClient]:
    app = create_app(Settings(index_dir=minilm_index, model_dir=minilm_dir, device="cpu"))
    with TestClient(app) as c:
        yield c


def test_health_and_ready(client: TestClient, minilm_encoder: Encoder) -> None:
    assert client.get("/health").status_code == 200
    resp = client.get("/ready")
    assert resp.status_code == 200
    body = resp.json()
    assert body["documents"] == 50
    assert body["dim"] == 384
    assert body["model_fingerprint"] == minilm_encoder.fingerprint


@pytest.mark.parametrize(("query", "expected"), PARAPHRASES)
def test_paraphrase_finds_the_document_at_rank_1(client: TestClient, query: str, expected: str) -> None:
    resp = client.post("/search", json={"query": query, "k": 5})
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    assert len(hits) == 5
    assert hits[0]["id"] == expected, [(h["id"], round(h["score"], 3)) for h in hits]
    assert hits[0]["metadata"] == {"topic": expected.split("-")[0]}
    assert hits[0]["score"] > hits[1]["score"]


def test_embed_returns_unit_vectors_matching_the_encoder(client: TestClient, minilm_encoder: Encoder) -> None:
    texts = ["A man is playing a guitar.", "The stock market fell today."]
    resp = client.post("/embed", json={"texts": texts})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["dim"] == 384
    assert body["truncated"] == [False, False]
    vecs = np.array(body["embeddings"], dtype=np.float32)
    assert vecs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(vecs, minilm_encoder.encode(texts), atol=1e-5)
