"""The write-ahead log of online writes, kept in ``docs.sqlite`` beside the rows it describes.

An online write (service ``PUT``/``DELETE /documents``, ``index add``/``delete``) is ONE SQLite
transaction: its document rows, its vectors (table ``vectors``) and its ``log`` row, which names
the generation and the live count after it. SQLite runs in WAL mode with ``synchronous=FULL``:
the commit appends the transaction's pages to ``docs.sqlite-wal`` and fsyncs it, and that is the
acknowledgement. So a write costs what it holds, not what the index holds, and every write of a
group commit shares the one fsync. SQLite's WAL frames carry checksums: a torn last transaction
(power cut, kill -9 mid-write) is never half applied (see core.index.wal_check for how a torn
tail and a corrupt middle are told apart before SQLite opens the file).

Readers (this process's snapshots, other processes, replicas over the same folder) replay the
tail: the vectors and deletes of the generations after the one they hold (:meth:`tail`).
Compaction (core.index.compaction) folds the logged vectors into a new base FAISS file; then, in
one transaction, meta ``base_generation`` moves to it and the folded vectors are dropped.

This is a mixin of :class:`core.index.doc_store.DocStore`: the same connection and lock.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import IndexFormatError


@dataclass
class Tail:
    """What the generations in (``after``, ``generation``] changed."""

    generation: int
    count: int  # live documents at ``generation``
    base_generation: int  # meta's: a larger one than the reader's base means compaction ran
    iids: np.ndarray  # live added documents' int ids, ascending
    vectors: np.ndarray  # their vectors
    deleted: np.ndarray  # int ids deleted in the range


class LogTables:
    _lock: threading.RLock
    _db: sqlite3.Connection | None
    has_log: bool

    def _rows(self, sql: str, params: Any = ()) -> list[Any]:  # provided by DocStore
        raise NotImplementedError

    def latest(self, base_generation: int, base_count: int) -> tuple[int, int]:
        """(generation, live count) of the newest committed write, or the base's own."""
        if not self.has_log:
            self.has_log = self._log_exists()  # a writer may have added the tables since
            if not self.has_log:
                return base_generation, base_count
        row = self._rows(
            "SELECT gen, count FROM log WHERE gen > ? ORDER BY gen DESC LIMIT 1", (base_generation,)
        )
        return (int(row[0][0]), int(row[0][1])) if row else (base_generation, base_count)

    def log_commit(self, generation: int, count: int, added: int, deleted: int, at: str) -> None:
        """The log row of ``generation`` (inside the writer's open transaction)."""
        nxt = self.next_iid()
        self._rows(
            "INSERT INTO log (gen, count, added, deleted, at) VALUES (?, ?, ?, ?, ?)",
            (generation, count, added, deleted, at),
        )
        self._rows("INSERT OR REPLACE INTO meta VALUES ('next_iid', ?)", (str(nxt),))

    def _log_exists(self) -> bool:  # provided by DocStore
        raise NotImplementedError

    def next_iid(self) -> int:  # provided by DocStore
        raise NotImplementedError

    def base_generation(self) -> int | None:
        rows = self._rows("SELECT value FROM meta WHERE key = 'base_generation'")
        return int(rows[0][0]) if rows else None

    def tail(self, after: int, base_generation: int, base_count: int, dim: int) -> Tail:
        """The changes after generation ``after`` up to the newest, read in ONE read transaction
        (a consistent snapshot even while a writer commits)."""
        with self._lock:
            conn = self._db
            if conn is None:
                raise IndexFormatError("document store is closed")
            outer = conn.in_transaction  # inside a caller's read transaction (from_base)
            if not outer:
                conn.execute("BEGIN")
            try:
                gen, count = self.latest(base_generation, base_count)
                meta_base = self.base_generation() or 0
                if not self.has_log or gen <= after:
                    empty = np.empty(0, np.int64)
                    return Tail(gen, count, meta_base, empty, np.empty((0, dim), np.float32), empty)
                rows = conn.execute(
                    "SELECT v.iid, v.vec FROM vectors v JOIN docs d ON d.iid = v.iid "
                    "WHERE v.gen > ? AND v.gen <= ? AND (d.deleted_gen IS NULL OR d.deleted_gen > ?) "
                    "ORDER BY v.iid",
                    (after, gen, gen),
                ).fetchall()
                deleted = conn.execute(
                    "SELECT iid FROM docs WHERE deleted_gen > ? AND deleted_gen <= ?", (after, gen)
                ).fetchall()
                expected = conn.execute(
                    "SELECT COUNT(*) FROM docs WHERE added_gen > ? AND added_gen <= ? "
                    "AND (deleted_gen IS NULL OR deleted_gen > ?)",
                    (max(after, base_generation), gen, gen),
                ).fetchone()[0]
            finally:
                if not outer:
                    conn.execute("COMMIT")
        iids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        if int(expected) != len(rows) and meta_base <= base_generation:
            raise IndexFormatError(
                f"the write log holds {len(rows)} vectors for {expected} documents added after "
                f"generation {after}: docs.sqlite is damaged"
            )
        dead = np.fromiter((r[0] for r in deleted), dtype=np.int64, count=len(deleted))
        return Tail(gen, count, meta_base, iids, vectors.copy(), dead)

    def deleted_in_base(self, base_generation: int, generation: int) -> np.ndarray:
        """Int ids of rows the base may hold (added by its generation) that are deleted by
        ``generation``: a superset of the base's dead vectors (HNSW tombstones included)."""
        rows = self._rows(
            "SELECT iid FROM docs WHERE deleted_gen IS NOT NULL AND deleted_gen <= ? AND added_gen <= ?",
            (generation, base_generation),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def fold(self, base_generation: int, purge_through: int | None, purge_added_after: int = -1) -> None:
        """After a new base FAISS file of ``base_generation`` is published, in one transaction:
        record it, drop the logged vectors it now holds, and purge the rows deleted by
        ``purge_through`` that were added after ``purge_added_after`` (their vectors are in no
        segment any more; an HNSW merge keeps its tombstones' rows, which say they are dead)."""
        with self._tx():
            self._rows("INSERT OR REPLACE INTO meta VALUES ('next_iid', ?)", (str(self.next_iid()),))
            self._rows("INSERT OR REPLACE INTO meta VALUES ('base_generation', ?)", (str(base_generation),))
            self._rows("DELETE FROM vectors WHERE gen <= ?", (base_generation,))
            if purge_through is not None:
                self._rows(
                    "DELETE FROM docs WHERE deleted_gen IS NOT NULL AND deleted_gen <= ? AND added_gen > ?",
                    (purge_through, purge_added_after),
                )

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:  # provided by DocStore
        raise NotImplementedError
