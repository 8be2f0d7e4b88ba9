"""The index a running service searches and updates: immutable snapshots, swapped atomically.

Searches read ``LiveIndex.current``, one :class:`IndexFolder` pinned to one generation: its
FAISS index is never mutated and its document store only shows rows of that generation. A
write (online upsert/delete) or a reload builds the NEXT snapshot beside it and swaps the
reference, so a search sees the whole of a batch or none of it, and never waits for a writer.

Writes are group-committed: a dedicated thread takes every write queued since the last commit,
applies them to a copy of the vectors through :class:`MutableIndex` (the indexer's own update
path, under the same cross-process writer lock) and publishes them as ONE generation: fsynced
SQLite rows, FAISS file and manifest. Each caller is answered only after that publish, so an
acknowledged write survives kill -9.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import IndexBusyError, IndexFormatError, SemsearchError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.mutable import MutableIndex, same_publication
from core.index.publish import as_disk_full

log = logging.getLogger(__name__)


@dataclass
class WriteResult:
    generation: int
    upserted: int = 0
    deleted: int = 0
    missing: list[str] | None = None


@dataclass
class _Write:
    docs: Sequence[Document]
    vectors: np.ndarray | None  # None: a delete of docs' ids
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]


class LiveIndex:
    def __init__(
        self,
        folder: IndexFolder,
        check: Callable[[Manifest], None],
        busy_timeout_s: float = 10.0,
        on_swap: Callable[[IndexFolder], None] | None = None,
    ) -> None:
        """``check`` rejects a manifest this service cannot serve (another model)."""
        self.path = folder.path
        self.current = folder
        self.swapping = False
        self._check = check
        self._busy_timeout_s = busy_timeout_s
        self._on_swap = on_swap
        self._swap_lock = threading.Lock()  # one reload or write publish at a time
        self._writes: queue.Queue[_Write | None] = queue.Queue()
        self._writer: threading.Thread | None = None

    # ------------------------------------------------------------ reload
    def reload(self, force: bool = False) -> bool:
        """Open the newest published generation beside the current one, then swap to it.
        Returns whether it swapped. The old snapshot is released when its last search ends."""
        with self._swap_lock:
            if not force and same_publication(Manifest.read(self.path), self.current.manifest):
                return False
            self.swapping = True
            try:
                try:
                    fresh = IndexFolder.open(self.path)
                except SemsearchError:
                    raise
                except Exception as exc:  # FAISS, SQLite or the OS on a damaged file: 503, not 500
                    raise IndexFormatError(
                        f"{self.path}: the published generation cannot be opened ({exc})"
                    ) from exc
                try:
                    self._check(fresh.manifest)
                except BaseException:
                    fresh.close()
                    raise
                self._swap(fresh)
            finally:
                self.swapping = False
            log.info(
                "reloaded %s: generation %d, %d documents", self.path, fresh.manifest.generation, fresh.count
            )
            return True

    def _swap(self, fresh: IndexFolder) -> None:
        self.current = fresh
        if self._on_swap is not None:
            self._on_swap(fresh)

    # ------------------------------------------------------------ writes
    async def upsert(self, docs: Sequence[Document], vectors: np.ndarray) -> WriteResult:
        return await self._submit(_Write(docs, vectors, *self._future()))

    async def delete(self, doc_ids: Sequence[str]) -> WriteResult:
        docs = [Document(i, "") for i in doc_ids]
        return await self._submit(_Write(docs, None, *self._future()))

    @staticmethod
    def _future() -> tuple[asyncio.AbstractEventLoop, asyncio.Future[WriteResult]]:
        loop = asyncio.get_running_loop()
        return loop, loop.create_future()

    async def _submit(self, write: _Write) -> WriteResult:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="index-writer", daemon=True)
            self._writer.start()
        self._writes.put(write)
        return await write.future

    def close(self) -> None:
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join(timeout=30)
        self.current.close()

    def _write_loop(self) -> None:
        while True:
            first = self._writes.get()
            if first is None:
                return
            batch = [first]
            while True:  # group commit: everything queued meanwhile goes into this generation
                try:
                    nxt = self._writes.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._writes.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)

    def _open_writer(self) -> MutableIndex:
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            current = self.current
            try:
                return MutableIndex(self.path, adopt=(current.manifest, current.vectors))
            except IndexBusyError:
                # `semsearch index add/compact` holds the lock: wait a bounded time for it.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _commit(self, batch: list[_Write]) -> None:
        answers: list[tuple[_Write, WriteResult | BaseException]] = []
        published: int | None = None  # set at the commit point: from then on the writes stand
        try:
            with self._swap_lock, self._open_writer() as index:
                self._check(index.manifest)
                for write in batch:
                    try:
                        answers.append((write, self._apply(index, write)))
                    except SemsearchError as exc:  # this write is invalid; the others go on
                        answers.append((write, exc))
                published = index.commit()
                fresh = IndexFolder(
                    self.path,
                    index.manifest,
                    index.vectors,
                    DocStore(self.path / DOCS_FILE, readonly=True, generation=published),
                )
            self._swap(fresh)
        except BaseException as exc:
            if published is None:  # nothing was published: every write in the group fails
                log.warning("online update of %s failed: %s", self.path, exc)
                failure: BaseException = as_disk_full(exc, "the online write", self.path) or exc
                answers = [(w, failure) for w in batch]
            else:  # published and durable: answered as done; the snapshot is reopened from disk
                log.error(
                    "generation %d of %s is published but its snapshot failed: %s", published, self.path, exc
                )
                self._reopen_after(published)
        for write, answer in answers:
            if isinstance(answer, WriteResult):
                answer.generation = max(self.current.manifest.generation, published or 0)
                write.loop.call_soon_threadsafe(_resolve, write.future, answer, None)
            else:
                write.loop.call_soon_threadsafe(_resolve, write.future, None, answer)

    def _reopen_after(self, generation: int) -> None:
        try:
            self.reload(force=True)
        except Exception as exc:  # the poller (RELOAD_INTERVAL_S) or /admin/reload tries again
            log.error("could not reopen %s at generation %d: %s", self.path, generation, exc)

    @staticmethod
    def _apply(index: MutableIndex, write: _Write) -> WriteResult:
        if write.vectors is None:
            res = index.delete([d.id for d in write.docs], commit=False)
            return WriteResult(0, deleted=res.deleted, missing=res.missing)
        res = index.upsert(write.docs, write.vectors, commit=False)
        return WriteResult(0, upserted=res.added + res.replaced)


def _resolve(
    future: asyncio.Future[WriteResult], value: WriteResult | None, exc: BaseException | None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert value is not None
        future.set_result(value)
