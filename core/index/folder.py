"""Opening a published index folder for search (``manifest.json`` + FAISS file + ``docs.sqlite``)."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IndexFormatError
from core.fusion_names import DEFAULT_FUSION
from core.index.bm25 import TermStats
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.feedback import check_feedback, expand, two_rounds
from core.index.lexical import LexicalIndex, Ranked, SharedLexical, check_fusion, fuse
from core.index.manifest import Manifest, same_publication
from core.index.ondisk import read_on_disk
from core.index.segments import SegmentSet
from core.index.shard_merge import HybridPart
from core.index.vectors import VectorIndex
from core.index.wal_check import check_wal

INDEX_FILE = "index.faiss"
# Filters matching at most this many documents are scored exactly, from the stored vectors.
EXACT_FILTER_LIMIT = 20_000
# Candidates each side (dense, BM25) contributes to hybrid fusion.
HYBRID_DEPTH = 100


@dataclass
class Hit:
    id: str
    score: float
    text: str
    metadata: dict[str, Any]


def file_digest(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": sha}


def load_vectors(path: Path, manifest: Manifest) -> VectorIndex:
    """The manifest's FAISS file, checked against its recorded size and checksum first: a
    truncated or altered file gets a clear message instead of an error from inside FAISS. An
    on-disk index (build --on-disk) also maps its ivfdata file, resolved inside ``path``."""
    index_path = path / manifest.index_file
    if not index_path.is_file():
        raise IndexFormatError(f"{path}: {manifest.index_file} is missing")
    expected = manifest.files.get(manifest.index_file)
    if expected:
        actual = file_digest(index_path)
        if actual != expected:
            raise IndexFormatError(
                f"{index_path}: size/checksum do not match manifest.json "
                f"({actual['bytes']} bytes vs {expected.get('bytes')}); the file is truncated or corrupt"
            )
    if manifest.on_disk:
        if not manifest.ivfdata_file:
            raise IndexFormatError(f"{path}: manifest.json says on-disk IVF lists but names no ivfdata file")
        recorded = manifest.files.get(manifest.ivfdata_file) or {}
        ivfdata = path / manifest.ivfdata_file
        # Its size is checked, not its checksum: it holds every vector, possibly more than RAM.
        index = read_on_disk(index_path, ivfdata, recorded.get("bytes"))
        vectors = VectorIndex(index, manifest.faiss_factory)
    else:
        vectors = VectorIndex.load(index_path, manifest.faiss_factory)
    if vectors.dim != manifest.dim:
        raise IndexFormatError(f"{index_path}: dim {vectors.dim} but manifest says {manifest.dim}")
    return vectors


class StaleSnapshot(Exception):
    """The folder's base changed under a reader (a compaction or rebuild published): open again."""


