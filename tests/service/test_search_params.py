"""Per-request nprobe / ef_search overrides on /search."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from indexer.build import BuildConfig, build_index
from service.app import create_app
from service.settings import Settings


def test_ef_search_override_and_bounds(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder, tiny_corpus, tiny_docs
):
    out = tmp_path / "idx"
    cfg = BuildConfig(
        model=str(tiny_model_dir), corpus=str(tiny_corpus), output=str(out), index_type="hnsw", progress=False
    )
    build_index(cfg, tiny_encoder)
    with TestClient(create_app(Settings(index_dir=out, model_dir=tiny_model_dir))) as client:
        query = tiny_docs[7]["text"]
        r = client.post("/search", json={"query": query, "k": 3, "ef_search": 128})
        assert r.status_code == 200
        assert r.json()["hits"][0]["id"] == tiny_docs[7]["id"]
        for bad in ({"ef_search": 0}, {"nprobe": -1}, {"nprobe": 10**9}):
            r = client.post("/search", json={"query": query, **bad})
            assert r.status_code == 422
            assert r.json()["error"]["code"] == "validation_error"
