"""BM25 (bm25s) over an index folder and its fusion with dense search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInputError
from core.index.doc_store import Document
from core.index.folder import IndexFolder
from core.index.lexical import RRF_K, mix, rrf
from core.index.manifest import Manifest
from core.index.mutable import MutableIndex
from core.index.writer import IndexWriter

DIM = 8
TEXTS = [
    "aspirin reduces fever and pain",
    "the heart pumps blood through arteries",
    "insulin regulates blood sugar in diabetes",
    "running improves heart health",
    "fever in children is often viral",
    "arteries harden with age",
]


@pytest.fixture
def folder(tmp_path: Path) -> IndexFolder:
    vectors = np.random.default_rng(0).standard_normal((len(TEXTS), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    manifest = Manifest(model_fingerprint="f" * 64, dim=DIM, normalized=True, count=0, max_seq_length=16)
    with IndexWriter(tmp_path / "idx", manifest) as writer:
        docs = [Document(f"d{i}", t, {"even": i % 2 == 0}) for i, t in enumerate(TEXTS)]
        writer.add(docs, vectors)
        writer.commit()
    opened = IndexFolder.open(tmp_path / "idx")
    yield opened
    opened.close()


def test_bm25_finds_term_matches_with_stemming_and_stopwords(folder: IndexFolder) -> None:
    lexical = folder.lexical()
    assert lexical is folder.lexical()  # built once per generation
    ranked = lexical.search(["the fevers"], 10)[0]  # "the" is a stopword; fevers -> fever
    assert sorted(folder.store.get_many(ranked.iids.tolist())[i].id for i in ranked.iids) == ["d0", "d4"]
    assert np.all(ranked.scores > 0) and list(ranked.scores) == sorted(ranked.scores, reverse=True)
    assert len(lexical.search(["zebra"], 10)[0].iids) == 0  # no shared term, no candidate
    allowed = folder.store.matching_iids({"even": True})
    only_even = lexical.search(["heart"], 10, allowed)[0]
    assert [folder.store.get_many([int(i)])[int(i)].id for i in only_even.iids] == []  # d1, d3 are odd


def test_rrf_and_mix_by_hand() -> None:
    fused = rrf([np.array([1, 2, 3]), np.array([3, 1])], 3)
    expected = {
        1: 1 / (RRF_K + 1) + 1 / (RRF_K + 2),
        2: 1 / (RRF_K + 2),
        3: 1 / (RRF_K + 3) + 1 / (RRF_K + 1),
    }
    assert fused.iids.tolist() == [1, 3, 2]
    assert np.allclose(fused.scores, [expected[1], expected[3], expected[2]])
    mixed = mix(np.array([7, 8, 9]), np.array([0.9, 0.5, 0.1]), np.array([0.0, 10.0, 5.0]), 0.5, 3)
    # normalised: dense [1, .5, 0], bm25 [0, 1, .5] -> [.5, .75, .25]
    assert mixed.iids.tolist() == [8, 7, 9]
    assert np.allclose(mixed.scores, [0.75, 0.5, 0.25])


def test_hybrid_search_brings_lexical_matches_and_respects_filters(folder: IndexFolder) -> None:
    query = folder.vectors.reconstruct(np.array([5]))[0]  # densely nearest: d5 itself
    hits = folder.search_hybrid(query, "insulin diabetes", 3, fusion="rrf")
    ids = [h.id for h in hits]
    assert ids[:2] == ["d5", "d2"] or ids[:2] == ["d2", "d5"]  # top of each ranking
    convex = folder.search_hybrid(query, "insulin diabetes", 6)  # the default: 0.8 dense, 0.2 BM25
    assert convex[0].id == "d5" and "d2" in [h.id for h in convex]
    assert [h.id for h in convex] == [
        h.id for h in folder.search_hybrid(query, "insulin diabetes", 6, alpha=0.8)
    ]
    with pytest.raises(InvalidInputError, match="rrf takes no alpha"):
        folder.search_hybrid(query, "insulin diabetes", 3, alpha=0.5, fusion="rrf")
    alpha_dense = folder.search_hybrid(query, "insulin diabetes", 1, alpha=1.0)
    alpha_lexical = folder.search_hybrid(query, "insulin diabetes", 1, alpha=0.0)
    assert alpha_dense[0].id == "d5" and alpha_lexical[0].id == "d2"
    filtered = folder.search_hybrid(query, "insulin diabetes", 6, where={"even": True})
    assert {h.id for h in filtered} <= {"d0", "d2", "d4"} and "d2" in {h.id for h in filtered}


def test_each_generation_gets_its_own_bm25(folder: IndexFolder, tmp_path: Path) -> None:
    assert folder.lexical().count == 6
    with MutableIndex(folder.path) as index:
        index.upsert([Document("new", "zebra stripes", {})], np.ones((1, DIM), np.float32) / np.sqrt(DIM))
        index.delete(["d0"])
    fresh = IndexFolder.open(folder.path)
    try:
        assert fresh.lexical().count == 6
        query = np.ones(DIM, np.float32) / np.sqrt(DIM)
        assert fresh.search_hybrid(query, "zebra", 1)[0].id == "new"
        assert "d0" not in {h.id for h in fresh.search_hybrid(query, "aspirin fever", 6)}
    finally:
        fresh.close()


def test_an_advanced_snapshot_builds_bm25_from_the_last_one_s_parts(
    folder: IndexFolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot advanced past a write tokenises only the written document, not the corpus,
    and searches as a fresh open of the same generation does."""
    from core.index import lexical as lexical_mod

    snapshot = IndexFolder.open(folder.path)
    snapshot.lexical()
    with MutableIndex(folder.path) as index:
        index.upsert([Document("new", "zebra stripes", {})], np.ones((1, DIM), np.float32) / np.sqrt(DIM))
        index.delete(["d0"])
    seen: list[int] = []
    real = lexical_mod._tokenize
    monkeypatch.setattr(lexical_mod, "_tokenize", lambda t, s: (seen.append(len(t)), real(t, s))[1])
    nxt = snapshot.advance()
    fresh = IndexFolder.open(folder.path)
    try:
        assert nxt.generation == fresh.generation > snapshot.generation
        assert len(nxt.lexical().parts) == 2 and seen == [1]
        query = np.ones(DIM, np.float32) / np.sqrt(DIM)
        for text in ("zebra", "aspirin fever", "stripes zebra aspirin"):
            assert [(h.id, round(h.score, 5)) for h in nxt.search_hybrid(query, text, 6)] == [
                (h.id, round(h.score, 5)) for h in fresh.search_hybrid(query, text, 6)
            ]
    finally:
        for f in {id(x): x for x in (snapshot, nxt, fresh)}.values():
            f.close()


