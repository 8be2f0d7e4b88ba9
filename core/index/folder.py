"""Opening a published index folder for search (``manifest.json`` + FAISS file + ``docs.sqlite``)."""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IndexFormatError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.lexical import LexicalIndex, mix, rrf
from core.index.manifest import Manifest
from core.index.ondisk import read_on_disk
from core.index.vectors import VectorIndex

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


class IndexFolder:
    """A published index folder opened for search, pinned to the generation it was opened at."""

    def __init__(self, path: Path, manifest: Manifest, vectors: VectorIndex, store: DocStore) -> None:
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.store = store
        self._lexical: LexicalIndex | None = None
        self._lexical_lock = threading.Lock()
        # HNSW cannot remove: its deleted vectors stay until compact. Their ids are worked out
        # here, once, and every search makes FAISS skip them (an id selector), so a search costs
        # the same however many there are, instead of over-fetching k + tombstones.
        self.dead = np.empty(0, np.int64)
        if manifest.tombstones:
            self.dead = np.setdiff1d(vectors.ids(), store.live_iid_array(), assume_unique=True)

    @classmethod
    def open(cls, path: str | Path) -> IndexFolder:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise IndexFormatError(f"index folder not found: {path}")
        for attempt in range(3):
            manifest = Manifest.read(path)
            try:
                vectors = load_vectors(path, manifest)
                break
            except IndexFormatError:
                # A writer may have published a newer generation (and removed this file) between
                # our manifest read and the file read: retry with the new manifest.
                if attempt == 2 or Manifest.read(path).generation == manifest.generation:
                    raise
        store = DocStore(path / DOCS_FILE, readonly=True, generation=manifest.generation)
        if Manifest.read(path).generation != manifest.generation and manifest.index_file == INDEX_FILE:
            # A whole-folder swap (rebuild, compact) between our two opens: the store may be the
            # new folder's. Start again rather than pair files of two different indexes.
            store.close()
            return cls.open(path)
        counts = {"manifest": manifest.count, "docs.sqlite": store.count()}
        if vectors.count != manifest.count + manifest.tombstones or len(set(counts.values())) != 1:
            store.close()
            raise IndexFormatError(
                f"{path}: document counts disagree ({counts}, faiss {vectors.count}, "
                f"tombstones {manifest.tombstones})"
            )
        return cls(path, manifest, vectors, store)

    @property
    def count(self) -> int:
        return self.manifest.count

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
        scores, ids = self.vectors.search(queries, k, merged, self.dead)
        return self._hits(scores, ids, k)

    def _params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.manifest.search_params, **{k: v for k, v in (params or {}).items() if v}}

    def lexical(self) -> LexicalIndex:
        """BM25 over this generation's documents, built on first use (then kept with it)."""
        with self._lexical_lock:
            if self._lexical is None:
                self._lexical = LexicalIndex.build(self.store)
            return self._lexical

    def search_hybrid(
        self,
        query: np.ndarray,
        text: str,
        k: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
        alpha: float | None = None,
        depth: int = HYBRID_DEPTH,
    ) -> list[Hit]:
        """Dense and BM25 candidates (``depth`` each), fused by reciprocal rank, or by
        ``alpha``-weighted normalised scores when ``alpha`` is given (see core.index.lexical)."""
        n = max(k, depth)
        merged = self._params(params)
        matches = self.store.matching_iids(where) if where else None
        if matches is not None:
            d_iids = self._ranked_filtered(query, n, merged, matches)[1]
        else:
            d_iids = self.vectors.search(query.reshape(1, -1), n, merged, self.dead)[1][0]
            d_iids = d_iids[d_iids >= 0]
        lexical = self.lexical()
        bm25 = lexical.search([text], n, matches)[0]
        if alpha is None:
            fused = rrf([d_iids, bm25.iids], n)
        else:
            union = np.unique(np.concatenate([d_iids, bm25.iids]))
            if len(union) == 0:
                return []
            dense = self.vectors.reconstruct(union) @ query.reshape(-1)
            fused = mix(union, dense, lexical.scores_for(text, union), alpha, n)
        # Both candidate lists hold live ids only: the top k is all that is read from SQLite.
        return self._hits(fused.scores[None, :k], fused.iids[None, :k], k)[0]

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
            total = self.vectors.count
            factor = 2 * total / len(matches)
            fetch = min(total, math.ceil(k * factor))
            while True:
                widened = self.vectors.widen(params, factor)
                scores, ids = self.vectors.search(query, fetch, widened, self.dead)
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
            s = self.vectors.reconstruct(part) @ query
            best_s, best_i = np.concatenate([best_s, s]), np.concatenate([best_i, part])
            if len(best_s) > k:
                top = np.argpartition(-best_s, k)[:k]
                best_s, best_i = best_s[top], best_i[top]
        order = np.argsort(-best_s, kind="stable")
        return best_s[order], best_i[order]

    def get(self, doc_id: str) -> Document | None:
        return self.store.get(doc_id)

    def close(self) -> None:
        self.store.close()
