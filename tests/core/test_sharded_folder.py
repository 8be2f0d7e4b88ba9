"""Searching a sharded index as one: dense and filtered search merge exactly, hybrid fuses once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.encoder import Encoder
from core.errors import IndexFormatError
from core.index.folder import IndexFolder
from core.index.sharded_folder import ShardedFolder, open_for_search
from core.index.sharding import ShardedManifest, shard_of
from tests.conftest import build_single_and_sharded


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_corpus: Path, tiny_encoder: Encoder
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sharded-folder")

    return build_single_and_sharded(root, tiny_model_dir, tiny_corpus, tiny_encoder)


def _pairs(hits: list[Any]) -> tuple[list[str], np.ndarray]:
    return [h.id for h in hits], np.array([h.score for h in hits])


def test_dense_and_filtered_search_equal_one_flat_index(
    both: tuple[Path, Path], tiny_encoder: Encoder, tiny_docs: list[dict[str, Any]]
) -> None:
    one, many = IndexFolder.open(both[0]), open_for_search(both[1])
    assert isinstance(many, ShardedFolder) and many.count == one.count == 50
    try:
        queries = tiny_encoder.encode([d["text"] for d in tiny_docs[::5]])
        for where in (None, {"topic": tiny_docs[12]["metadata"]["topic"]}, {"n": {"in": [3, 4]}}):
            for expected, got in zip(
                one.search(queries, 8, where=where), many.search(queries, 8, where=where), strict=True
            ):
                ids_e, s_e = _pairs(expected)
                ids_g, s_g = _pairs(got)
                assert ids_g == ids_e
                np.testing.assert_allclose(s_g, s_e, atol=1e-5)
        doc = tiny_docs[17]
        assert many.get(doc["id"]).text == doc["text"] and many.get("no-such-id") is None
    finally:
        one.close()
        many.close()


def test_one_shard_hybrid_is_the_index_s_own(both: tuple[Path, Path], tiny_encoder: Encoder) -> None:
    """The fusion code over one shard is IndexFolder's fusion exactly, every mode."""
    one = IndexFolder.open(both[0])
    alone = ShardedFolder(
        both[0],
        ShardedManifest(
            shards=1,
            model_fingerprint="",
            model_dir=None,
            dim=one.manifest.dim,
            max_seq_length=1,
            precision="fp32",
        ),
        [one],
    )
    try:
        for text in ("the red guitar in the park", "moon and star"):
            q = tiny_encoder.encode([text])[0]
            for kw in ({}, {"alpha": 0.5}, {"fusion": "rrf"}, {"where": {"n": 1}}):
                ids_e, s_e = _pairs(one.search_hybrid(q, text, 7, **kw))
                ids_g, s_g = _pairs(alone.search_hybrid(q, text, 7, **kw))
                assert ids_g == ids_e and len(ids_g) > 0
                np.testing.assert_allclose(s_g, s_e, atol=1e-6)
    finally:
        one.close()


def test_sharded_hybrid_equals_one_index_every_fusion(
    both: tuple[Path, Path], tiny_encoder: Encoder, tiny_docs: list[dict[str, Any]]
) -> None:
    """BM25 scored with the whole index's statistics, candidates merged, fused once: the same
    ids and scores as one flat index, whatever the fusion, the filter or the depth."""
    one, many = IndexFolder.open(both[0]), ShardedFolder.open(both[1])
    topic = tiny_docs[30]["metadata"]["topic"]
    try:
        for doc in tiny_docs[::7]:
            q = tiny_encoder.encode([doc["text"]])[0]
            short = " ".join(doc["text"].split()[:3])  # fewer shared terms: BM25 ranks differ
            for text in (doc["text"], short):
                # This tiny corpus is full of exactly tied BM25 scores: rrf and a shallow depth,
                # which feel their order, check that both layouts break them alike.
                for kw in ({}, {"alpha": 0.3}, {"fusion": "rrf"}, {"where": {"topic": topic}}, {"depth": 5}):
                    ids_e, s_e = _pairs(one.search_hybrid(q, text, 6, **kw))
                    ids_g, s_g = _pairs(many.search_hybrid(q, text, 6, **kw))
                    assert ids_g == ids_e, (text, kw)
                    np.testing.assert_allclose(s_g, s_e, atol=1e-5)
        # Each shard's own statistics would not do: they differ from the whole index's.
        text = tiny_docs[0]["text"]
        own = [shard.lexical().stats(text) for shard in many.shards]
        whole = one.lexical().stats(text)
        assert sum(s.docs for s in own) == whole.docs and any(s.df != whole.df for s in own)
    finally:
        one.close()
        many.close()


def test_shards_of_two_models_are_refused(both: tuple[Path, Path], tmp_path: Path) -> None:
    import json
    import shutil

    copy = tmp_path / "mixed"
    shutil.copytree(both[1], copy)
    manifest = copy / "shard-001" / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["model_fingerprint"] = "0" * 64
    manifest.write_text(json.dumps(raw))
    with pytest.raises(IndexFormatError, match="must come from one build"):
        ShardedFolder.open(copy)
    assert shard_of("x", 3) in range(3)