def test_bm25_tokenises_cjk_per_character_and_other_text_as_before() -> None:
    import bm25s

    from core.index.lexical import TOKEN_PATTERN, LexicalIndex

    english = [
        "The patients' blood-pressure fell 12% in 2019, don't x y_z café naïve",
        "Glaciers are retreating faster than scientists predicted a decade ago.",
    ]
    ours = bm25s.tokenize(english, token_pattern=TOKEN_PATTERN, return_ids=False, show_progress=False)
    default = bm25s.tokenize(english, return_ids=False, show_progress=False)
    assert [list(t) for t in ours] == [list(t) for t in default]
    mixed = bm25s.tokenize(["iphone手机怎么开通花呗？"], token_pattern=TOKEN_PATTERN, return_ids=False)
    assert list(mixed[0]) == ["iphone", "手", "机", "怎", "么", "开", "通", "花", "呗"]
    # Real LCQMC questions: an unspaced sentence is no longer one "word" that nothing else matches.
    docs = ["开初婚未育证明怎么弄？", "谁知道她是网络美女吗？", "花呗怎么开通", "人和畜生的区别是什么？"]
    lexical = LexicalIndex.from_texts([10, 11, 12, 13], docs)
    assert lexical.search(["婚育证明"], 4)[0].iids.tolist() == [10]
    assert lexical.search(["怎么开通花呗"], 1)[0].iids.tolist() == [12]
