"""One shard's searcher: a Ray Serve replica that serves one shard folder through the service's
own :class:`LiveIndex` (snapshots, group-committed writes, write log, BM25, compaction,
reload), exactly as a single-process service serves an unsharded index.

Replicas of one shard share its folder on storage every node can read. Each replica searches
its own snapshot; a write goes to whichever replica Serve picks, which commits it under the
folder's cross-process writer lock (one writer at a time, as with `semsearch index add` beside
a running service). The other replicas see it when they reload: every replica polls the folder
(``reload_interval_s``), and a request carries the generation its ingress has already
acknowledged for this shard (``min_generation``), so a replica behind it catches up first.

No torch is imported here: a searcher holds vectors, documents and BM25, never a model.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import model_thread
from core.errors import NotReadyError
from core.index.bm25 import TermStats
from core.index.compaction import CompactionPolicy
from core.index.doc_store import Document
from core.index.folder import Hit, IndexFolder
from core.index.lexical import warm_lexical
from core.index.manifest import Manifest
from core.index.mutable import recover
from core.index.shard_merge import HybridPart
from service.live_index import LiveIndex, WriteResult
from service.search_query import Query

log = logging.getLogger(__name__)


@dataclass
class ShardState:
    """What the ingress keeps of a shard: for /ready, the metrics and read-your-writes."""

    count: int
    generation: int
    manifest: Manifest


@dataclass
class ModelCheck:
    """The served encoder's facts every generation of a shard is checked against
    (Manifest.check_model: the one model check)."""

    fingerprint: str | None
    dim: int
    max_seq_length: int


class ShardReplica:
    async def __init__(self, settings: Any, path: str, model: Any) -> None:  # type: ignore[misc]  # Serve awaits it
        """``settings``: the service's Settings; ``model``: the model deployment's handle, asked
        for the encoder's facts (so a restarted replica checks against the same model)."""
        self.settings = settings
        self.path = Path(path)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.warm: threading.Thread | None = None  # BM25's build at start
        # Searches run on threads that keep off any OpenMP team, as in the single-process service.
        asyncio.get_running_loop().set_default_executor(model_thread.worker_pool())
        facts = await model.facts.remote()
        check = ModelCheck(facts.encoder.fingerprint, facts.encoder.dim, facts.encoder.max_seq_length)
        self.live = await asyncio.to_thread(self._open, check)

    def _open(self, model: ModelCheck) -> LiveIndex:
        s = self.settings

        def check(manifest: Manifest) -> None:
            manifest.check_model(model.fingerprint, model.dim, self.path, model.max_seq_length)

        if not s.read_only:  # before this process opens docs.sqlite (its WAL checked)
            recover(self.path)
        folder = IndexFolder.open(self.path)
        try:
            check(folder.manifest)
        except BaseException:
            folder.close()
            raise
        policy = (
            None
            if s.read_only
            else CompactionPolicy(s.compact_delta_ratio, s.compact_deleted_ratio, s.compact_min_vectors)
        )
        live = LiveIndex(folder, check, s.write_busy_timeout_s, None, policy, s.bm25_refresh_wait_ms / 1000)
        if s.reload_interval_s > 0:
            self._poller = threading.Thread(target=self._poll, args=(live,), name="shard-reload", daemon=True)
            self._poller.start()
        log.info("shard %s: generation %d, %d documents", self.path.name, folder.generation, folder.count)
        if s.search_mode == "hybrid":  # as the single-process server does (service.engine.warm_bm25)
            self.warm = warm_lexical([folder], name=f"bm25-warm-{self.path.name}")
        return live

    def _poll(self, live: LiveIndex) -> None:
        while not self._stop.wait(self.settings.reload_interval_s):
            try:
                live.reload()
            except Exception as exc:  # keep serving the old generation; say why in the log
                log.error("reload of %s failed: %s", self.path, exc)

    async def _live(self, min_generation: int = 0) -> LiveIndex:
        """The live index, at ``min_generation`` or later (what the caller has seen acknowledged)."""
        if self.live.current.generation < min_generation:
            await asyncio.to_thread(self.live.reload)
            if self.live.current.generation < min_generation:
                # Still behind what the ingress acknowledged (shared storage not caught up):
                # answering from this snapshot could bring back a deleted document.
                raise NotReadyError(
                    f"this replica of {self.path.name} is at generation {self.live.current.generation}, "
                    f"behind the acknowledged {min_generation}; retry"
                )
        return self.live

    def _state(self) -> ShardState:
        current = self.live.current
        return ShardState(current.count, current.generation, current.manifest)

    # ------------------------------------------------------------ what the ingress calls
    async def state(self) -> ShardState:
        return self._state()

    async def search(self, vectors: np.ndarray, query: Query, min_generation: int = 0) -> list[list[Hit]]:
        snapshot = (await self._live(min_generation)).current
        return await asyncio.to_thread(snapshot.search, vectors, query.k, query.params, query.where)

    async def term_stats(self, texts: list[str], min_generation: int = 0) -> list[TermStats]:
        snapshot = (await self._live(min_generation)).current
        return await asyncio.to_thread(lambda: [snapshot.lexical().stats(t) for t in texts])

    async def hybrid_parts(
        self, vectors: np.ndarray, query: Query, n: int, stats: list[TermStats], min_generation: int = 0
    ) -> list[HybridPart]:
        snapshot = (await self._live(min_generation)).current

        def run() -> list[HybridPart]:
            return [
                snapshot.hybrid_part(v, text, n, query.params, query.where, st, query.fusion, with_ids=True)
                for v, text, st in zip(vectors, query.texts, stats, strict=True)
            ]

        return await asyncio.to_thread(run)

    async def vectors(self, doc_ids: list[str], min_generation: int = 0) -> dict[str, np.ndarray]:
        """The stored vectors of these ids at this replica's snapshot (hybrid feedback's)."""
        snapshot = (await self._live(min_generation)).current
        return await asyncio.to_thread(snapshot.vectors_by_id, doc_ids)

    async def fetch(self, doc_ids: list[str], min_generation: int = 0) -> dict[str, Document]:
        """The documents of these ids at this replica's snapshot (a hybrid search's hits)."""
        snapshot = (await self._live(min_generation)).current

        def run() -> dict[str, Document]:  # two queries, whatever the count
            store = snapshot.store
            return {d.id: d for d in store.get_many(list(store.live_iids(doc_ids).values())).values()}

        return await asyncio.to_thread(run)

    async def get(self, doc_id: str, min_generation: int = 0) -> Document | None:
        snapshot = (await self._live(min_generation)).current
        return await asyncio.to_thread(snapshot.get, doc_id)

    async def upsert(self, docs: list[Document], vectors: np.ndarray) -> tuple[WriteResult, ShardState]:
        result = await (await self._live()).upsert(docs, vectors)  # answered once durable
        return result, self._written(result)

    async def delete(self, doc_ids: list[str]) -> tuple[WriteResult, ShardState]:
        result = await (await self._live()).delete(doc_ids)
        return result, self._written(result)

    def _written(self, result: WriteResult) -> ShardState:
        """The state after a write: at least its committed generation, even where the snapshot
        after it failed (the live index reopens it), so other replicas are asked for it."""
        state = self._state()
        state.generation = max(state.generation, result.generation)
        return state

    async def reload(self, force: bool = False) -> tuple[bool, ShardState]:
        live = self.live
        swapped = await asyncio.to_thread(live.reload, force)
        return swapped, self._state()

    async def compact(self, full: bool = False) -> bool:
        return (await self._live()).compact(full) is not None

    def pid(self) -> int:
        """This replica's process (the failover test kills it)."""
        return os.getpid()

    def __del__(self) -> None:
        self._stop.set()
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.join(timeout=10)  # never a reload of a closed index
        live = getattr(self, "live", None)
        if live is not None:
            del self.live  # a second destructor call finds none to close
            live.close()
