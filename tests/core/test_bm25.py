"""core.index.bm25: bm25s's scores from postings, and a shard scored with the whole corpus's
statistics scores as the whole corpus does."""

from __future__ import annotations

import bm25s
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.index.bm25 import Postings, TermStats

WORDS = [
    "insulin",
    "diabetes",
    "heart",
    "lung",
    "cell",
    "gene",
    "protein",
    "tumour",
    "blood",
    "kidney",
    "liver",
    "brain",
    "dose",
    "trial",
]


def _corpus(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [list(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(n)]


def test_scores_are_bm25s_scores() -> None:
    docs = _corpus(300, 0)
    reference = bm25s.BM25()  # its defaults: Lucene's variant, k1 1.5, b 0.75
    reference.index(
        bm25s.tokenize([" ".join(d) for d in docs], stopwords=None, show_progress=False), show_progress=False
    )
    postings = Postings.build(docs)
    for query in (["insulin"], ["heart", "lung", "heart"], ["gene", "dose", "trial", "blood"]):
        expected = reference.get_scores(query)
        np.testing.assert_allclose(postings.scores(query), expected, rtol=1e-5, atol=1e-6)
    assert postings.scores(["unknown"]).max() == 0.0
    assert Postings.build([]).scores(["insulin"]).shape == (0,)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000), st.lists(st.sampled_from(WORDS), min_size=1, max_size=5))
def test_shards_with_summed_statistics_score_as_the_whole(shards: int, seed: int, query: list[str]) -> None:
    docs = _corpus(60, seed)
    whole = Postings.build(docs).scores(query)
    home = np.random.default_rng(seed).integers(0, shards, len(docs))
    parts = [Postings.build([d for d, h in zip(docs, home, strict=True) if h == s]) for s in range(shards)]
    stats = sum((p.stats(query) for p in parts), TermStats())
    assert stats == Postings.build(docs).stats(query)
    for s, part in enumerate(parts):
        np.testing.assert_allclose(part.scores(query, stats), whole[home == s], rtol=1e-6, atol=1e-7)
