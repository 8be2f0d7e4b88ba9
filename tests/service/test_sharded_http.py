"""``semsearch serve`` over a sharded index folder: the same HTTP contract as over one index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.encoder import Encoder
from core.index.folder import IndexFolder
from core.index.sharding import ShardedManifest, shard_of
from indexer.update import add_corpus
from tests.conftest import build_single_and_sharded
from tests.service.helpers import assert_error_shape


@pytest.fixture
def indexes(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path, tiny_encoder: Encoder
) -> tuple[Path, Path]:
    return build_single_and_sharded(tmp_path, tiny_model_dir, tiny_corpus, tiny_encoder)


def _hits(client: Any, **body: Any) -> tuple[list[str], np.ndarray]:
    resp = client.post("/search", json=body)
    assert resp.status_code == 200, resp.text
    hits = resp.json()["hits"]
    return [h["id"] for h in hits], np.array([h["score"] for h in hits])


def test_search_over_shards_equals_one_index(
    indexes: tuple[Path, Path], make_client, tiny_docs: list[dict[str, Any]]
) -> None:
    one, many = make_client(indexes[0]), make_client(indexes[1])
    assert many.get("/ready").json()["documents"] == 50
    topic = tiny_docs[20]["metadata"]["topic"]
    for doc in tiny_docs[::6]:
        for extra in (
            {},
            {"filter": {"topic": topic}},
            {"hybrid": True},
            {"hybrid": True, "fusion": "rrf"},
            {"hybrid": True, "filter": {"topic": topic}},
        ):
            ids_e, s_e = _hits(one, query=doc["text"], k=8, **extra)
            ids_g, s_g = _hits(many, query=doc["text"], k=8, **extra)
            assert ids_g == ids_e
            np.testing.assert_allclose(s_g, s_e, atol=1e-5)
    assert many.get(f"/documents/{tiny_docs[7]['id']}").json()["text"] == tiny_docs[7]["text"]
    assert_error_shape(many.get("/documents/no-such-id"), 404, "not_found")


def test_writes_land_on_their_shard_and_survive_a_restart(
    indexes: tuple[Path, Path], make_client, tiny_model_dir: Path, jsonl_writer, tmp_path: Path
) -> None:
    sharded = indexes[1]
    client = make_client(sharded)
    docs = [{"id": f"w{i}", "text": f"the red guitar number {i} in the park ."} for i in range(8)]
    resp = client.put("/documents", json={"documents": docs})
    assert resp.status_code == 200, resp.text
    assert resp.json()["upserted"] == 8
    assert client.get("/ready").json()["documents"] == 58
    assert {d["id"] for d in docs} <= set(_hits(client, query=docs[3]["text"], k=10)[0])
    assert client.delete("/documents/w5").status_code == 200
    assert_error_shape(client.delete("/documents/w5"), 404, "not_found")
    # Acknowledged means durable, in the shard the id routes to and in no other.
    paths = ShardedManifest.read(sharded).shard_paths(sharded)
    for doc in docs:
        for i, path in enumerate(paths):
            folder = IndexFolder.open(path)
            try:
                present = folder.get(doc["id"]) is not None
            finally:
                folder.close()
            assert present == (i == shard_of(doc["id"], 3) and doc["id"] != "w5")
    # Another writer (index add) then a reload: the service sees it, shard by shard.
    add_corpus(
        sharded, jsonl_writer(tmp_path / "more.jsonl", [{"id": "cli-1", "text": "a blue moon"}]), device="cpu"
    )
    reloaded = client.post("/admin/reload")
    assert reloaded.status_code == 200 and reloaded.json()["reloaded"] is True
    assert client.get("/documents/cli-1").status_code == 200
    restarted = make_client(sharded)
    assert restarted.get("/ready").json()["documents"] == 58
    assert restarted.get("/documents/w7").json()["text"] == docs[7]["text"]
