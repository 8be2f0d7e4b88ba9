"""The index a running service searches and updates: immutable snapshots, swapped atomically.

Searches read ``LiveIndex.current``, one :class:`IndexFolder` pinned to one generation: its
segments are never mutated and its document store only shows rows of that generation. A write
(online upsert/delete) or a reload makes the NEXT snapshot beside it and swaps the reference,
so a search sees the whole of a batch or none of it, and never waits for a writer.

Writes are group-committed: a dedicated thread takes every write queued since the last commit
and appends them through :class:`MutableIndex` (the indexer's own update path, under the same
cross-process writer lock) to the write log as ONE transaction: one fsync, whatever the index's
size. Each caller is answered only after it, so an acknowledged write survives kill -9. The
next snapshot replays that tail (:meth:`IndexFolder.advance`): a new small delta segment.

Compaction runs in a background thread when the policy says it is due (core.index.compaction):
it builds the new base from a snapshot while searches and writes go on, then the writer thread
installs it between two groups of writes (the only moment writes wait for it).

Reload (the poller, ``/admin/reload``) replays the log tail that other processes wrote, or opens
the folder again when its base changed (a rebuild or another process's compaction).
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

from core import model_thread
from core.durable import as_disk_full
from core.errors import IndexBusyError, IndexFormatError, SemsearchError
from core.index.compaction import CompactionPolicy, NewBase, prepare
from core.index.doc_store import Document
from core.index.folder import IndexFolder, StaleSnapshot
from core.index.lexical import SharedLexical
from core.index.manifest import Manifest, same_publication
from core.index.mutable import MutableIndex
from core.index.segments import release_free_memory

log = logging.getLogger(__name__)
_RETRY_S = 60.0  # a failed compaction is tried again after this long (and the next write)


@dataclass
class WriteResult:
    generation: int
    upserted: int = 0
    deleted: int = 0
    missing: list[str] | None = None


def merged(generation: int, parts: Sequence[WriteResult], ids: Sequence[str] | None = None) -> WriteResult:
    """One write's answer from its shards' parts: the counts summed; for a delete of ``ids``,
    the ids no shard had, in the caller's order. (A sharded index in this process and the Ray
    ingress both answer through this.)"""
    missing = None
    if ids is not None:
        gone = {m for r in parts for m in (r.missing or [])}
        missing = [i for i in ids if i in gone]
    return WriteResult(
        generation,
        upserted=sum(r.upserted for r in parts),
        deleted=sum(r.deleted for r in parts),
        missing=missing,
    )


@dataclass
class _Write:
    docs: Sequence[Document]
    vectors: np.ndarray | None  # None: a delete of docs' ids
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[WriteResult]


@dataclass
class _Install:
    """A compaction's new base, for the writer thread to install between two groups."""

    base: NewBase


