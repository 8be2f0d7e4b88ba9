"""The live index of a sharded folder: :class:`LiveIndex`'s interface over one LiveIndex per shard.

Each shard keeps everything a live index has (its own writer thread and group commit, write
log, BM25, compaction, reload), so a shard is served exactly as an unsharded index is. Searches
read :attr:`ShardedLiveIndex.current`, a :class:`ShardedFolder` of the shards' current
snapshots, replaced whenever one of them swaps. A write is split by the routing rule and each
part goes to its shard's writer; the caller is answered once every part is durable. The parts
commit independently, so a search in between may see one shard's part before another's
(core.index.sharding says what a reader can see during such a write).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence

import numpy as np

from core.errors import IndexFormatError
from core.index.compaction import CompactionPolicy
from core.index.doc_store import Document
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.sharded_folder import ShardedFolder
from core.index.sharding import ShardedManifest, group_by_shard
from service.live_index import LiveIndex, WriteResult, merged


class ShardedLiveIndex:
    def __init__(
        self,
        folder: ShardedFolder,
        check: Callable[[Manifest], None],
        busy_timeout_s: float = 10.0,
        on_swap: Callable[[ShardedFolder], None] | None = None,
        policy: CompactionPolicy | None = None,
        bm25_wait_s: float = 0.1,
    ) -> None:
        self.path = folder.path
        self.top = folder.top
        self._on_swap = on_swap
        self._lock = threading.Lock()
        self._current = folder
        self.lives = [
            LiveIndex(shard, check, busy_timeout_s, self._swapped_shard(i), policy, bm25_wait_s)
            for i, shard in enumerate(folder.shards)
        ]

    def _swapped_shard(self, i: int) -> Callable[[IndexFolder], None]:
        def swapped(snapshot: IndexFolder) -> None:
            with self._lock:  # shards swap on their own threads: one composite at a time
                self._current = self._current.with_shard(i, snapshot)
                current = self._current
            if self._on_swap is not None:
                self._on_swap(current)

        return swapped

    @property
    def current(self) -> ShardedFolder:
        return self._current

    @property
    def swapping(self) -> bool:
        return any(live.swapping for live in self.lives)

    @property
    def compactions(self) -> int:
        return sum(live.compactions for live in self.lives)

    def _groups(self, ids: Sequence[str]) -> list[list[int]]:
        return group_by_shard(ids, self.top.route, len(self.lives))

    async def upsert(self, docs: Sequence[Document], vectors: np.ndarray) -> WriteResult:
        parts = [
            self.lives[shard].upsert([docs[i] for i in rows], vectors[np.asarray(rows)])
            for shard, rows in enumerate(self._groups([d.id for d in docs]))
            if rows
        ]
        results = await asyncio.gather(*parts)  # acknowledged once every shard's part is durable
        return merged(self.current.generation, results)

    async def delete(self, doc_ids: Sequence[str]) -> WriteResult:
        ids = list(doc_ids)
        parts = [
            self.lives[shard].delete([ids[i] for i in rows])
            for shard, rows in enumerate(self._groups(ids))
            if rows
        ]
        results = await asyncio.gather(*parts)
        return merged(self.current.generation, results, ids)

    def reload(self, force: bool = False) -> bool:
        """Every shard moves to its newest generation. A rebuild into another shard count cannot
        be swapped in shard by shard: that is refused, and the old index goes on serving."""
        top = ShardedManifest.read(self.path)
        if top.shards != self.top.shards or top.shard_dirs != self.top.shard_dirs:
            raise IndexFormatError(
                f"{self.path}: rebuilt with {top.shards} shards (this service serves {self.top.shards}); "
                "restart the service to serve it"
            )
        swapped = [live.reload(force) for live in self.lives]
        self.top = top
        return any(swapped)

    def close(self) -> None:
        for live in self.lives:
            live.close()
