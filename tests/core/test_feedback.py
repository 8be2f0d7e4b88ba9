"""Pseudo-relevance feedback (core.index.feedback): the moved query, and the same two rounds in
one folder and in a sharded index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.encoder import Encoder
from core.errors import InvalidInputError
from core.fusion_names import MAX_FEEDBACK_DOCS
from core.index.doc_store import Document
from core.index.feedback import check_feedback, expand, two_rounds
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.sharded_folder import ShardedFolder
from core.index.writer import IndexWriter
from core.unit_vectors import l2_normalise
from tests.conftest import build_single_and_sharded

finite = st.floats(-1, 1, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, 8, elements=finite), arrays(np.float32, (3, 8), elements=finite))
def test_the_moved_query_keeps_its_norm_and_nears_the_feedback(q: np.ndarray, docs: np.ndarray) -> None:
    if np.linalg.norm(q) < 1e-3 or np.linalg.norm(docs.mean(0)) < 1e-3:
        return
    moved = expand(q, docs)
    assert moved.dtype == np.float32 and moved.shape == (8,)
    np.testing.assert_allclose(np.linalg.norm(moved), np.linalg.norm(q), rtol=1e-4)
    centre = docs.mean(0)

    def cos(a: np.ndarray) -> float:
        return float(a @ centre / (np.linalg.norm(a) * np.linalg.norm(centre)))

    assert cos(moved) >= cos(q) - 1e-5


def test_no_feedback_documents_leave_the_query_as_it_is() -> None:
    q = l2_normalise(np.ones((1, 4)))[0]
    assert np.array_equal(expand(q, np.empty((0, 4), np.float32)), q)
    assert np.array_equal(expand(q, -q[None, :] / 1.5), q)  # a centroid that cancels it: unchanged


def test_feedback_bounds() -> None:
    check_feedback(0)
    check_feedback(MAX_FEEDBACK_DOCS)
    for bad in (-1, MAX_FEEDBACK_DOCS + 1):
        with pytest.raises(InvalidInputError, match="feedback"):
            check_feedback(bad)


def test_feedback_finds_a_document_near_the_first_hits_that_the_query_alone_misses(tmp_path: Path) -> None:
    """d0..d2 match the query; d3 lies where they lie but far from the query itself and shares
    no term: the query alone ranks it below the distractors, the moved query finds it."""
    rng = np.random.default_rng(0)
    dim = 16
    topic, query = np.zeros(dim), np.zeros(dim)
    topic[0], query[0], query[1] = 1.0, 0.5, 0.866
    vectors = [topic + 0.8 * query + 0.02 * rng.standard_normal(dim) for _ in range(3)]  # cos 0.83
    vectors.append(topic + 0.02 * rng.standard_normal(dim))  # d3: cos 0.5 to the query
    for j in range(8):  # distractors: cos 0.8 to the query, off the topic
        v = np.zeros(dim)
        v[1], v[2 + j] = 1.0, 0.4
        vectors.append(v)
    texts = ["aspirin fever"] * 3 + ["salicylate pyrexia"] + ["aspirin"] * 8
    manifest = Manifest(model_fingerprint="f" * 64, dim=dim, normalized=True, count=0, max_seq_length=16)
    with IndexWriter(tmp_path / "idx", manifest) as writer:
        writer.add([Document(f"d{i}", t, {}) for i, t in enumerate(texts)], l2_normalise(np.array(vectors)))
        writer.commit()
    folder = IndexFolder.open(tmp_path / "idx")
    try:
        q = l2_normalise(query[None, :])[0]
        plain = [h.id for h in folder.search_hybrid(q, "aspirin fever", 4, feedback=0)]
        moved = [h.id for h in folder.search_hybrid(q, "aspirin fever", 4, feedback=3)]
        assert moved == [h.id for h in two_rounds(folder, q, "aspirin fever", 4, feedback=3)]
        assert "d3" not in plain and "d3" in moved
        assert plain == [h.id for h in folder.search_hybrid(q, "aspirin fever", 4)]  # 0: one round
        assert {"d0", "d1", "d2"} <= set(moved)
        found = folder.vectors_of(["d2", "gone", "d0"])
        assert found.shape == (2, dim)
    finally:
        folder.close()


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_corpus: Path, tiny_encoder: Encoder
) -> tuple[Path, Path]:
    return build_single_and_sharded(
        tmp_path_factory.mktemp("feedback"), tiny_model_dir, tiny_corpus, tiny_encoder
    )


def test_sharded_feedback_equals_one_index(
    both: tuple[Path, Path], tiny_encoder: Encoder, tiny_docs: list[dict[str, Any]]
) -> None:
    one, many = IndexFolder.open(both[0]), ShardedFolder.open(both[1])
    try:
        ids = [d["id"] for d in tiny_docs[:9]]
        np.testing.assert_allclose(
            np.sort(many.vectors_of(ids), axis=0), np.sort(one.vectors_of(ids), axis=0), atol=1e-6
        )
        for doc in tiny_docs[::7]:
            q = tiny_encoder.encode([doc["text"]])[0]
            for kw in ({"feedback": 3}, {"feedback": 5, "alpha": 0.5}, {"feedback": 2, "fusion": "rrf"}):
                # One folder's own two rounds (the first BM25 list reused), the generic two rounds
                # over the same folder, and a sharded index's: the same hits and scores.
                expected = one.search_hybrid(q, doc["text"], 6, **kw)
                for got in (
                    two_rounds(one, q, doc["text"], 6, **kw),
                    many.search_hybrid(q, doc["text"], 6, **kw),
                ):
                    assert [h.id for h in got] == [h.id for h in expected], kw
                    np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)
            deep = one.search_hybrid(q, doc["text"], 150, feedback=3)  # k past the depth: two rounds
            assert [h.id for h in deep] == [h.id for h in two_rounds(one, q, doc["text"], 150, feedback=3)]
    finally:
        one.close()
        many.close()
