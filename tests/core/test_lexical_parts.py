"""core.index.lexical_parts: a generation's BM25 made from the previous one's parts plus the
documents written since scores and ranks exactly as one built from scratch, tokenises only the
new documents, and keeps its parts few."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.index import lexical as lexical_mod
from core.index.bm25 import Postings
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.lexical import LexicalIndex
from core.index.lexical_parts import MAX_PARTS

WORDS = ["insulin", "diabetes", "heart", "lung", "cells", "gene", "protein", "tumour", "blood", "kidney"]
QUERIES = ["insulin", "heart lung heart", "gene protein tumour blood", "kidney cells diabetes", "absent"]


def _text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 12))))


def _assert_same(got: LexicalIndex, want: LexicalIndex, live: np.ndarray) -> None:
    assert got.docs == want.docs == len(live)
    for query in QUERIES:
        assert got.stats(query) == want.stats(query)
        a, b = got.search([query], 1000)[0], want.search([query], 1000)[0]
        assert a.iids.tolist() == b.iids.tolist(), query
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
        np.testing.assert_allclose(got.scores_for(query, live), want.scores_for(query, live), rtol=1e-6)
        allowed = live[::3]
        c, d = got.search([query], 5, allowed)[0], want.search([query], 5, allowed)[0]
        assert c.iids.tolist() == d.iids.tolist()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(0, 10_000),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), min_size=1, max_size=12),
)
def test_each_generation_built_from_the_last_equals_a_rebuild(tmp_path: Path, seed: int, steps) -> None:
    """Generations of adds, deletes and replacements (a replaced document is a new int id)
    through a real document store: the incremental index equals the rebuilt one at each."""
    rng = np.random.default_rng(seed)
    path = Path(tempfile.mkdtemp(dir=tmp_path)) / DOCS_FILE  # one per example
    store = DocStore(path)
    next_iid, live_ids = 0, {}
    previous = None
    try:
        for generation, (adds, deletes) in enumerate(steps, start=1):
            dead = [live_ids.pop(i) for i in rng.permutation(sorted(live_ids))[:deletes]]
            added = []
            for _ in range(adds):
                doc_id = f"d{rng.integers(60)}"  # sometimes one that exists: a replacement
                if any(d.id == doc_id for _, d in added):
                    continue
                if doc_id in live_ids:
                    dead.append(live_ids.pop(doc_id))
                added.append((next_iid, Document(doc_id, _text(rng))))
                live_ids[doc_id] = next_iid
                next_iid += 1
            store.apply(generation, added, dead)
            view = store.view(generation)
            try:
                live = view.live_iid_array()
                assert sorted(live.tolist()) == sorted(live_ids.values())
                built = LexicalIndex.build(view, previous)
                _assert_same(built, LexicalIndex.build(view), live)
                assert len(built.parts) <= MAX_PARTS
                previous = built
            finally:
                view.close()
    finally:
        store.close()


def test_only_the_documents_written_since_are_tokenised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    store = DocStore(tmp_path / DOCS_FILE)
    store.apply(1, [(i, Document(f"d{i}", _text(rng))) for i in range(400)])
    first = LexicalIndex.build(store.view(1))
    seen: list[int] = []
    real = lexical_mod._tokenize
    monkeypatch.setattr(
        lexical_mod, "_tokenize", lambda texts, stemmer: (seen.append(len(texts)), real(texts, stemmer))[1]
    )
    store.apply(2, [(400, Document("new", "zebrafish insulin kidney"))], [5, 7])
    second = LexicalIndex.build(store.view(2), first)
    assert seen == [1]  # the one new document
    assert second.search(["zebrafish"], 5)[0].iids.tolist() == [400]
    assert not set(second.search(["insulin kidney heart"], 400)[0].iids.tolist()) & {5, 7}
    # Most of the corpus new: a fresh build, one part.
    store.apply(3, [(401 + i, Document(f"n{i}", _text(rng))) for i in range(800)])
    third = LexicalIndex.build(store.view(3), second)
    assert len(third.parts) == 1 and third.docs == 1199
    store.close()


def test_single_writes_keep_the_parts_logarithmic(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    store = DocStore(tmp_path / DOCS_FILE)
    store.apply(1, [(i, Document(f"d{i}", _text(rng))) for i in range(1000)])
    index = LexicalIndex.build(store.view(1))
    most = 0
    for g in range(2, 202):
        # One in, and the one written before out (every tenth write: one of the first thousand).
        out = [g] if g % 10 == 0 else [1000 + g - 1] if g > 2 else []
        store.apply(g, [(1000 + g, Document(f"w{g}", _text(rng)))], out)
        index = LexicalIndex.build(store.view(g), index)
        most = max(most, len(index.parts))
    assert most <= 10  # ~log2(200) trailing parts at worst, not one per write
    assert index.docs == store.view(201).count() == 1001
    assert index.count < 1000 + 60  # the written ones' deleted rows were dropped by merges
    store.close()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_merged_postings_are_the_live_documents_postings(seed: int, parts: int) -> None:
    rng = np.random.default_rng(seed)
    docs = [list(rng.choice(WORDS, size=int(rng.integers(0, 10)))) for _ in range(40)]
    cut = np.sort(rng.integers(0, len(docs), parts - 1))
    pieces, kept = [], []
    for chunk in np.split(np.arange(len(docs)), cut):
        dead = chunk[rng.random(len(chunk)) < 0.3]
        pieces.append(Postings.build([docs[i] for i in chunk]).without(np.searchsorted(chunk, dead)))
        kept += [docs[i] for i in chunk if i not in set(dead.tolist())]
    merged, want = Postings.merge(pieces), Postings.build(kept)
    assert merged.count == want.count == merged.docs
    for query in (["insulin"], ["heart", "lung", "heart"], WORDS[:5]):
        assert merged.stats(query) == want.stats(query)
        np.testing.assert_allclose(merged.scores(query), want.scores(query), rtol=1e-6)