class LiveIndex:
    def __init__(
        self,
        folder: IndexFolder,
        check: Callable[[Manifest], None],
        busy_timeout_s: float = 10.0,
        on_swap: Callable[[IndexFolder], None] | None = None,
        policy: CompactionPolicy | None = None,
        bm25_wait_s: float = 0.1,
    ) -> None:
        """``check`` rejects a manifest this service cannot serve (another model); ``policy``:
        when this service compacts (None: never; a read-only service does not); ``bm25_wait_s``:
        how long a hybrid search waits for its generation's BM25 (core.index.lexical.SharedLexical)."""
        self.path = folder.path
        self._bm25_wait_s = bm25_wait_s
        self.lexical = SharedLexical(bm25_wait_s)  # BM25 for every snapshot, near-real-time
        folder.shared_lexical = self.lexical
        self.current = folder
        self.swapping = False
        self._check = check
        self._busy_timeout_s = busy_timeout_s
        self._on_swap = on_swap
        self._swap_lock = threading.Lock()  # one reload or write publish at a time
        self._start_lock = threading.Lock()
        self._writes: queue.Queue[_Write | _Install | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._policy = policy
        self._compactor: threading.Thread | None = None
        self.compactions = 0  # installed by this process (for /ready and tests)
        self._compact_after = 0.0  # monotonic time before which no compaction starts (after a failure)
        self._install_pending = False

    # ------------------------------------------------------------ reload
    def reload(self, force: bool = False) -> bool:
        """Move to the newest committed generation: replay the log tail other writers appended,
        or open the folder again when its base changed. Returns whether it swapped. The old
        snapshot is released when its last search ends."""
        with self._swap_lock:
            current = self.current
            if not force and same_publication(Manifest.read(self.path), current.manifest):
                try:
                    fresh = current.advance()
                except StaleSnapshot:
                    fresh = None  # compacted or rebuilt meanwhile: open it again below
                except SemsearchError:
                    raise
                except Exception as exc:  # SQLite or the OS on a damaged file: 503, not 500
                    raise IndexFormatError(f"{self.path}: the write log cannot be read ({exc})") from exc
                if fresh is current:
                    return False
                if fresh is not None:
                    self._swap(fresh)
                    return True
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
            log.info("reloaded %s: generation %d, %d documents", self.path, fresh.generation, fresh.count)
            return True

    def _swap(self, fresh: IndexFolder, same_ids: bool = False) -> None:
        """``same_ids``: ``fresh`` numbers documents as the current snapshot does (a compaction
        keeps int ids). A snapshot advanced from the current one does too; one opened afresh may
        be another build's, whose int ids name other documents, so the BM25 of earlier
        snapshots is not used for it."""
        old = self.current
        freed = len(fresh.segments.deltas) < len(old.segments.deltas) or fresh.vectors is not old.vectors
        if not (same_ids or fresh.shared_lexical is self.lexical):
            self.lexical = SharedLexical(self._bm25_wait_s)
        fresh.shared_lexical = self.lexical
        self.current = fresh
        del old  # the old snapshot goes when its last search ends (often: now)
        if freed:
            release_free_memory()  # a merge or a compaction freed segments: return their pages
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
        self._ensure_writer()
        self._writes.put(write)
        return await write.future

    def _ensure_writer(self) -> None:
        with self._start_lock:  # never the swap lock: the event loop calls this
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="index-writer", daemon=True)
                self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join(timeout=30)
        if self._compactor is not None:
            self._compactor.join(timeout=30)
        self.current.close()

    def _write_loop(self) -> None:
        model_thread.one_native_thread()  # FAISS adds and merges here keep off the model's team
        while True:
            first = self._writes.get()
            if first is None:
                return
            if isinstance(first, _Install):
                self._install(first.base)
                continue
            batch: list[_Write] = [first]
            follow: _Install | None = None  # a compaction's swap: right after this group
            stop = False
            while True:  # group commit: everything queued meanwhile goes into this generation
                try:
                    nxt = self._writes.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if isinstance(nxt, _Install):
                    follow = nxt  # never behind the writes that keep arriving meanwhile
                    break
                batch.append(nxt)
            self._commit(batch)
            if follow is not None:
                self._install(follow.base)
            if stop:
                return
            self._maybe_compact()

    def _open_writer(self) -> MutableIndex:
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                return MutableIndex(self.path, seal=False, check_log=False)
            except IndexBusyError:
                # `semsearch index add/compact` holds the lock: wait a bounded time for it.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _commit(self, batch: list[_Write]) -> None:
        answers: list[tuple[_Write, WriteResult | BaseException]] = []
        committed: int | None = None  # set at the commit point: from then on the writes stand
        try:
            with self._swap_lock:
                with self._open_writer() as index:
                    self._check(index.manifest)
                    for write in batch:
                        try:
                            answers.append((write, self._apply(index, write)))
                        except SemsearchError as exc:  # this write is invalid; the others go on
                            answers.append((write, exc))
                    committed = index.commit()
                self._swap(self._next_snapshot())
        except BaseException as exc:
            if committed is None:  # nothing was committed: every write in the group fails
                log.warning("online update of %s failed: %s", self.path, exc)
                failure: BaseException = as_disk_full(exc, "the online write", self.path) or exc
                answers = [(w, failure) for w in batch]
            else:  # committed and durable: answered as done; the snapshot is reopened from disk
                log.error(
                    "generation %d of %s is committed but its snapshot failed: %s", committed, self.path, exc
                )
                self._reopen_after(committed)
        for write, answer in answers:
            if isinstance(answer, WriteResult):
                answer.generation = max(self.current.generation, committed or 0)
                write.loop.call_soon_threadsafe(_resolve, write.future, answer, None)
            else:
                write.loop.call_soon_threadsafe(_resolve, write.future, None, answer)

    def _next_snapshot(self) -> IndexFolder:
        """The current snapshot with the log tail replayed; opened again if the base changed."""
        try:
            return self.current.advance()
        except StaleSnapshot:
            fresh = IndexFolder.open(self.path)
            self._check(fresh.manifest)
            return fresh

    def _reopen_after(self, generation: int) -> None:
        try:
            self.reload(force=True)
        except Exception as exc:  # the poller (RELOAD_INTERVAL_S) or /admin/reload tries again
            log.error("could not reopen %s at generation %d: %s", self.path, generation, exc)

    # ------------------------------------------------------------ compaction
    def compact(self, full: bool = False) -> threading.Thread | None:
        """Start a compaction now, in the background (None if one is running)."""
        if self._compacting():
            return None
        self._ensure_writer()  # it installs the result
        self._compactor = threading.Thread(
            target=self._compact, args=(self.current, full), name="index-compactor", daemon=True
        )
        self._compactor.start()
        return self._compactor

    def _compacting(self) -> bool:
        """A compaction is building, or built and waiting for the writer thread to install it."""
        running = self._compactor is not None and self._compactor.is_alive()
        return running or self._install_pending

    def _maybe_compact(self) -> None:
        if self._policy is None or self._compacting():
            return
        if time.monotonic() < self._compact_after:
            return
        snapshot = self.current
        if not self._policy.due(snapshot):
            return
        self._compactor = threading.Thread(
            target=self._compact,
            args=(snapshot, self._policy.full(snapshot)),
            name="index-compactor",
            daemon=True,
        )
        self._compactor.start()

    def _compact(self, snapshot: IndexFolder, full: bool) -> None:
        """Build the new base beside the searches (no lock), then queue its install."""
        # Background work runs on this one thread: a team of its own would slow every model call.
        model_thread.one_native_thread()
        try:
            new = prepare(snapshot, full)
        except Exception as exc:  # a full disk, say: the log keeps every write; retried later
            log.error("compaction of %s failed (retried in %.0f s): %s", self.path, _RETRY_S, exc)
            self._compact_after = time.monotonic() + _RETRY_S
            return
        self._install_pending = True  # no second build from the same base meanwhile
        self._writes.put(_Install(new))  # installed by the writer thread, which is running

    def _install(self, new: NewBase) -> None:
        self._install_pending = False
        try:
            with self._swap_lock:
                with self._open_writer() as index:
                    manifest = index.install_base(new)
                if manifest is None:
                    log.info("compaction of %s abandoned: the folder changed meanwhile", self.path)
                    return
                fresh = IndexFolder.from_base(self.path, manifest, new.vectors)
                self._check(fresh.manifest)
                self._swap(fresh, same_ids=True)
                self.compactions += 1
        except Exception as exc:
            new.temp.discard()
            log.error("installing the compaction of %s failed: %s", self.path, exc)
            self._reopen_after(self.current.generation)

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
