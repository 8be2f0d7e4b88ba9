"""The search engine the routes call: encoder + live index + batching, with bounds. No FastAPI here.

Model calls go through a :class:`MicroBatcher` (one worker thread, concurrent requests share a
forward pass). Index searches and document reads run in the default thread pool: FAISS CPU search
is thread-safe and the snapshot it reads is never mutated (see :mod:`service.live_index`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core import model_thread
from core.cross_encoder import CrossEncoder
from core.device import available_cpus, configure_threads
from core.embedding import drift_vs_fp32, index_texts, load_for_index, query_vectors, set_precision
from core.encoder import Encoded, Encoder
from core.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    SemsearchError,
    UnsupportedError,
)
from core.fusion_names import DEFAULT_FUSION
from core.index.compaction import CompactionPolicy
from core.index.doc_rules import id_problem, metadata_json, metadata_problem, text_problem
from core.index.doc_store import DocStore, Document
from core.index.feedback import check_feedback
from core.index.folder import Hit, IndexFolder
from core.index.lexical import check_fusion, warm_lexical
from core.index.manifest import Manifest
from core.index.mutable import recover
from core.index.sharded_folder import ShardedFolder, open_for_search
from core.index.sharding import serving_paths
from core.unit_vectors import l2_normalise
from service.live_index import LiveIndex, WriteResult
from service.metrics import Metrics
from service.micro_batcher import MicroBatcher
from service.model_facts import EncoderFacts
from service.reranker import Reranker, Scorer
from service.search_query import Query
from service.settings import Settings
from service.sharded_live import ShardedLiveIndex

log = logging.getLogger(__name__)
DEFAULT_K = 10


@dataclass
class SearchResult:
    hits: list[Hit]
    truncated: bool
    took_ms: float


def take(encoded: Encoded, start: int, stop: int) -> Encoded:
    return Encoded(
        encoded.embeddings[start:stop], encoded.truncated[start:stop], encoded.token_counts[start:stop]
    )


class SearchEngine:
    def __init__(
        self,
        encoder: Encoder,
        index: IndexFolder | ShardedFolder,
        settings: Settings,
        metrics: Metrics | None = None,
        cross_encoder: CrossEncoder | None = None,
    ) -> None:
        self.encoder: Encoder | EncoderFacts = encoder
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.precision_quality = prepare_precision(
            encoder, settings, index.manifest, index.store, self.metrics
        )
        self.index_path = index.path
        self._check_manifest(index.manifest)
        policy = (
            None
            if settings.read_only
            else CompactionPolicy(
                settings.compact_delta_ratio, settings.compact_deleted_ratio, settings.compact_min_vectors
            )
        )
        live = (
            self._check_manifest,
            settings.write_busy_timeout_s,
            self._swapped,
            policy,
            settings.bm25_refresh_wait_ms / 1000,
        )
        # A sharded folder: one LiveIndex per shard behind the same interface (service.sharded_live).
        self.index: LiveIndex | ShardedLiveIndex = (
            ShardedLiveIndex(index, *live) if isinstance(index, ShardedFolder) else LiveIndex(index, *live)
        )
        self._swapped(index)
        self.batcher = encoder_batcher(encoder, settings, self.metrics)
        self.reranker: Scorer | None = (
            Reranker(cross_encoder, settings, self.metrics) if cross_encoder else None
        )

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics | None = None) -> SearchEngine:
        """Load on the model thread (core.model_thread): the thread every model call runs on."""
        return model_thread.call(cls._load, settings, metrics)

    @classmethod
    def _load(cls, settings: Settings, metrics: Metrics | None = None) -> SearchEngine:
        if settings.index_dir is None:
            raise InvalidInputError("no index configured: pass --index DIR or set SEMSEARCH_INDEX_DIR")
        threads = configure_threads(settings.threads)
        log.info(
            "torch intra-op threads: %d (available CPUs, cgroup quota included: %d)",
            threads,
            available_cpus(),
        )
        if not settings.read_only:  # before this process opens docs.sqlite (its WAL checked)
            for path in serving_paths(settings.index_dir):
                recover(path)
        index = open_for_search(settings.index_dir)
        try:
            encoder = load_for_index(index.manifest, index.path, settings.model_dir, settings.device)
            cross = (
                CrossEncoder.load(settings.reranker_dir, settings.device) if settings.reranker_dir else None
            )
            if cross is not None:
                cross.to_precision(settings.reranker_precision)
            return cls(encoder, index, settings, metrics, cross)
        except Exception:
            index.close()
            raise

    def close(self) -> None:
        self.batcher.close()
        if self.reranker is not None:
            self.reranker.close()
        self.index.close()

    def _check_manifest(self, manifest: Manifest) -> None:
        manifest.check_model(
            self.encoder.fingerprint, self.encoder.dim, self.index_path, self.encoder.max_seq_length
        )

    def warm_bm25(self) -> threading.Thread | None:
        """With hybrid the default search, BM25 is built at start in the background
        (core.index.lexical.warm_lexical)."""
        snapshot = self.index.current
        if self.settings.search_mode != "hybrid" or not isinstance(snapshot, IndexFolder | ShardedFolder):
            return None  # a remote index's shard replicas build their own (service.ray_serve)
        return warm_lexical(snapshot.shards if isinstance(snapshot, ShardedFolder) else [snapshot])

    def _swapped(self, folder: IndexFolder | ShardedFolder) -> None:
        self.metrics.set_index(folder.count, folder.generation)

    @property
    def threads(self) -> int:
        """The encoder's intra-op threads (this process's)."""
        return torch.get_num_threads()

    @property
    def ready(self) -> bool:
        return not self.index.swapping

    # ------------------------------------------------------------ bounds
    def check_texts(self, texts: Sequence[str], what: str = "texts") -> None:
        s = self.settings
        if len(texts) > s.max_texts_per_request:
            raise PayloadTooLargeError(
                f"{len(texts)} {what} in one request; the limit is {s.max_texts_per_request}"
            )
        for i, text in enumerate(texts):
            if len(text) > s.max_text_chars:
                raise PayloadTooLargeError(
                    f"{what}[{i}] has {len(text)} characters; the limit is {s.max_text_chars}"
                )

    def check_k(self, k: int | None) -> int:
        k = min(DEFAULT_K, self.settings.max_k) if k is None else k
        if not 1 <= k <= self.settings.max_k:
            raise InvalidInputError(f"k must be between 1 and {self.settings.max_k}, got {k}")
        return k

    def check_pairs(self, n: int, what: str) -> None:
        """Cross-encoder work has its own bound: each pair is a forward pass of ~20 ms on CPU."""
        limit = self.settings.max_rerank_pairs
        if n > limit:
            raise PayloadTooLargeError(
                f"{n} {what} for the cross-encoder in one request; the limit is {limit} "
                "(SEMSEARCH_MAX_RERANK_PAIRS)"
            )

    def check_hits(self, queries: int, k: int) -> None:
        limit = self.settings.max_hits_per_request
        if queries * k > limit:
            raise PayloadTooLargeError(
                f"{queries} queries x k {k} = {queries * k} hits in one request; the limit is {limit} "
                "(SEMSEARCH_MAX_HITS_PER_REQUEST): lower k or send fewer queries"
            )

    def check_answer(self, hits: Iterable[Hit], include: frozenset[str]) -> None:
        """Bound the answer's size by what it carries (texts and metadata, when included):
        documents indexed from files have no per-text limit, so hits x k alone does not bound it."""
        if not include:
            return
        limit = self.settings.max_response_bytes
        total = 0
        for hit in hits:  # measured as JSON: escapes count, and so do ids
            total += len(hit.id) + 40
            if "text" in include:
                total += len(json.dumps(hit.text, ensure_ascii=False).encode("utf-8", "replace"))
            if "metadata" in include and hit.metadata:
                # allow_nan: an index built before the store's rules may hold NaN (answered as null)
                total += len(json.dumps(hit.metadata, ensure_ascii=False).encode("utf-8", "replace"))
            if total > limit:
                raise PayloadTooLargeError(
                    f"the hits' texts and metadata exceed {limit} bytes (SEMSEARCH_MAX_RESPONSE_BYTES): "
                    'lower k, or leave them out with "include": [] (ids and scores) or ["metadata"]'
                )

    def check_documents(self, docs: Sequence[Document]) -> None:
        """Refuse (before anything is stored) what could not be read back, searched or filtered
        afterwards: the store's rules (core.index.doc_rules), then this service's size limits."""
        self.check_texts([d.text for d in docs], "documents")
        limit = self.settings.max_metadata_bytes
        for i, doc in enumerate(docs):
            problem = (
                id_problem(doc.id)
                or text_problem(doc.text, "text")
                or metadata_problem(doc.metadata, self.settings.max_metadata_depth)
            )
            if problem:
                raise InvalidInputError(f"documents[{i}]: {problem}")
            size = len(metadata_json(doc.metadata).encode())
            if size > limit:
                raise PayloadTooLargeError(
                    f"documents[{i}].metadata is {size} bytes of JSON; the limit is {limit}"
                )

    def check_writable(self) -> None:
        if self.settings.read_only:
            raise ForbiddenError("this service is read-only (SEMSEARCH_READ_ONLY=true)")

    def require_reranker(self, missing: type[SemsearchError] = UnsupportedError) -> Scorer:
        """The reranker; without one, ``missing`` (400 for a search option, 404 for its routes)."""
        if self.reranker is None:
            raise missing(
                "no cross-encoder is loaded: start the service with SEMSEARCH_RERANKER_DIR (--reranker)"
            )
        return self.reranker

    # ------------------------------------------------------------ model
    async def encode(self, texts: Sequence[str], what: str = "texts") -> Encoded:
        self.check_texts(texts, what)
        return await self._encode(texts)

    async def _encode(self, texts: Sequence[str]) -> Encoded:
        """The model call (a subclass may run it elsewhere: service.ray_serve)."""
        return await self.batcher.submit(texts)

    # ------------------------------------------------------------ operations
    async def search(
        self,
        query: str,
        k: int | None = None,
        params: dict[str, int] | None = None,
        where: dict[str, Any] | None = None,
        hybrid: bool | None = None,
        alpha: float | None = None,
        fusion: str = DEFAULT_FUSION,
        feedback: int | None = None,
    ) -> SearchResult:
        results, took = await self.search_many(
            [query], k, params, where, "query", hybrid, alpha, fusion, feedback
        )
        hits, truncated = results[0]
        return SearchResult(hits, truncated, took)

    def search_query(
        self,
        queries: Sequence[str],
        k: int,
        params: dict[str, int] | None = None,
        where: dict[str, Any] | None = None,
        hybrid: bool | None = None,
        alpha: float | None = None,
        fusion: str = DEFAULT_FUSION,
        feedback: int | None = None,
    ) -> Query:
        """A request's search, its unset options the server's (SEMSEARCH_SEARCH_MODE,
        SEMSEARCH_SEARCH_FEEDBACK); options that only weigh a hybrid search are refused on a dense one."""
        hybrid = self.settings.search_mode == "hybrid" if hybrid is None else hybrid
        if not hybrid:
            for name, value in (("alpha", alpha), ("feedback", feedback)):
                if value is not None:
                    raise InvalidInputError(f"{name} is a hybrid search's option: send it with hybrid: true")
            return Query(list(queries), k, params, where)
        check_fusion(fusion, alpha)
        feedback = self.settings.search_feedback if feedback is None else feedback
        check_feedback(feedback)
        return Query(list(queries), k, params, where, True, alpha, fusion, feedback)

    async def search_many(
        self,
        queries: Sequence[str],
        k: int | None = None,
        params: dict[str, int] | None = None,
        where: dict[str, Any] | None = None,
        what: str = "queries",
        hybrid: bool | None = None,
        alpha: float | None = None,
        fusion: str = DEFAULT_FUSION,
        feedback: int | None = None,
    ) -> tuple[list[tuple[list[Hit], bool]], float]:
        """All queries in one model call, then the search over the snapshot of the moment: one
        FAISS search, or with ``hybrid`` (the server's default unless given) dense + BM25 fused
        per query, with ``feedback`` documents of pseudo-relevance feedback."""
        started = time.perf_counter()
        k = self.check_k(k)
        self.check_hits(len(queries), k)
        query = self.search_query(queries, k, params, where, hybrid, alpha, fusion, feedback)
        encoded = await self.encode(queries, what)
        hits = await self._search_index(encoded.embeddings, query)
        took = (time.perf_counter() - started) * 1000
        return [(h, bool(t)) for h, t in zip(hits, encoded.truncated, strict=True)], took

    async def _search_index(self, embeddings: np.ndarray, query: Query) -> list[list[Hit]]:
        """The index search of encoded queries, over the snapshot of the moment."""
        snapshot = self.index.current
        vectors = query_vectors(snapshot.manifest, embeddings)
        return await asyncio.to_thread(query.run, snapshot, vectors)

    async def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))  # each text encoded once
        self.check_texts(texts)
        encoded = await self.encode(texts)
        vectors = l2_normalise(encoded.embeddings)
        row = {t: i for i, t in enumerate(texts)}
        return [float(vectors[row[a]] @ vectors[row[b]]) for a, b in pairs]

    # ------------------------------------------------------------ documents
    async def get_document(self, doc_id: str) -> Document:
        doc = await self._get(doc_id)
        if doc is None:
            raise NotFoundError(f"no document with id {doc_id!r}")
        return doc

    async def _get(self, doc_id: str) -> Document | None:
        return await asyncio.to_thread(self.index.current.get, doc_id)

    async def upsert(
        self, docs: Sequence[Document], given: Sequence[Sequence[float] | None] | None = None
    ) -> WriteResult:
        """Upsert ``docs``; ``given[i]``, where not None, is document i's vector, computed by the
        client (checked against the index's dimension), and its text is not encoded."""
        self.check_writable()
        given = given if given is not None else [None] * len(docs)
        dim = self.encoder.dim
        vectors = np.empty((len(docs), dim), dtype=np.float32)
        for i, v in enumerate(given):  # every given vector checked before any model call
            if v is None:
                continue
            if len(v) != dim:
                raise InvalidInputError(
                    f"documents[{i}].vector has {len(v)} values; the index's dimension is {dim}"
                )
            with np.errstate(over="ignore"):
                vectors[i] = v
            norm = float(np.linalg.norm(vectors[i].astype(np.float64)))
            if not (np.isfinite(vectors[i]).all() and 0 < norm < np.inf):
                raise InvalidInputError(
                    f"documents[{i}].vector does not fit float32 with a usable length "
                    "(a value overflows, or every value rounds to zero)"
                )
        todo = [i for i, v in enumerate(given) if v is None]
        if todo:
            encoded = await self.encode([docs[i].text for i in todo], "documents")
            vectors[todo] = encoded.embeddings
        result = await self.index.upsert(docs, vectors)
        self.metrics.writes.labels("upsert").inc(len(docs))
        return result

    async def delete(self, doc_id: str) -> WriteResult:
        self.check_writable()
        result = await self.index.delete([doc_id])
        if result.missing:
            raise NotFoundError(f"no document with id {doc_id!r}")
        self.metrics.writes.labels("delete").inc()
        return result

    async def reload(self) -> bool:
        try:
            swapped = await self._reload()
        except Exception:
            self.metrics.reloads.labels("failed").inc()
            raise
        self.metrics.reloads.labels("swapped" if swapped else "unchanged").inc()
        return swapped

    async def _reload(self) -> bool:
        return await asyncio.to_thread(self.index.reload)


def prepare_precision(
    encoder: Encoder, settings: Settings, manifest: Manifest, store: DocStore, metrics: Metrics
) -> dict[str, Any]:
    """Set the query encoder's precision as the settings and the index (its ``manifest``) ask,
    measured on the index's own documents (a sample from ``store``: core.embedding.set_precision),
    and publish it as metrics."""
    texts = index_texts(store)
    quality = set_precision(
        encoder, settings.precision, texts or None, settings.max_precision_drift, manifest.precision
    )
    drift = drift_vs_fp32(encoder, quality)
    metrics.set_encoder(str(encoder.device), encoder.precision, drift, torch.get_num_threads())
    return quality


def encoder_batcher(encoder: Encoder, settings: Settings, metrics: Metrics) -> MicroBatcher[str, Encoded]:
    """The encoder's micro-batcher: concurrent requests share its forward passes."""
    s = settings
    max_len = encoder.max_seq_length

    def encode_now(texts: list[str]) -> Encoded:
        return encoder.encode_detailed(texts, s.encode_batch_size, s.max_batch_tokens)

    return MicroBatcher(
        "encoder",
        encode_now,
        take,
        tokens=lambda text: min(max_len, 2 + len(text) // 4),  # an estimate: no tokenising here
        on_batch=lambda stats: metrics.observe_batch("encoder", stats),
        **s.batcher_bounds(),
    )
