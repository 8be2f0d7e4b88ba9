"""The engine of a Ray Serve ingress replica: :class:`SearchEngine`'s routes, bounds and errors
unchanged, its model calls sent to the model deployment and its index work fanned out to the
shard deployments (service.ray_serve.fanout). No model and no index in this process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from core.embedding import query_vectors
from core.encoder import Encoded
from core.errors import IndexFormatError
from core.index.bm25 import TermStats
from core.index.doc_store import Document
from core.index.feedback import check_feedback, expand
from core.index.folder import HYBRID_DEPTH, Hit
from core.index.lexical import check_fusion
from core.index.manifest import Manifest
from core.index.shard_merge import merge_dense, merge_hybrid, part_doc_id, split_gid
from core.index.sharding import ShardedManifest, group_by_shard, read_layout
from service.engine import SearchEngine
from service.live_index import WriteResult, merged
from service.metrics import Metrics
from service.model_facts import ModelFacts, ScorerFacts
from service.ray_serve.fanout import Fanout
from service.ray_serve.shard_replica import ShardState
from service.reranker import Pair, Scorer
from service.search_query import Query
from service.settings import Settings


@dataclass
class RemoteState:
    """What /ready, /admin/reload and the metrics read of the index (LiveIndex.current's)."""

    path: Path
    count: int
    generation: int  # the sum of the shards' generations, as a sharded folder's in one process
    manifest: Manifest


class RemoteIndex:
    """LiveIndex's interface over the shard deployments."""

    def __init__(
        self,
        path: Path,
        top: ShardedManifest | None,
        shards: Sequence[Any],
        states: Sequence[ShardState],
        fanout: Fanout,
        write_fanout: Fanout | None = None,
    ) -> None:
        self.path = path
        self.top = top  # None: an unsharded folder served as one shard (replicated serving)
        self.shards = list(shards)
        self.states = list(states)
        self.fanout = fanout
        # A write may wait for its shard's writer lock (write_busy_timeout_s) before it commits.
        self.write_fanout = write_fanout or fanout
        self.swapping = False
        self.compactions = 0

    @property
    def current(self) -> RemoteState:
        return RemoteState(
            self.path,
            sum(s.count for s in self.states),
            sum(s.generation for s in self.states),
            self.states[0].manifest,
        )

    def _seen(self, shard: int) -> int:
        """The generation this ingress has seen acknowledged for a shard: a replica behind it
        reloads before it answers (read-your-writes through this ingress)."""
        return self.states[shard].generation

    def _shard_of(self, doc_id: str) -> int:
        return 0 if self.top is None else self.top.route(doc_id)

    def _call(self, i: int, method: str, *args: Any) -> tuple[str, Callable[[], Awaitable[Any]]]:
        """One shard's handle call, named for its errors."""
        bound = getattr(self.shards[i], method)
        name = "the index" if self.top is None else f"shard {i}"
        return name, lambda: bound.remote(*args)

    def _groups(self, ids: Sequence[str]) -> list[list[int]]:
        if self.top is None:
            return [list(range(len(ids)))]
        return group_by_shard(ids, self.top.route, len(self.shards))

    # ------------------------------------------------------------ reads
    async def search(self, vectors: np.ndarray, query: Query) -> list[list[Hit]]:
        if query.hybrid:
            return await self._hybrid(vectors, query)
        per_shard: list[list[list[Hit]]] = await self.fanout.gather(
            [self._call(i, "search", vectors, query, self._seen(i)) for i in range(len(self.shards))]
        )
        return merge_dense(per_shard, query.k)

    async def _hybrid(self, vectors: np.ndarray, query: Query) -> list[list[Hit]]:
        """As core.index.feedback's hybrid search: with feedback, a first round for the top
        ``feedback`` hits, their vectors from their shards, and the moved queries searched."""
        check_feedback(query.feedback)
        if query.feedback:
            first = await self._hybrid_once(vectors, replace(query, k=query.feedback, feedback=0))
            found = await self._vectors([hit.id for hits in first for hit in hits])
            vectors = np.stack(
                [
                    expand(v, np.array([found[h.id] for h in hits if h.id in found]).reshape(-1, len(v)))
                    for v, hits in zip(vectors, first, strict=True)
                ]
            )
        return await self._hybrid_once(vectors, replace(query, feedback=0))

    async def _vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these documents, each from its shard (those live there)."""
        ids = sorted(set(doc_ids))
        groups = [(i, rows) for i, rows in enumerate(self._groups(ids)) if rows]
        parts = await self.fanout.gather(
            [self._call(i, "vectors", [ids[r] for r in rows], self._seen(i)) for i, rows in groups]
        )
        return {doc_id: vector for part in parts for doc_id, vector in part.items()}

    async def _hybrid_once(self, vectors: np.ndarray, query: Query) -> list[list[Hit]]:
        """As core.index.sharded_folder's hybrid search: the shards' BM25 statistics summed
        first, every shard's part, one fusion; then the hits' documents from their shards."""
        check_fusion(query.fusion, query.alpha)
        n = max(query.k, HYBRID_DEPTH)
        size = len(self.shards)
        stats_by_shard = await self.fanout.gather(
            [self._call(i, "term_stats", query.texts, self._seen(i)) for i in range(size)]
        )
        stats = [sum((s[q] for s in stats_by_shard), TermStats()) for q in range(len(query.texts))]
        parts_by_shard = await self.fanout.gather(
            [self._call(i, "hybrid_parts", vectors, query, n, stats, self._seen(i)) for i in range(size)]
        )
        ranked: list[list[tuple[int, str, float]]] = []
        wanted: list[list[str]] = [[] for _ in range(size)]
        for q in range(len(query.texts)):
            fused = merge_hybrid([parts[q] for parts in parts_by_shard], n, query.fusion, query.alpha)
            row = []
            for gid, score in zip(
                fused.iids[: query.k].tolist(), fused.scores[: query.k].tolist(), strict=True
            ):
                shard, iid = split_gid(int(gid), size)
                doc_id = part_doc_id(parts_by_shard[shard][q], iid)
                if doc_id:
                    row.append((shard, doc_id, float(score)))
                    wanted[shard].append(doc_id)
            ranked.append(row)
        found = await self.fanout.gather(
            [self._call(i, "fetch", sorted(set(wanted[i])), self._seen(i)) for i in range(size)]
        )
        out: list[list[Hit]] = []
        for row in ranked:
            hits = []
            for shard, doc_id, score in row:
                doc = found[shard].get(doc_id)
                if doc is not None:  # deleted since the part was taken
                    hits.append(Hit(doc.id, score, doc.text, doc.metadata))
            out.append(hits)
        return out

    async def get(self, doc_id: str) -> Document | None:
        i = self._shard_of(doc_id)
        result: Document | None = await self.fanout.call(*self._call(i, "get", doc_id, self._seen(i)))
        return result

    # ------------------------------------------------------------ writes
    def _note(self, shard: int, state: ShardState) -> None:
        if state.generation >= self.states[shard].generation:
            self.states[shard] = state

    async def upsert(self, docs: Sequence[Document], vectors: np.ndarray) -> WriteResult:
        groups = [(i, rows) for i, rows in enumerate(self._groups([d.id for d in docs])) if rows]
        answers = await self._write(
            [
                self._call(i, "upsert", [docs[r] for r in rows], vectors[np.asarray(rows)])
                for i, rows in groups
            ],
            [i for i, _ in groups],
        )
        return merged(self.current.generation, answers)

    async def delete(self, doc_ids: Sequence[str]) -> WriteResult:
        ids = list(doc_ids)
        groups = [(i, rows) for i, rows in enumerate(self._groups(ids)) if rows]
        answers = await self._write(
            [self._call(i, "delete", [ids[r] for r in rows]) for i, rows in groups], [i for i, _ in groups]
        )
        return merged(self.current.generation, answers, ids)

    async def _write(self, calls: list[tuple[str, Any]], shards: list[int]) -> list[WriteResult]:
        """Every shard's part of one write, never retried (a replica may have committed before
        it died: the client decides). The parts that committed are noted even when another
        failed, so later reads through this ingress see them; then the first failure is raised."""
        answers = await self.write_fanout.settle(calls, retry=False)
        for i, answer in zip(shards, answers, strict=True):
            if not isinstance(answer, BaseException):
                self._note(i, answer[1])
        failed = [a for a in answers if isinstance(a, BaseException)]
        if failed:
            raise failed[0]
        return [a[0] for a in answers]  # type: ignore[index]

    async def reload(self) -> bool:
        """Every shard moves to its newest generation (one replica each now; the others by
        their own polling, or at the next request that names the newer generation). A rebuild
        into another layout is refused, as in one process: restart to serve it."""
        layout = read_layout(self.path)
        if (layout.shards if layout else 1) != len(self.shards) or (
            layout is not None and self.top is not None and layout.shard_dirs != self.top.shard_dirs
        ):
            raise IndexFormatError(
                f"{self.path}: rebuilt with another shard layout (this service serves "
                f"{len(self.shards)} shard(s)); restart the service to serve it"
            )
        answers = await self.fanout.gather([self._call(i, "reload") for i in range(len(self.shards))])
        for i, (_, state) in enumerate(answers):
            # The folder's newest publication as the shard sees it now: taken as it is, so a
            # rebuild that started its generations again (a repair) is followed, not refused.
            self.states[i] = state
        if layout is not None:
            self.top = layout
        return any(swapped for swapped, _ in answers)

    def close(self) -> None:
        pass


class RemoteScorer(Scorer):
    def __init__(self, facts: ScorerFacts, model: Any, fanout: Fanout) -> None:
        self.labels, self.positive, self.weight = facts.labels, facts.positive, facts.weight
        self.model = model
        self.fanout = fanout

    async def probabilities(self, pairs: Sequence[Pair]) -> np.ndarray:
        result: np.ndarray = await self.fanout.call(
            "the cross-encoder", lambda: self.model.rerank_probabilities.remote(list(pairs))
        )
        return result


class RayEngine(SearchEngine):
    def __init__(
        self,
        settings: Settings,
        facts: ModelFacts,
        model: Any,
        index: RemoteIndex,
        metrics: Metrics | None = None,
    ) -> None:
        # Not SearchEngine.__init__: that one loads a model and opens an index in this process.
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.encoder = facts.encoder
        self.precision_quality = facts.precision_quality
        self.metrics.set_encoder(facts.encoder.device, facts.encoder.precision, facts.drift, facts.threads)
        self.index_path = index.path
        self.index = index  # type: ignore[assignment]
        self.model = model
        self._threads = facts.threads
        # A model call waits up to queue_timeout_s in the replica's queue (then 503 there).
        self.model_fanout = Fanout(
            settings.queue_timeout_s + settings.fanout_timeout_s, settings.fanout_retries
        )
        self.reranker = RemoteScorer(facts.reranker, model, self.model_fanout) if facts.reranker else None
        self._swapped(index.current)  # type: ignore[arg-type]

    @property
    def threads(self) -> int:
        """The encoder replica's intra-op threads (not this process's: it runs no model)."""
        return self._threads

    async def _encode(self, texts: Sequence[str]) -> Encoded:
        result: Encoded = await self.model_fanout.call(
            "the encoder", lambda: self.model.encode.remote(list(texts))
        )
        return result

    async def _search_index(self, embeddings: np.ndarray, query: Query) -> list[list[Hit]]:
        index: RemoteIndex = self.index  # type: ignore[assignment]
        return await index.search(query_vectors(index.current.manifest, embeddings), query)

    async def _get(self, doc_id: str) -> Document | None:
        index: RemoteIndex = self.index  # type: ignore[assignment]
        return await index.get(doc_id)

    async def _reload(self) -> bool:
        index: RemoteIndex = self.index  # type: ignore[assignment]
        swapped = await index.reload()
        self._swapped(index.current)  # type: ignore[arg-type]
        return swapped

    def close(self) -> None:
        pass  # the deployments are Serve's to stop
