"""Compaction: fold a snapshot's delta segments and deletes into a new base FAISS file.

It runs in two steps so that it never blocks reads and blocks writes only for the swap:

1. :func:`build_base`, outside every lock, from an immutable snapshot (an
   :class:`~core.index.folder.IndexFolder` at generation G): the new base holds every vector
   live at G, in the base's own type, and is written to a flock-held temp file
   (core.index.writer_lock.HeldTemp), fsynced and hashed. Searches go on over the snapshot; writes
   go on committing G+1, G+2... to the log.
2. :meth:`core.index.mutable.MutableIndex.install_base`, under the writer lock: rename the file
   into place, publish ``manifest.json`` naming it as the base of generation G (the commit point),
   then in one SQLite transaction drop the folded vectors (meta ``base_generation`` = G). The
   writes after G stay in the log and become the new snapshot's deltas.

How each type folds:
- flat, sq8, ivf, ivfpq, binary: a copy of the base (trained quantisers kept), its deleted ids
  removed, the deltas' live vectors added. Their deleted rows are then purged from docs.sqlite.
- hnsw: FAISS cannot remove from it, so a merge adds the deltas and keeps the deleted vectors as
  tombstones (still skipped by the id selector); a ``full`` compaction (``semsearch index
  compact``, or tombstones past ``deleted_ratio`` of the base) rebuilds the graph from live
  vectors only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.index.segments import live_rows
from core.index.vectors import VectorIndex
from core.index.writer_lock import HeldTemp

if TYPE_CHECKING:
    from core.index.folder import IndexFolder

log = logging.getLogger(__name__)
_CHUNK = 65_536  # vectors copied at a time in a rebuild


@dataclass(frozen=True)
class CompactionPolicy:
    """When a writer folds the log into a new base: the deltas hold ``delta_ratio`` of the base's
    vectors, or the deleted ids ``deleted_ratio`` of them; neither below ``min_vectors``
    (a small index is compacted rarely: its deltas cost little to search)."""

    delta_ratio: float = 0.1
    deleted_ratio: float = 0.2
    min_vectors: int = 2_000

    @classmethod
    def from_env(cls) -> CompactionPolicy:
        env = os.environ
        return cls(
            float(env.get("SEMSEARCH_COMPACT_DELTA_RATIO", cls.delta_ratio)),
            float(env.get("SEMSEARCH_COMPACT_DELETED_RATIO", cls.deleted_ratio)),
            int(env.get("SEMSEARCH_COMPACT_MIN_VECTORS", cls.min_vectors)),
        )

    def due(self, snapshot: IndexFolder) -> bool:
        deltas, base = snapshot.segments.delta_count(), snapshot.segments.base.count
        return deltas >= max(self.min_vectors, self.delta_ratio * base) or self.full(snapshot)

    def full(self, snapshot: IndexFolder) -> bool:
        """The deleted ids are due (and an HNSW graph is rebuilt rather than added to)."""
        return len(snapshot.dead) >= max(self.min_vectors, self.deleted_ratio * snapshot.segments.base.count)


@dataclass
class NewBase:
    """A built base, written and fsynced to ``temp`` (held until installed or dropped)."""

    generation: int  # the snapshot's: the base holds every vector live at it
    count: int  # live documents at that generation
    vectors: VectorIndex
    temp: HeldTemp
    full: bool  # no deleted vector inside (its deleted rows can be purged)
    based_on: object  # the snapshot's manifest: the install is abandoned if the folder moved on


def build_base(snapshot: IndexFolder, full: bool = False) -> VectorIndex:
    """The vectors live at ``snapshot``'s generation as one index of the base's type."""
    seg = snapshot.segments
    base, dead = seg.base, seg.deleted.ids
    delta_ids, delta_vecs = _live_deltas(snapshot)
    if base.supports_remove:
        new = base.clone()  # keeps the trained quantiser of IVF / PQ / SQ8
        if len(dead):
            new.delete(dead)
    elif full:
        new = VectorIndex.create(base.dim, base.factory)
        held, rows = live_rows(base, seg.deleted)
        live = held[rows]
        for start in range(0, len(live), _CHUNK):
            part = live[start : start + _CHUNK]
            new.add(part, base.reconstruct(part))
    else:  # an HNSW merge: deleted vectors stay inside as tombstones
        new = base.clone()
    if len(delta_ids):
        new.add(delta_ids, delta_vecs)
    return new


def _live_deltas(snapshot: IndexFolder) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for delta in snapshot.segments.deltas:
        held, rows = live_rows(delta, snapshot.segments.deleted)
        live = held[rows]
        if len(live):
            ids.append(live)
            vecs.append(delta.reconstruct(live))
    if not ids:
        return np.empty(0, np.int64), np.empty((0, snapshot.segments.dim), np.float32)
    return np.concatenate(ids), np.vstack(vecs)


def prepare(snapshot: IndexFolder, full: bool) -> NewBase:
    """Step 1: build the new base of ``snapshot`` and write it to a held temp file."""
    vectors = build_base(snapshot, full)
    temp = HeldTemp(snapshot.path, f"compact-g{snapshot.generation}")
    try:
        vectors.save(temp.path)  # fsynced; held until install_base (swept if this process dies)
    except BaseException:
        temp.discard()
        raise
    no_dead = full or vectors.supports_remove
    log.info(
        "compaction of %s at generation %d: %d vectors (%d deltas folded, %d deleted ids)",
        snapshot.path,
        snapshot.generation,
        vectors.count,
        len(snapshot.segments.deltas),
        len(snapshot.dead),
    )
    return NewBase(snapshot.generation, snapshot.count, vectors, temp, no_dead, snapshot.manifest)
