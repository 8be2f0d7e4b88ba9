"""A small wrapper over FAISS: create (by index type), train, add, delete, search, save, load.

Inner product over L2-normalised float32 vectors with caller-chosen int64 ids. CPU FAISS search
is thread-safe; mutation is not, so add/delete take a lock. HNSW cannot remove vectors in FAISS:
``delete`` there reports 0 and the caller keeps tombstones (the document store's deleted rows)
that search filters, until ``compact`` rebuilds.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.errors import IndexFormatError, InvalidInputError

log = logging.getLogger(__name__)
FLAT_FACTORY = "IDMap2,Flat"
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
AUTO_FLAT_MAX = 100_000
HNSW_M = 32


@dataclass
class IndexPlan:
    """What to build: the FAISS factory string, its type, and how to train it."""

    index_type: str
    factory: str
    nlist: int = 0
    train_size: int = 0  # vectors sampled for training (IVF / PQ); 0 when no training is needed
    search_params: dict[str, int] | None = None


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit rows as float32: inner product over them is cosine similarity."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def ivf_nlist(n: int) -> int:
    return max(1, round(4 * math.sqrt(n)))


def pq_m(dim: int) -> int:
    """Sub-quantisers for PQ: about 8 dims each, and a divisor of ``dim``."""
    target = max(1, dim // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def plan_index(index_type: str, n: int, dim: int, memory_budget_bytes: int | None = None) -> IndexPlan:
    """Choose the index for ``n`` vectors. ``auto``: exact flat up to 100k vectors, IVF above
    (nlist about 4*sqrt(n)), IVF-PQ when the float32 vectors would not fit ``memory_budget``."""
    if index_type not in INDEX_TYPES:
        raise InvalidInputError(f"unknown index type {index_type!r}; use one of {', '.join(INDEX_TYPES)}")
    if index_type == "auto":
        if memory_budget_bytes is not None and n * dim * 4 > memory_budget_bytes:
            index_type = "ivfpq"
        elif n <= AUTO_FLAT_MAX:
            index_type = "flat"
        else:
            index_type = "ivf"
    if index_type == "flat":
        return IndexPlan("flat", FLAT_FACTORY)
    if index_type == "hnsw":
        return IndexPlan("hnsw", f"IDMap2,HNSW{HNSW_M}", search_params={"ef_search": 128})
    nlist = ivf_nlist(n)
    if n < nlist * 4 or n < 64:
        raise InvalidInputError(
            f"--index-type {index_type} needs many more vectors than its {nlist} lists ({n} given); "
            "use --index-type flat for a corpus this small"
        )
    # FAISS wants ~39 training points per centroid at least; more helps little past 256.
    train = min(n, max(64 * nlist, 10_000), 256 * nlist)
    nprobe = max(1, min(nlist, round(math.sqrt(nlist))))
    if index_type == "ivf":
        return IndexPlan("ivf", f"IVF{nlist},Flat", nlist, train, {"nprobe": nprobe})
    return IndexPlan("ivfpq", f"IVF{nlist},PQ{pq_m(dim)}x8", nlist, train, {"nprobe": nprobe})


class VectorIndex:
    def __init__(self, index: faiss.Index, factory: str = FLAT_FACTORY) -> None:
        self.index = index
        self.factory = factory
        self._lock = threading.Lock()

    @classmethod
    def create(cls, dim: int, factory: str = FLAT_FACTORY) -> VectorIndex:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        hnsw = _hnsw(index)
        if hnsw is not None:
            hnsw.hnsw.efConstruction = 80
        return cls(index, factory)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def supports_remove(self) -> bool:
        return _hnsw(self.index) is None

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    def train(self, sample: np.ndarray, seed: int = 1234) -> None:
        """Train IVF / PQ. k-means runs on the GPU when this faiss has GPU support (faiss-gpu);
        the index itself stays a CPU index, so it is saved and served like any other."""
        sample = self._check(sample)
        ivf = _ivf(self.index)
        gpu_index = None  # must stay referenced until train() returns: SWIG frees it otherwise
        if ivf is not None:
            ivf.cp.seed = seed  # reproducible centroids: a resumed build equals an uninterrupted one
            gpus = gpu_count()
            if gpus:
                gpu_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(self.dim))
                ivf.clustering_index = gpu_index
                log.info("training %s on %d GPU(s)", self.factory, gpus)
            else:
                log.info("training %s on CPU (this faiss has no GPU support or sees no GPU)", self.factory)
        try:
            with self._lock:
                self.index.train(sample)
        finally:
            if gpu_index is not None:
                ivf.clustering_index = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = self._check(vectors)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (vectors.shape[0],):
            raise InvalidInputError(f"{ids.shape[0]} ids for {vectors.shape[0]} vectors")
        if not self.is_trained:
            raise InvalidInputError(f"the {self.factory} index must be trained before vectors are added")
        with self._lock:
            self.index.add_with_ids(vectors, ids)

    def delete(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were removed (0 on HNSW, which cannot remove)."""
        if not self.supports_remove:
            return 0
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(
        self, queries: np.ndarray, k: int, params: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots have id -1. ``params``: nprobe / ef_search."""
        queries = self._check(queries)
        k = max(1, min(int(k), max(self.count, 1)))
        sp = self._search_params(params or {})
        if sp is None:
            return self.index.search(queries, k)
        return self.index.search(queries, k, params=sp)

    def widen(self, params: dict[str, Any], factor: float) -> dict[str, Any]:
        """``params`` scaled to search ``factor`` times more of the index: a filter that keeps 1 in
        ``factor`` vectors needs that many more IVF lists (over-fetching alone cannot reach lists
        that were never probed)."""
        ivf = _ivf(self.index)
        if ivf is None:
            return params
        nprobe = int(params.get("nprobe") or ivf.nprobe)
        return {**params, "nprobe": max(1, min(int(ivf.nlist), math.ceil(nprobe * factor)))}

    def _search_params(self, params: dict[str, Any]) -> Any:
        nprobe, ef = params.get("nprobe"), params.get("ef_search")
        # Built through getattr: faiss's bundled stubs lag its SWIG classes.
        params_cls: Any = None
        if _ivf(self.index) is not None and nprobe:
            params_cls, kwargs = getattr(faiss, "SearchParametersIVF"), {"nprobe": int(nprobe)}  # noqa: B009
        elif _hnsw(self.index) is not None and ef:
            params_cls, kwargs = getattr(faiss, "SearchParametersHNSW"), {"efSearch": int(ef)}  # noqa: B009
        return params_cls(**kwargs) if params_cls is not None else None

    def clone(self) -> VectorIndex:
        """A deep copy: a writer mutates the copy while readers keep searching the original."""
        with self._lock:
            return VectorIndex(faiss.clone_index(self.index), self.factory)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (approximate for PQ), for exact scoring of a filtered set."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        ivf = _ivf(self.index)
        direct_map: Any = getattr(faiss, "DirectMap")  # noqa: B009 - missing from faiss's stubs
        if ivf is not None and ivf.direct_map.type == direct_map.NoMap:
            with self._lock:  # built once, on first use: an id -> (list, offset) hash table
                if ivf.direct_map.type == direct_map.NoMap:
                    ivf.set_direct_map_type(direct_map.Hashtable)
        out: np.ndarray = self.index.reconstruct_batch(ids)
        return out

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


def gpu_count() -> int:
    """GPUs visible to faiss: 0 with faiss-cpu."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _inner(index: faiss.Index) -> faiss.Index:
    """The index inside an IDMap wrapper, downcast to its concrete class."""
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        return faiss.downcast_index(index.index)
    return faiss.downcast_index(index)


def _hnsw(index: faiss.Index) -> Any:
    inner = _inner(index)
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def _ivf(index: faiss.Index) -> Any:
    inner = _inner(index)
    return faiss.extract_index_ivf(inner) if isinstance(inner, faiss.IndexIVF) else None
