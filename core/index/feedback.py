"""Pseudo-relevance feedback for hybrid search, the one implementation every layout calls.

A hybrid search with feedback runs twice. The first round's best ``docs`` fused hits are taken as
relevant (Rocchio, as dense retrievers' vector PRF does it: Li et al. 2022, "Pseudo relevance
feedback with deep language models and dense retrievers"): the query vector moves toward their
mean, ``q + FEEDBACK_WEIGHT * mean(v)``, rescaled to the query's own norm (1 for a normalised
index), and the second round searches with it. BM25's side is the same in both rounds: feedback
changes what the dense side finds, which is where a short query misses a document's vocabulary.

Why a second round and not a reranking of the first's candidates: the moved query finds documents
neither first list held. Its cost is one more hybrid search (no second model call), measured in
BENCHMARKS.md; ``feedback=0`` turns it off.

Every layout runs the same two rounds: one folder in ``IndexFolder.search_hybrid`` (its second
round reuses the first's BM25 list), a sharded folder by :func:`two_rounds` (the hits' vectors
from each shard), the Ray Serve engine asking its shard replicas for them
(service.ray_serve.remote_engine). All three move the query by :func:`expand`; tests check that
they return the same hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from core.errors import InvalidInputError
from core.fusion_names import DEFAULT_FUSION, FEEDBACK_WEIGHT, MAX_FEEDBACK_DOCS


class Hybrid(Protocol):
    """What feedback needs of an index: its hybrid search and its stored vectors by id."""

    def search_hybrid(
        self,
        query: np.ndarray,
        text: str,
        k: int,
        params: dict[str, Any] | None = ...,
        where: dict[str, Any] | None = ...,
        alpha: float | None = ...,
        *,
        fusion: str = ...,
    ) -> list[Any]: ...

    def vectors_of(self, doc_ids: Sequence[str]) -> np.ndarray: ...


def check_feedback(docs: int) -> None:
    if not 0 <= docs <= MAX_FEEDBACK_DOCS:
        raise InvalidInputError(f"feedback must be 0 to {MAX_FEEDBACK_DOCS} documents, got {docs}")


def expand(query: np.ndarray, vectors: np.ndarray, weight: float = FEEDBACK_WEIGHT) -> np.ndarray:
    """The query moved toward the mean of ``vectors`` (the feedback documents'), at its own norm;
    the query unchanged when there are none."""
    q = np.asarray(query, dtype=np.float64).reshape(-1)
    if not len(vectors):
        return np.asarray(query, dtype=np.float32).reshape(-1)
    moved = q + weight * np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1).mean(axis=0)
    norm, own = float(np.linalg.norm(moved)), float(np.linalg.norm(q))
    if norm <= 1e-6 * own:  # the feedback cancels the query: what is left is rounding, no direction
        return np.asarray(query, dtype=np.float32).reshape(-1)
    return (moved * (own / norm)).astype(np.float32)


def two_rounds(
    index: Hybrid,
    query: np.ndarray,
    text: str,
    k: int,
    params: dict[str, Any] | None = None,
    where: dict[str, Any] | None = None,
    alpha: float | None = None,
    fusion: str = DEFAULT_FUSION,
    feedback: int = 0,
) -> list[Any]:
    """``index.search_hybrid`` with ``feedback`` documents of pseudo-relevance feedback: a
    sharded index's (whose shards' BM25 lists are scored again in the second round). One folder
    runs the same two rounds itself, reusing its first BM25 list (core.index.folder)."""
    check_feedback(feedback)
    if feedback == 0:
        return index.search_hybrid(query, text, k, params, where, alpha, fusion=fusion)
    first = index.search_hybrid(query, text, feedback, params, where, alpha, fusion=fusion)
    moved = expand(query, index.vectors_of([hit.id for hit in first]))
    return index.search_hybrid(moved, text, k, params, where, alpha, fusion=fusion)
