"""A small wrapper over FAISS: add, delete, search, save, load.

Inner product over L2-normalised float32 vectors with caller-chosen int64 ids. CPU FAISS search
is thread-safe; mutation is not, so add/delete take a lock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import faiss
import numpy as np

from core.errors import IndexFormatError, InvalidInputError

FLAT_FACTORY = "IDMap2,Flat"


class VectorIndex:
    def __init__(self, index: faiss.Index, factory: str = FLAT_FACTORY) -> None:
        self.index = index
        self.factory = factory
        self._lock = threading.Lock()

    @classmethod
    def create(cls, dim: int, factory: str = FLAT_FACTORY) -> VectorIndex:
        return cls(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT), factory)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = self._check(vectors)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (vectors.shape[0],):
            raise InvalidInputError(f"{ids.shape[0]} ids for {vectors.shape[0]} vectors")
        with self._lock:
            self.index.add_with_ids(vectors, ids)

    def delete(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots have id -1."""
        queries = self._check(queries)
        k = max(1, min(int(k), max(self.count, 1)))
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, factory: str = FLAT_FACTORY) -> VectorIndex:
        if not path.is_file():
            raise IndexFormatError(f"{path}: missing")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:  # FAISS reports truncation and bad headers this way
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise IndexFormatError(f"{path}: not a readable FAISS index ({first})") from exc
        return cls(index, factory)
