"""A small wrapper over FAISS: create (by index type), train, add, delete, search, save, load.

Inner product over L2-normalised float32 vectors with caller-chosen int64 ids. CPU FAISS search
is thread-safe; mutation is not, so add/delete take a lock. HNSW cannot remove vectors in FAISS:
``delete`` there reports 0 and the caller keeps tombstones (the document store's deleted rows)
that search filters, until ``compact`` rebuilds.

Two types shrink the stored vectors instead of the search work (issue 7):

- ``sq8``: FAISS's 8-bit scalar quantiser, 1 byte per dimension (4x smaller than float32), with
  a per-dimension range learnt from a sample; scores are inner products with the decoded vectors.
- ``binary``: one sign bit per dimension (32x smaller) in a FAISS binary index. A search takes
  the ``rescore_multiplier * k`` nearest codes by Hamming distance, then rescores them with the
  float32 query against the codes read as +-1 vectors and keeps the top k ("binary + float
  rescoring", as sentence-transformers' quantisation docs describe; it needs no extra storage).
  The callers always pass and get back float32 vectors: the bits are an internal detail.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from core.errors import IndexFormatError, InvalidInputError
from core.index.deleted import Deleted
from core.index.ondisk import refuse_if_on_disk

log = logging.getLogger(__name__)
FLAT_FACTORY = "IDMap2,Flat"
SQ8_FACTORY = "IDMap2,SQ8"
BINARY_FACTORY = "IDMap2,BFlat"  # a faiss.index_binary_factory string
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq", "sq8", "binary")
AUTO_FLAT_MAX = 100_000
HNSW_M = 32
SQ8_TRAIN_MAX = 65_536  # a per-dimension min/max: a sample this size pins it down well
# Each side of a learnt sq8 range is widened by this share of it, so that vectors added later
# (``index add``) slightly outside the training sample are not clipped.
SQ8_RANGE_MARGIN = 0.05
DEFAULT_RESCORE_MULTIPLIER = 4
RESCORE_BLOCK_FLOATS = 2**23  # binary rescoring unpacks at most this many floats (32 MiB) at a time
_BINARY_MAGIC = b"IB"  # FAISS binary index files start with "IB..." ("IBM2", "IBxF"), float ones "I?.."


@dataclass
class IndexPlan:
    """What to build: the FAISS factory string, its type, and how to train it."""

    index_type: str
    factory: str
    nlist: int = 0
    train_size: int = 0  # vectors sampled for training (IVF / PQ); 0 when no training is needed
    search_params: dict[str, int] | None = None


def ivf_nlist(n: int) -> int:
    return max(1, round(4 * math.sqrt(n)))


def pq_m(dim: int) -> int:
    """Sub-quantisers for PQ: about 8 dims each, and a divisor of ``dim``."""
    target = max(1, dim // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def is_binary_factory(factory: str) -> bool:
    """A FAISS binary index factory string (``IDMap2,BFlat``): its index part starts with "B"."""
    return factory.split(",")[-1].startswith("B")


def plan_index(index_type: str, n: int, dim: int, memory_budget_bytes: int | None = None) -> IndexPlan:
    """Choose the index for ``n`` vectors. ``auto``: exact flat up to 100k vectors, IVF above
    (nlist about 4*sqrt(n)), IVF-PQ when the float32 vectors would not fit ``memory_budget``.
    ``sq8`` and ``binary`` are explicit choices only; ``auto`` never picks them."""
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
    if index_type == "sq8":
        return IndexPlan("sq8", SQ8_FACTORY, train_size=min(n, SQ8_TRAIN_MAX))
    if index_type == "binary":
        if dim % 8:
            raise InvalidInputError(f"--index-type binary needs a dim divisible by 8 (this model's is {dim})")
        return IndexPlan(
            "binary", BINARY_FACTORY, search_params={"rescore_multiplier": DEFAULT_RESCORE_MULTIPLIER}
        )
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
    def __init__(self, index: Any, factory: str = FLAT_FACTORY) -> None:
        """``index``: a ``faiss.Index``, or a ``faiss.IndexBinary`` for a binary factory."""
        self.index = index
        self.factory = factory
        self.binary = isinstance(index, faiss.IndexBinary)
        self._lock = threading.Lock()
        self._direct_map()

    def _direct_map(self) -> None:
        """An IVF index's id -> (list, offset) table, built here, when the index is wrapped (at
        load, create or clone), never lazily on a search path: building it mutates the index,
        and a FAISS search running beside that mutation is a data race. FAISS keeps it up to date
        through add and remove, which run under the writer's lock."""
        ivf = None if self.binary else _ivf(self.index)
        direct_map: Any = getattr(faiss, "DirectMap")  # noqa: B009 - missing from faiss's stubs
        if ivf is not None and ivf.direct_map.type == direct_map.NoMap:
            ivf.set_direct_map_type(direct_map.Hashtable)

    @classmethod
    def create(cls, dim: int, factory: str = FLAT_FACTORY) -> VectorIndex:
        if is_binary_factory(factory):
            if dim % 8:
                raise InvalidInputError(f"a binary index needs a dim divisible by 8, not {dim}")
            return cls(faiss.index_binary_factory(dim, factory), factory)
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        hnsw = _hnsw(index)
        if hnsw is not None:
            hnsw.hnsw.efConstruction = 80
        return cls(index, factory)

    @property
    def dim(self) -> int:
        return int(self.index.d)  # a binary index's d is its number of bits: the float dim

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    @property
    def supports_remove(self) -> bool:
        return self.binary or _hnsw(self.index) is None

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInputError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        return vectors

    def train(self, sample: np.ndarray, seed: int = 1234) -> None:
        """Train IVF / PQ / SQ. k-means runs on the GPU when this faiss has GPU support (faiss-gpu);
        the index itself stays a CPU index, so it is saved and served like any other."""
        sample = self._check(sample)
        if self.binary:
            return  # sign bits need no training
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
                _widen_sq_ranges(self.index)
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
        refuse_if_on_disk(self.index, "add vectors to")  # FAISS would abort the process
        data = binary_codes(vectors) if self.binary else vectors
        with self._lock:
            self.index.add_with_ids(data, ids)

    def delete(self, ids: np.ndarray) -> int:
        """Remove ``ids``; returns how many were removed (0 on HNSW, which cannot remove)."""
        if not self.supports_remove:
            return 0
        refuse_if_on_disk(self.index, "delete vectors from")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            if _ivf(self.index) is not None:
                # An IVF with its direct map removes through the map: FAISS takes only an array here.
                return int(self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        params: dict[str, Any] | None = None,
        exclude: Deleted | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; missing slots have id -1. ``params``: nprobe /
        ef_search / rescore_multiplier. ``exclude``: ids FAISS must skip while it searches
        (deleted documents), through an id selector: no over-fetch that grows with them."""
        queries = self._check(queries)
        k = max(1, min(int(k), max(self.count, 1)))
        if exclude is not None and not isinstance(exclude, Deleted):
            exclude = Deleted(exclude)
        if self.binary:
            rows = exclude.rows_in(self) if exclude is not None and len(exclude) else None
            return self._search_binary(queries, k, (params or {}).get("rescore_multiplier"), rows)
        selector = exclude.selector() if exclude is not None else None
        sp = self._search_params(params or {}, generic=selector is not None)
        if selector is None:
            return self.index.search(queries, k) if sp is None else self.index.search(queries, k, params=sp)
        sp.sel = selector  # a fresh params object per call; the selector is shared and read-only
        scores, ids = self.index.search(queries, k, params=sp)
        return scores, ids

    def _search_binary(
        self, queries: np.ndarray, k: int, multiplier: Any, skip_rows: Deleted | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hamming top ``multiplier * k`` (rows in ``skip_rows`` skipped inside FAISS), rescored by
        query . sign(doc) / sqrt(dim): the cosine between the query and the doc's +-1 vector, so
        in [-1, 1], with the sign and roughly the order of the float32 cosine but smaller (about
        0.8x on all-MiniLM-L6-v2 vectors: the sign vector drops the magnitudes). Multiplier 1
        keeps the Hamming top k, only reordered."""
        try:
            mult = DEFAULT_RESCORE_MULTIPLIER if multiplier is None else float(multiplier)
        except (TypeError, ValueError):
            mult = math.nan
        if not mult >= 1:  # NaN too
            raise InvalidInputError(f"rescore_multiplier must be at least 1, not {multiplier!r}")
        nq, total = len(queries), self.count
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        ids = np.full((nq, k), -1, dtype=np.int64)
        if total == 0 or nq == 0:
            return scores, ids
        fetch = min(total, math.ceil(mult * k))
        # Search the flat index inside the IDMap2 wrapper: its row numbers pick the candidates'
        # codes straight out of its storage (no copy of the index), and map to our ids.
        inner: Any = faiss.downcast_IndexBinary(self.index.index)  # an IndexBinaryFlat
        skip = skip_rows.selector() if skip_rows is not None else None  # built once, shared
        if skip is not None:
            sp = getattr(faiss, "SearchParameters")(sel=skip)  # noqa: B009
            _, rows = inner.search(binary_codes(queries), fetch, params=sp)
        else:
            _, rows = inner.search(binary_codes(queries), fetch)
        codes = faiss.rev_swig_ptr(inner.xb.data(), total * inner.code_size).reshape(total, inner.code_size)
        id_map = faiss.rev_swig_ptr(self.index.id_map.data(), total)
        scale = np.float32(1 / math.sqrt(self.dim))
        block = max(1, RESCORE_BLOCK_FLOATS // self.dim)  # candidates unpacked at once
        step = max(1, block // fetch)  # queries per pass
        for start in range(0, nq, step):
            part, q = rows[start : start + step], queries[start : start + step]
            rescored = np.full(part.shape, -np.inf, dtype=np.float32)
            width = max(1, block // len(part))
            for col in range(0, fetch, width):
                sub = part[:, col : col + width]
                valid = sub >= 0
                bits = np.unpackbits(codes[np.where(valid, sub, 0)], axis=-1).astype(np.float32)
                # q . (2 bits - 1), without materialising the +-1 vectors
                dots = 2 * np.matmul(bits, q[:, :, None])[..., 0] - q.sum(axis=1, keepdims=True)
                rescored[:, col : col + width] = np.where(valid, dots * scale, -np.inf)
            best = np.indices(part.shape)[1]
            if fetch > k:
                best = np.sort(np.argpartition(-rescored, k - 1, axis=1)[:, :k], axis=1)  # Hamming order
            order = np.argsort(-np.take_along_axis(rescored, best, axis=1), axis=1, kind="stable")
            top = np.take_along_axis(best, order, axis=1)
            scores[start : start + step] = np.take_along_axis(rescored, top, axis=1)
            chosen = np.take_along_axis(part, top, axis=1)
            ids[start : start + step] = np.where(chosen >= 0, id_map[np.maximum(chosen, 0)], -1)
        return scores, ids

    def widen(self, params: dict[str, Any], factor: float) -> dict[str, Any]:
        """``params`` scaled to search ``factor`` times more of the index: a filter that keeps 1 in
        ``factor`` vectors needs that many more IVF lists (over-fetching alone cannot reach lists
        that were never probed)."""
        ivf = None if self.binary else _ivf(self.index)
        if ivf is None:
            return params
        nprobe = int(params.get("nprobe") or ivf.nprobe)
        return {**params, "nprobe": max(1, min(int(ivf.nlist), math.ceil(nprobe * factor)))}

    def _search_params(self, params: dict[str, Any], generic: bool = False) -> Any:
        """FAISS search parameters for ``params``; with ``generic``, always an object (one that a
        selector can be set on), of the index's own kind."""
        nprobe, ef = params.get("nprobe"), params.get("ef_search")
        # Built through getattr: faiss's bundled stubs lag its SWIG classes.
        params_cls: Any = None
        kwargs: dict[str, int] = {}
        if _ivf(self.index) is not None and (nprobe or generic):
            params_cls = getattr(faiss, "SearchParametersIVF")  # noqa: B009
            kwargs = {"nprobe": int(nprobe or _ivf(self.index).nprobe)}
        elif _hnsw(self.index) is not None and (ef or generic):
            params_cls = getattr(faiss, "SearchParametersHNSW")  # noqa: B009
            kwargs = {"efSearch": int(ef or _hnsw(self.index).hnsw.efSearch)}
        elif generic:
            params_cls = getattr(faiss, "SearchParameters")  # noqa: B009
        return params_cls(**kwargs) if params_cls is not None else None

    def ids(self) -> np.ndarray:
        """Every id stored in the index (an IDMap2's table), for telling tombstones apart."""
        id_map = getattr(self.index, "id_map", None)
        if id_map is None:
            raise InvalidInputError(f"the {self.factory} index keeps no id table")
        return np.asarray(faiss.vector_to_array(id_map), dtype=np.int64)

    def clone(self) -> VectorIndex:
        """A deep copy: a writer mutates the copy while readers keep searching the original."""
        refuse_if_on_disk(self.index, "copy")  # FAISS cannot clone on-disk inverted lists
        with self._lock:
            if self.binary:  # faiss.clone_binary_index cannot clone an IDMap2
                copy = faiss.deserialize_index_binary(faiss.serialize_index_binary(self.index))
                return VectorIndex(copy, self.factory)
            return VectorIndex(faiss.clone_index(self.index), self.factory)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (approximate for PQ and SQ; for binary the +-1/sqrt(dim)
        sign vectors, which score like its search does), for exact scoring of a filtered set."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.binary:
            codes = np.empty((len(ids), self.dim // 8), dtype=np.uint8)
            for row, key in enumerate(ids.tolist()):
                codes[row] = self.index.reconstruct(key)
            return binary_to_float(codes, self.dim)
        out: np.ndarray = self.index.reconstruct_batch(ids)  # IVF: its direct map exists since __init__
        return out

    def save(self, path: Path) -> None:
        """Write the index to ``path`` through Python's file object. FAISS's own file writer
        reports a failed close (a disk that filled in its last block) only on stderr and raises
        nothing, leaving a truncated file that would then be hashed and published; here every
        write and the close raise their OSError (ENOSPC included)."""
        failures: list[OSError] = []
        with path.open("wb") as fh:

            def write(chunk: bytes) -> int:
                try:
                    fh.write(chunk)
                except OSError as exc:  # kept: the last chunk is written from a C++ destructor,
                    failures.append(exc)  # which cannot raise
                    raise
                return len(chunk)

            writer = getattr(faiss, "PyCallbackIOWriter")(write)  # noqa: B009 - missing from the stubs
            if self.binary:
                faiss.write_index_binary(self.index, writer)
            else:
                faiss.write_index(self.index, writer)
            del writer  # flushes FAISS's buffer into ``fh``
            if failures:
                raise failures[0]
            fh.flush()
            os.fsync(fh.fileno())  # a full disk shows here at the latest, not after the publish

    @classmethod
    def load(cls, path: Path, factory: str | None = None) -> VectorIndex:
        """Read a FAISS file. ``factory`` (the manifest's) says whether it is a binary index;
        the file's own header must agree. Without one, the header decides."""
        if not path.is_file():
            raise IndexFormatError(f"{path}: missing")
        try:
            with path.open("rb") as fh:
                binary_file = fh.read(len(_BINARY_MAGIC)) == _BINARY_MAGIC
        except OSError as exc:
            raise IndexFormatError(f"{path}: unreadable ({exc})") from exc
        if factory is None:
            factory = BINARY_FACTORY if binary_file else FLAT_FACTORY
        if is_binary_factory(factory) != binary_file:
            want, got = ("binary", "float") if is_binary_factory(factory) else ("float", "binary")
            raise IndexFormatError(f"{path}: holds a {got} FAISS index, but {factory!r} is a {want} one")
        try:
            index = faiss.read_index_binary(str(path)) if binary_file else faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as exc:  # FAISS reports truncation and bad headers this way
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise IndexFormatError(f"{path}: not a readable FAISS index ({first})") from exc
        return cls(index, factory)


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """Sign bits, packed 8 to a byte (dim/8 bytes per vector): bit set where the value is > 0."""
    return np.packbits(vectors > 0, axis=-1)


def binary_to_float(codes: np.ndarray, dim: int) -> np.ndarray:
    """Packed sign bits back to +-1/sqrt(dim) float32 vectors (unit length)."""
    out: np.ndarray = np.unpackbits(codes, axis=-1, count=dim).astype(np.float32)
    out *= 2
    out -= 1
    out /= np.float32(math.sqrt(dim))
    return out


def _widen_sq_ranges(index: Any) -> None:
    """Widen each dimension's learnt 8-bit range by SQ8_RANGE_MARGIN a side, and give a range
    of zero width (a one-vector sample) a floor: a vector added later outside the sample's
    range would otherwise be clipped (or, on a zero-width range, lose that dimension)."""
    sq_index = _inner(index)
    if not isinstance(sq_index, faiss.IndexScalarQuantizer):
        return
    sq = sq_index.sq
    if sq.qtype != faiss.ScalarQuantizer.QT_8bit:
        return
    trained = faiss.vector_to_array(sq.trained).astype(np.float32)
    d = len(trained) // 2  # QT_8bit: d minima, then d widths
    vmin, vdiff = trained[:d], trained[d:]
    margin = np.maximum(vdiff * SQ8_RANGE_MARGIN, 0.5 / math.sqrt(d) - vdiff / 2)
    faiss.copy_array_to_vector(np.concatenate([vmin - margin, vdiff + 2 * margin]), sq.trained)


def gpu_count() -> int:
    """GPUs visible to faiss: 0 with faiss-cpu."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _inner(index: faiss.Index) -> Any:
    """The index inside an IDMap wrapper, downcast to its concrete class (None for a binary one)."""
    if isinstance(index, faiss.IndexBinary):
        return None
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        return faiss.downcast_index(index.index)
    return faiss.downcast_index(index)


def _hnsw(index: faiss.Index) -> Any:
    inner = _inner(index)
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def _ivf(index: faiss.Index) -> Any:
    inner = _inner(index)
    return faiss.extract_index_ivf(inner) if isinstance(inner, faiss.IndexIVF) else None
