"""The vectors of one generation: an immutable base FAISS index, small delta segments, and the set
of deleted ids that every search skips inside FAISS.

Online writes never touch the base (writing it again per write would cost the whole index): a
committed write's vectors become a new flat delta segment, and its deletes join :class:`Deleted`.
Compaction (core.index.compaction) later folds the deltas into a new base of the base's own type.

Int ids only grow (core.index.doc_store keeps ``next_iid``), and the base holds every id of
the generations up to its own while each delta holds a later range, so the segments are ordered
by id: an id's segment is found by binary search over their first ids.

Everything here is immutable once built, so searches of a snapshot run concurrently without locks;
a new generation is a new :class:`SegmentSet` that shares the unchanged segments.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from core.index.deleted import Deleted
from core.index.vectors import BINARY_FACTORY, FLAT_FACTORY, VectorIndex, is_binary_factory

# Trailing deltas are merged with the one before them once together they are at least half its
# size, so there are O(log n) deltas and each vector is copied O(log n) times; never more than
# this many.
MAX_DELTAS = 12
_MERGE_CHUNK = 16_384


def release_free_memory() -> bool:
    """Give the heap's free pages back to the kernel (glibc ``malloc_trim``, which also returns
    free pages in the middle of the heap). Segments under glibc's mmap threshold live in the
    heap: once a merge or a compaction frees them, their pages would otherwise stay resident.
    False off glibc."""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class SegmentSet:
    """``base`` plus ``deltas`` (ordered by id), minus ``deleted``."""

    base: VectorIndex
    deltas: tuple[VectorIndex, ...] = ()
    deleted: Deleted = field(default_factory=Deleted)
    firsts: tuple[int, ...] = ()  # each delta's first (smallest) id

    @property
    def factory(self) -> str:
        return self.base.factory

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def count(self) -> int:
        """Vectors held, deleted ones included (what a search may have to step over)."""
        return self.base.count + sum(d.count for d in self.deltas)

    def delta_count(self) -> int:
        return sum(d.count for d in self.deltas)

    def delta_factory(self) -> str:
        """Deltas are exact flat indexes, of bits for a binary base (their scores must compare)."""
        return BINARY_FACTORY if is_binary_factory(self.base.factory) else FLAT_FACTORY

    def with_tail(self, iids: np.ndarray, vectors: np.ndarray, deleted: np.ndarray) -> SegmentSet:
        """The next generation's set: ``vectors`` as a new delta, ``deleted`` added to the
        deleted ids, then small deltas merged (the merge drops their deleted vectors)."""
        dead = self.deleted.union(deleted)
        deltas, firsts = list(self.deltas), list(self.firsts)
        if len(iids):
            order = np.argsort(iids, kind="stable")
            segment = VectorIndex.create(self.dim, self.delta_factory())
            segment.add(iids[order], vectors[order])
            deltas.append(segment)
            firsts.append(int(iids[order[0]]))
        # How many trailing deltas merge (by count, before any copy), then ONE merge of them all:
        # a cascade of pairwise merges would hold each intermediate output at once.
        sizes, take = [d.count for d in deltas], 1
        while take < len(sizes) and (
            2 * sum(sizes[-take:]) >= sizes[-take - 1] or len(sizes) - take + 1 > MAX_DELTAS
        ):
            take += 1
        if take > 1:
            merged = _merge(deltas[-take:], dead, self.dim, self.delta_factory())
            deltas[-take:] = [merged] if merged is not None else []
            firsts[-take:] = [firsts[-take]] if merged is not None else []
        return SegmentSet(self.base, tuple(deltas), dead, tuple(firsts))

    def segments(self) -> list[VectorIndex]:
        return [self.base, *self.deltas]

    def search(
        self, queries: np.ndarray, k: int, params: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) over every segment, deleted ids skipped inside FAISS; -1 pads."""
        parts = [seg.search(queries, k, params, self.deleted) for seg in self.segments() if seg.count]
        nq = len(np.atleast_2d(queries))
        if not parts:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        if len(parts) == 1:
            return parts[0]
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        scores = np.where(ids >= 0, scores, -np.inf)
        width = min(k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :width]
        return np.take_along_axis(scores, top, axis=1), np.take_along_axis(ids, top, axis=1)

    def widen(self, params: dict[str, Any], factor: float) -> dict[str, Any]:
        return self.base.widen(params, factor)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of live ``ids``, each read from the segment that holds it."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        which = np.searchsorted(np.asarray(self.firsts, dtype=np.int64), ids, side="right")
        for number, segment in enumerate(self.segments()):
            rows = np.flatnonzero(which == number)
            if len(rows):
                out[rows] = segment.reconstruct(ids[rows])
        return out


def live_rows(segment: VectorIndex, dead: Deleted) -> tuple[np.ndarray, np.ndarray]:
    """``segment``'s ids, and the row numbers of those not deleted (what a merge or a compaction
    carries over)."""
    held = segment.ids()
    return held, np.flatnonzero(~np.isin(held, dead.ids))


def _merge(parts: list[VectorIndex], dead: Deleted, dim: int, factory: str) -> VectorIndex | None:
    """One delta holding the live vectors of ``parts``, in order (None when none is live). Flat
    float deltas are concatenated into storage sized once (no growth by doubling, no temporary
    copy): the merge holds its inputs and its output, nothing more. Others are copied a chunk at
    a time."""
    lives = [(segment, *live_rows(segment, dead)) for segment in parts]
    total = sum(len(rows) for _, _, rows in lives)
    if not total:
        return None
    if factory == FLAT_FACTORY:
        return _concat_flat(lives, dim, total)
    merged = VectorIndex.create(dim, factory)
    for segment, held, rows in lives:
        for start in range(0, len(rows), _MERGE_CHUNK):
            part = held[rows[start : start + _MERGE_CHUNK]]
            merged.add(part, segment.reconstruct(part))
    return merged


def _concat_flat(
    lives: list[tuple[VectorIndex, np.ndarray, np.ndarray]], dim: int, total: int
) -> VectorIndex:
    """An ``IDMap2,Flat`` index of the given rows of flat segments, written straight into its
    storage (FAISS's own fields, through SWIG's views of them)."""
    inner = faiss.IndexFlatIP(dim)
    wrapper = faiss.IndexIDMap2(inner)  # wraps an empty index (FAISS insists), then filled
    inner.codes.resize(total * inner.code_size)
    out = faiss.rev_swig_ptr(inner.codes.data(), total * inner.code_size).reshape(total, inner.code_size)
    ids = np.empty(total, dtype=np.int64)
    at = 0
    for segment, held, rows in lives:
        source: Any = faiss.downcast_index(segment.index.index)  # an IndexFlat (stubs lag SWIG)
        codes = faiss.rev_swig_ptr(source.codes.data(), source.ntotal * source.code_size)
        codes = codes.reshape(source.ntotal, source.code_size)
        for start in range(0, len(rows), _MERGE_CHUNK):
            part = rows[start : start + _MERGE_CHUNK]
            out[at : at + len(part)] = codes[part]
            ids[at : at + len(part)] = held[part]
            at += len(part)
    inner.ntotal = total
    faiss.copy_array_to_vector(ids, wrapper.id_map)
    wrapper.ntotal = total
    wrapper.construct_rev_map()
    return VectorIndex(wrapper, FLAT_FACTORY)
