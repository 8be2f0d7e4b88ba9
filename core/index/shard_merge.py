"""Merging shards' answers into the one index's answer: the same code for shards searched in
this process (core.index.sharded_folder) and for shards searched by other processes (the Ray
Serve searchers, service.ray_serve), so the two can never rank differently.

A shard answers a hybrid search with a :class:`HybridPart`: its own dense and BM25 candidate
lists (``n`` each, BM25 scored with the whole index's statistics), plus both scores of every one
of its candidates. That is everything the fusion needs: a document in the whole index's dense
(or BM25) top n is in its own shard's dense (or BM25) top n, so the fused union is covered by
the shards' candidates, and no shard is asked a second time for a score. Candidates are named by
a global id, ``int id * shards + shard``; a part that travels between processes also carries
its candidates' external ids (``doc_ids``), by which the hits' documents are then fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from core.index.lexical import Ranked, fuse


class _Scored(Protocol):
    score: float


H = TypeVar("H", bound=_Scored)  # a hit (core.index.folder.Hit; not imported: it imports this)


@dataclass
class HybridPart:
    dense: Ranked  # the shard's dense candidates, best first (int ids, float32 scores)
    bm25: Ranked  # its BM25 candidates, best first, with their tie keys
    union: np.ndarray  # int64, sorted: every candidate of either list
    union_dense: np.ndarray  # float64 dense score per union member (empty for rrf: unused)
    union_bm25: np.ndarray  # float32 BM25 score per union member (empty for rrf)
    doc_ids: list[str] | None = None  # external id per union member, where asked for


def top_scored(
    scores: np.ndarray, gids: np.ndarray, n: int, ties: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` by score; equal scores by ``ties`` (BM25's tie keys), else in the order
    given (shard order, then each shard's own)."""
    order = np.argsort(-scores, kind="stable") if ties is None else np.lexsort((ties, -scores))
    return scores[order[:n]], gids[order[:n]]


def merge_dense(per_shard: Sequence[list[list[H]]], k: int) -> list[list[H]]:
    """Every shard's top k per query, merged by score (ties stay in shard order)."""
    if not per_shard:
        return []
    merged: list[list[H]] = []
    for q in range(len(per_shard[0])):
        hits = [h for shard_hits in per_shard for h in shard_hits[q]]
        hits.sort(key=lambda h: -h.score)  # stable
        merged.append(hits[:k])
    return merged


def merge_hybrid(parts: Sequence[HybridPart], n: int, fusion: str, alpha: float | None) -> Ranked:
    """The shards' parts fused once over the whole: global ids (``iid * shards + shard``), best
    first, at most ``n``."""
    size = len(parts)

    def gids(lists: Sequence[Ranked]) -> np.ndarray:
        return np.concatenate([r.iids.astype(np.int64) * size + i for i, r in enumerate(lists)])

    _, d_gids = top_scored(np.concatenate([p.dense.scores for p in parts]), gids([p.dense for p in parts]), n)
    ties = [p.bm25.ties for p in parts]
    _, b_gids = top_scored(
        np.concatenate([p.bm25.scores for p in parts]),
        gids([p.bm25 for p in parts]),
        n,
        np.concatenate(ties) if all(t is not None for t in ties) else None,  # type: ignore[arg-type]
    )

    def scores_of(union: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dense = np.empty(len(union), np.float64)
        lexical = np.empty(len(union), np.float32)
        for i, part in enumerate(parts):
            mine = union % size == i
            if mine.any():
                rows = np.searchsorted(part.union, union[mine] // size)
                dense[mine], lexical[mine] = part.union_dense[rows], part.union_bm25[rows]
        return dense, lexical

    return fuse(d_gids, b_gids, n, fusion, alpha, scores_of)


def split_gid(gid: int, shards: int) -> tuple[int, int]:
    """(shard, int id in that shard) of a global id."""
    return gid % shards, gid // shards


def part_doc_id(part: HybridPart, iid: int) -> str | None:
    """The external id of one of the part's candidates (it carries them: ``doc_ids``)."""
    if part.doc_ids is None:
        return None
    row = int(np.searchsorted(part.union, iid))
    if row < len(part.union) and int(part.union[row]) == iid:
        return part.doc_ids[row]
    return None