class IndexFolder:
    """A published index folder opened for search, pinned to one generation: the base FAISS
    index of the manifest, plus the log's later writes as delta segments (core.index.segments)."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        vectors: VectorIndex,
        store: DocStore,
        segments: SegmentSet | None = None,
        generation: int | None = None,
        count: int | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest  # the base's (its generation is the base's)
        self.vectors = vectors  # the base FAISS index
        self.store = store
        self.segments = segments if segments is not None else SegmentSet(vectors)
        self.generation = manifest.generation if generation is None else generation
        self._count = manifest.count if count is None else count
        self._lexical: LexicalIndex | None = None
        # An earlier snapshot's BM25 (the one this was advanced from): this one's is built from
        # its parts, tokenising only the documents written since (core.index.lexical_parts).
        self._lexical_seed: LexicalIndex | None = None
        self._lexical_lock = threading.Lock()
        # Set by a live index (service.live_index) for its snapshots: BM25 built in the background
        # per generation, the newest one built serving until then. None: built here on first use.
        self.shared_lexical: SharedLexical | None = None

    @property
    def dead(self) -> np.ndarray:
        """Int ids FAISS skips in every search: deleted documents whose vectors are still in a
        segment (HNSW tombstones, and every delete since the base was written)."""
        return self.segments.deleted.ids

    @classmethod
    def open(cls, path: str | Path) -> IndexFolder:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise IndexFormatError(f"index folder not found: {path}")
        try:
            check_wal(path / DOCS_FILE)  # before this process's SQLite can drop damaged frames
        except IndexFormatError:
            time.sleep(0.05)  # read while a writer appended? A second read tells
            check_wal(path / DOCS_FILE)
        for attempt in range(5):
            manifest = Manifest.read(path)
            try:
                vectors = load_vectors(path, manifest)
            except IndexFormatError:
                # A writer may have published a newer generation (and removed this file) between
                # our manifest read and the file read: retry with the new manifest.
                if attempt == 4 or same_publication(Manifest.read(path), manifest):
                    raise
                continue
            try:
                return cls.from_base(path, manifest, vectors)
            except StaleSnapshot:
                if attempt == 4:
                    raise IndexFormatError(f"{path}: the index kept changing while it was opened") from None
        raise AssertionError("unreachable")

    @classmethod
    def from_base(cls, path: Path, manifest: Manifest, vectors: VectorIndex) -> IndexFolder:
        """The newest generation over this base: its logged writes replayed as delta segments.
        Raises :class:`StaleSnapshot` when the folder moved on to another base meanwhile."""
        store = DocStore(path / DOCS_FILE, readonly=True)
        try:
            if not same_publication(Manifest.read(path), manifest):
                # A whole-folder swap or a compaction between our two reads: the store may
                # belong to another base. Start again rather than pair two different indexes.
                raise StaleSnapshot()
            with store.reading():  # one consistent state: a compaction may commit meanwhile
                tail = store.tail(manifest.generation, manifest.generation, manifest.count, manifest.dim)
                if tail.base_generation > manifest.generation:
                    raise StaleSnapshot()
                store.generation = manifest.generation
                base_count = store.count()
                store.generation = tail.generation
                dead = store.deleted_in_base(manifest.generation, tail.generation)
                newest_count = store.count()
            counts = {"manifest": manifest.count, "docs.sqlite": base_count}
            if vectors.count != manifest.count + manifest.tombstones or base_count != manifest.count:
                if not same_publication(Manifest.read(path), manifest):
                    raise StaleSnapshot()  # replaced meanwhile (a rebuild): not damage
                raise IndexFormatError(
                    f"{path}: document counts disagree ({counts}, faiss {vectors.count}, "
                    f"tombstones {manifest.tombstones})"
                )
            segments = SegmentSet(vectors).with_tail(tail.iids, tail.vectors, np.union1d(dead, tail.deleted))
            if tail.generation != manifest.generation and newest_count != tail.count:
                raise IndexFormatError(
                    f"{path}: the write log says {tail.count} documents at generation "
                    f"{tail.generation}, docs.sqlite holds {newest_count}"
                )
        except BaseException:
            store.close()
            raise
        return cls(path, manifest, vectors, store, segments, tail.generation, tail.count)

    def advance(self) -> IndexFolder:
        """This snapshot moved to the newest committed generation by replaying the log tail
        (the writes after ours): ``self`` when there is none. Raises :class:`StaleSnapshot`
        when a compaction or rebuild replaced the base (then :meth:`open` again)."""
        store = self.store.view(None)  # this snapshot's connection: nothing new to open
        try:
            m = self.manifest
            tail = store.tail(self.generation, m.generation, m.count, m.dim)
            if tail.base_generation > m.generation or not same_publication(Manifest.read(self.path), m):
                raise StaleSnapshot()
        except BaseException:
            store.close()
            raise
        if tail.generation <= self.generation:
            store.close()
            return self
        store.generation = tail.generation
        segments = self.segments.with_tail(tail.iids, tail.vectors, tail.deleted)
        nxt = IndexFolder(self.path, m, self.vectors, store, segments, tail.generation, tail.count)
        nxt.shared_lexical = self.shared_lexical
        nxt._lexical_seed = self._lexical or self._lexical_seed
        return nxt

    @property
    def count(self) -> int:
        """Live documents at this generation."""
        return self._count

    def search(
        self,
        queries: np.ndarray,
        k: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query. Vectors whose document is deleted (HNSW tombstones) are skipped
        inside FAISS (see ``dead``), so k live hits come back whenever k documents are live.
        ``where``: a metadata filter (see :meth:`DocStore.matching_iids`); k hits come back
        whenever k documents match."""
        merged = self._params(params)
        if where:
            matches = self.store.matching_iids(where)
            out = []
            for q in np.atleast_2d(queries):
                scores, ids = self._ranked_filtered(q, k, merged, matches)
                out.append(self._hits(scores[None], ids[None], k)[0])
            return out
        scores, ids = self.segments.search(queries, k, merged)
        return self._hits(scores, ids, k)

    def _params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.manifest.search_params, **{k: v for k, v in (params or {}).items() if v}}

    def lexical(self) -> LexicalIndex:
        """BM25 over this generation's documents, built on first use (then kept with it); in a
        live index, the newest one built until this generation's is (:class:`SharedLexical`)."""
        with self._lexical_lock:
            if self._lexical is not None:
                return self._lexical
            if self.shared_lexical is None:
                self._lexical = LexicalIndex.build(self.store, self._lexical_seed)
                self._lexical_seed = None
                return self._lexical
        shared = self.shared_lexical
        index, own = shared.for_snapshot(
            self.generation, lambda: LexicalIndex.build(self.store, shared.newest())
        )
        if own:
            with self._lexical_lock:
                self._lexical = index
        return index

    def search_hybrid(
        self,
        query: np.ndarray,
        text: str,
        k: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
        alpha: float | None = None,
        depth: int = HYBRID_DEPTH,
        fusion: str = DEFAULT_FUSION,
        feedback: int = 0,
    ) -> list[Hit]:
        """Dense and BM25 candidates (``depth`` each), fused by ``fusion``: ``convex``
        (``alpha``-weighted min-max normalised scores, :data:`DEFAULT_ALPHA` unless given) or
        ``rrf`` (reciprocal rank, no alpha); see core.index.lexical. ``feedback``: documents of
        pseudo-relevance feedback (core.index.feedback), whose second round reuses the first's
        BM25 list, the same in both rounds (half of a round's time on 100k documents)."""
        check_fusion(fusion, alpha)
        check_feedback(feedback)
        n = max(k, depth)
        if feedback and n != max(feedback, depth):  # rounds of two depths: as every layout runs them
            return two_rounds(self, query, text, k, params, where, alpha, fusion, feedback)
        merged = self._params(params)
        matches = self.store.matching_iids(where) if where else None
        dense = self._dense_candidates(query, n, merged, matches)
        lexical = self.lexical()
        bm25 = lexical.search([text], n, matches)[0]

        def fused_with(q: np.ndarray, dense: Ranked) -> Ranked:
            return fuse(
                dense.iids,
                bm25.iids,
                n,
                fusion,
                alpha,
                lambda union: self.fusion_scores(q, text, union, lexical, None, bm25.full),
            )

        fused = fused_with(query, dense)
        if feedback:
            moved = expand(query, self.segments.reconstruct(fused.iids[:feedback]))
            fused = fused_with(moved, self._dense_candidates(moved, n, merged, matches))
        # Both candidate lists hold live ids only: the top k is all that is read from SQLite.
        return self._hits(fused.scores[None, :k], fused.iids[None, :k], k)[0]

    def _dense_candidates(
        self, query: np.ndarray, n: int, merged: dict[str, Any], matches: np.ndarray | None
    ) -> Ranked:
        if matches is not None:
            d_scores, d_iids = self._ranked_filtered(query, n, merged, matches)
        else:
            scores, ids = self.segments.search(query.reshape(1, -1), n, merged)
            keep = ids[0] >= 0
            d_scores, d_iids = scores[0][keep], ids[0][keep]
        return Ranked(d_iids, d_scores)

    def hybrid_candidates(
        self,
        query: np.ndarray,
        text: str,
        n: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
        lexical: LexicalIndex | None = None,
        stats: TermStats | None = None,
    ) -> tuple[Ranked, LexicalIndex, Ranked]:
        """Hybrid search's two candidate lists, ``n`` each, best first: (dense, the BM25 index
        searched, BM25). A sharded index fuses every shard's lists, BM25 scored with the whole
        index's ``stats`` in the shard's own ``lexical`` index (core.index.sharded_folder)."""
        merged = self._params(params)
        matches = self.store.matching_iids(where) if where else None
        dense = self._dense_candidates(query, n, merged, matches)
        lexical = lexical or self.lexical()
        bm25 = lexical.search([text], n, matches, stats)[0]
        return dense, lexical, bm25

    def hybrid_part(
        self,
        query: np.ndarray,
        text: str,
        n: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
        stats: TermStats | None = None,
        fusion: str = DEFAULT_FUSION,
        with_ids: bool = False,
        lexical: LexicalIndex | None = None,
    ) -> HybridPart:
        """This folder's share of a sharded hybrid search (core.index.shard_merge): its two
        candidate lists and both scores of each candidate (none for rrf, which ranks only);
        ``with_ids``: their external ids too, for a merge in another process; ``lexical``: the
        BM25 index ``stats`` came from (default: this snapshot's)."""
        dense, lexical, bm25 = self.hybrid_candidates(query, text, n, params, where, lexical, stats)
        union = np.unique(np.concatenate([dense.iids, bm25.iids]).astype(np.int64))
        if fusion == "rrf":
            d, b = np.empty(0, np.float64), np.empty(0, np.float32)
        else:
            d, b = self.fusion_scores(query, text, union, lexical, stats, bm25.full)
        doc_ids = None
        if with_ids:
            ids = self.store.doc_ids(union.tolist())
            doc_ids = [ids.get(int(i), "") for i in union]
        # Without the full score vector: a part may travel to another process (Ray Serve).
        return HybridPart(dense, Ranked(bm25.iids, bm25.scores, bm25.ties), union, d, b, doc_ids)

    def fusion_scores(
        self,
        query: np.ndarray,
        text: str,
        iids: np.ndarray,
        lexical: LexicalIndex,
        stats: TermStats | None = None,
        bm25_full: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(dense, BM25) scores of these candidates: a candidate that only one side found gets
        its true score on the other side, from the stored vector or the full BM25 scores. The
        dense ones in float64: min-max over a narrow span magnifies float32's last bit, whose
        value depends on how many rows one product takes (one index's, or a shard's, share)."""
        vectors = self.segments.reconstruct(iids).astype(np.float64)
        return vectors @ query.reshape(-1).astype(np.float64), lexical.scores_for(
            text, iids, stats, bm25_full
        )

    def _hits(self, scores: np.ndarray, ids: np.ndarray, k: int) -> list[list[Hit]]:
        wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
        docs = self.store.get_many(wanted)
        results: list[list[Hit]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = []
            for score, iid in zip(row_scores, row_ids, strict=True):
                doc = docs.get(int(iid))
                if iid < 0 or doc is None:
                    continue
                hits.append(Hit(doc.id, float(score), doc.text, doc.metadata))
                if len(hits) == k:
                    break
            results.append(hits)
        return results

    def _ranked_filtered(
        self, query: np.ndarray, k: int, params: dict[str, Any], matches: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, int ids) of the best k among ``matches``. Small match sets are scored
        exactly (ANN + a selective filter misses matches). Large ones over-fetch from the ANN
        index by the inverse match rate and refill, growing the fetch 4x at a time; if the ANN
        index still yields fewer than k, score exactly."""
        if len(matches) == 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        query = query.reshape(1, -1)
        if len(matches) > EXACT_FILTER_LIMIT:
            total = self.segments.count
            factor = 2 * total / len(matches)
            fetch = min(total, math.ceil(k * factor))
            while True:
                widened = self.segments.widen(params, factor)
                scores, ids = self.segments.search(query, fetch, widened)
                keep = np.isin(ids[0], matches)
                if keep.sum() >= k or (fetch >= total and widened == params):
                    break
                params, fetch, factor = widened, min(total, fetch * 4), 4
            if keep.sum() >= min(k, len(matches)):
                return scores[0][keep], ids[0][keep]
        return self._exact(query[0], matches, k)

    def _exact(self, query: np.ndarray, iids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        best_s, best_i = np.empty(0, np.float32), np.empty(0, np.int64)
        for start in range(0, len(iids), EXACT_FILTER_LIMIT):
            part = iids[start : start + EXACT_FILTER_LIMIT]
            s = self.segments.reconstruct(part) @ query
            best_s, best_i = np.concatenate([best_s, s]), np.concatenate([best_i, part])
            if len(best_s) > k:
                top = np.argpartition(-best_s, k)[:k]
                best_s, best_i = best_s[top], best_i[top]
        order = np.argsort(-best_s, kind="stable")
        return best_s[order], best_i[order]

    def get(self, doc_id: str) -> Document | None:
        return self.store.get(doc_id)

    def vectors_by_id(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of ``doc_ids`` that are live (feedback's, core.index.feedback)."""
        live = self.store.live_iids(list(doc_ids))
        ids = list(live)
        vectors = self.segments.reconstruct(np.asarray([live[i] for i in ids], dtype=np.int64))
        return dict(zip(ids, vectors, strict=True))

    def vectors_of(self, doc_ids: Sequence[str]) -> np.ndarray:
        found = self.vectors_by_id(doc_ids)
        return np.stack(list(found.values())) if found else np.empty((0, self.manifest.dim), np.float32)

    def close(self) -> None:
        self.store.close()
