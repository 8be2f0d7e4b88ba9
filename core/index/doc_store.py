"""``docs.sqlite``: external id <-> int64 id <-> text <-> metadata JSON, versioned by generation.

Every row carries the generation that added it and, once deleted or replaced, the generation
that removed it. A reader pinned to generation G sees exactly the rows live at G, so a writer
can commit generation G+1 to SQLite before the matching FAISS file and manifest exist, and a
crash in between is undone by :meth:`DocStore.rollback_after`. Replaced and deleted rows stay
(their text is still there for readers of older generations) until ``compact``.

WAL mode while writing, so readers never block the single writer; :meth:`seal` leaves WAL mode
so a published file opens on a read-only mount. Each store holds ONE connection, opened at
construction and shared by threads under a lock: a folder swapped or deleted later cannot
redirect a reader to another folder's file (an open file stays the file it was).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.durable import as_disk_full
from core.errors import IndexFormatError
from core.index.doc_rules import metadata_json
from core.index.write_log import LogTables

DOCS_FILE = "docs.sqlite"
SCHEMA_VERSION = 2
WAL_SIZE_LIMIT = 64 << 20  # bytes of docs.sqlite-wal kept after a checkpoint (journal_size_limit)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    added_gen INTEGER NOT NULL,
    deleted_gen INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS docs_live_id ON docs(id) WHERE deleted_gen IS NULL;
CREATE INDEX IF NOT EXISTS docs_id ON docs(id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# The log (issue 16): an online write's vectors wait here, in the same transaction as its rows,
# until compaction folds them into a new base FAISS file; ``log`` has one row per committed
# online generation. Created on a writer's first open of an older store.
_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (iid INTEGER PRIMARY KEY, gen INTEGER NOT NULL, vec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS vectors_gen ON vectors(gen);
CREATE TABLE IF NOT EXISTS log (
    gen INTEGER PRIMARY KEY, count INTEGER NOT NULL, added INTEGER NOT NULL,
    deleted INTEGER NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_added_gen ON docs(added_gen);
CREATE INDEX IF NOT EXISTS docs_deleted_gen ON docs(deleted_gen) WHERE deleted_gen IS NOT NULL;
"""
_LIVE = "added_gen <= :g AND (deleted_gen IS NULL OR deleted_gen > :g)"
_LIVE_POS = "added_gen <= ? AND (deleted_gen IS NULL OR deleted_gen > ?)"


@dataclass
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _typed_match(path: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """SQL matching the JSON value at ``path`` against ``values`` with JSON's types: SQLite
    stores true as 1, so the type is checked beside the value."""
    groups: dict[str, list[Any]] = {}
    for v in values:
        kind = "bool" if isinstance(v, bool) else "number" if isinstance(v, int | float) else "text"
        groups.setdefault(kind, []).append(v)
    parts: list[str] = []
    params: list[Any] = []
    for kind, vals in groups.items():
        if kind == "bool":
            names = ",".join(sorted({"'true'" if v else "'false'" for v in vals}))
            parts.append(f"json_type(metadata, ?) IN ({names})")
            params.append(path)
        else:
            types = "'integer','real'" if kind == "number" else "'text'"
            marks = ",".join("?" * len(vals))
            parts.append(f"(json_type(metadata, ?) IN ({types}) AND json_extract(metadata, ?) IN ({marks}))")
            params += [path, path, *vals]
    return ("(" + " OR ".join(parts) + ")" if parts else "0"), params


class DocStore(LogTables):
    def __init__(self, path: Path, readonly: bool = False, generation: int | None = None) -> None:
        """``generation``: the generation reads are pinned to (None: every committed row)."""
        self.path = path
        self.readonly = readonly
        self.generation = generation
        self._lock = threading.RLock()
        self._users = [1]  # stores sharing this connection (see view)
        if readonly and not path.is_file():
            raise IndexFormatError(f"{path}: missing")
        if readonly:
            uri = f"file:{path}?mode=ro"
            self._db: sqlite3.Connection | None = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None
            )
        else:
            # Autocommit: transactions are explicit (``_tx``, ``begin``/``commit``), so that one
            # writer's group of writes is one transaction with a savepoint per write.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA synchronous=FULL")
        conn = self._db
        conn.execute("PRAGMA busy_timeout=5000")
        try:
            self.has_log = self._log_exists()
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                # The WAL is reused, not shrunk, after a checkpoint: one big write (an ``index
                # add`` of a million vectors) would hold its size on disk for good. Past the
                # limit, SQLite truncates it when it next restarts the log.
                conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
                if not self.has_log:  # a new store, or one of an older version: its tables
                    # One transaction (SQLite's DDL is transactional): a kill half-way must not
                    # leave the log table without the indexes its readers rely on.
                    conn.executescript(
                        "BEGIN IMMEDIATE;"
                        + _SCHEMA
                        + _LOG_SCHEMA
                        + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                        + "COMMIT;"
                    )
                    self.has_log = True
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            self.close()
            full = as_disk_full(exc, f"opening {path.name}", path.parent)
            if full is not None:  # a full disk is not a damaged store
                raise full from exc
            raise IndexFormatError(f"{path}: not a semsearch document store ({exc})") from exc
        if version is None or int(version[0]) != SCHEMA_VERSION:
            self.close()
            raise IndexFormatError(
                f"{path}: document store schema {version} is not {SCHEMA_VERSION}; rebuild"
            )

    def view(self, generation: int | None) -> DocStore:
        """Another store on the same connection, pinned to ``generation`` (the next snapshot's):
        a snapshot per write costs no new connection. The connection is closed by the last
        :meth:`close` of the stores sharing it (or when the last of them is collected)."""
        other = object.__new__(DocStore)
        other.path, other.readonly, other.generation = self.path, self.readonly, generation
        other._lock, other._db, other.has_log, other._users = self._lock, self._db, self.has_log, self._users
        with self._lock:
            if self._db is None:
                raise IndexFormatError(f"{self.path}: document store is closed")
            self._users[0] += 1
        return other

    def _log_exists(self) -> bool:
        rows = self._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log'")
        return bool(rows)

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        with self._lock:
            if self._db is None:
                raise IndexFormatError(f"{self.path}: document store is closed")
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (committed on success, rolled back on error); inside a
        transaction :meth:`begin` opened, a savepoint: this part alone is undone on error."""
        with self._lock:
            conn = self._db
            if conn is None:
                raise IndexFormatError(f"{self.path}: document store is closed")
            nested = conn.in_transaction
            conn.execute("SAVEPOINT part" if nested else "BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO part" if nested else "ROLLBACK")
                if nested:
                    conn.execute("RELEASE part")
                raise
            conn.execute("RELEASE part" if nested else "COMMIT")

    @contextmanager
    def reading(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same committed state, whatever a
        writer (another process's compaction included) commits meanwhile."""
        with self._lock:
            if self._db is None:
                raise IndexFormatError(f"{self.path}: document store is closed")
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def begin(self) -> None:
        """Open the transaction that the writes up to :meth:`commit` share (all or nothing)."""
        with self._lock:
            assert self._db is not None and not self._db.in_transaction
            self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        """Commit (with ``synchronous=FULL`` in WAL mode: one fsync of the WAL, the write is
        durable once this returns). On failure the transaction may stay open: :meth:`rollback`."""
        with self._lock:
            assert self._db is not None
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        with self._lock:
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def _gen(self) -> int:
        return self.generation if self.generation is not None else 2**62

    # ------------------------------------------------------------------ reads
    def _live_rows(self, columns: str, key: str, values: Sequence[Any]) -> list[Any]:
        """``SELECT columns`` of the rows live at the pinned generation whose ``key`` is one of
        ``values``, in chunks that stay under SQLite's bound-parameter limit."""
        rows: list[Any] = []
        for start in range(0, len(values), 500):
            part = list(values[start : start + 500])
            marks = ",".join("?" * len(part))
            rows += self._rows(
                f"SELECT {columns} FROM docs WHERE {key} IN ({marks}) AND {_LIVE_POS}",
                [*part, self._gen(), self._gen()],
            )
        return rows

    def get_many(self, iids: Sequence[int]) -> dict[int, Document]:
        """Documents by int id, among the rows live at the pinned generation."""
        rows = self._live_rows("iid, id, text, metadata", "iid", [int(i) for i in iids])
        return {int(r[0]): Document(r[1], r[2], json.loads(r[3])) for r in rows}

    def doc_ids(self, iids: Sequence[int]) -> dict[int, str]:
        """Int id -> external id of the live rows among ``iids`` (no text read)."""
        return {int(r[0]): r[1] for r in self._live_rows("iid, id", "iid", [int(i) for i in iids])}

    def get(self, doc_id: str) -> Document | None:
        rows = self._rows(
            f"SELECT id, text, metadata FROM docs WHERE id = :id AND {_LIVE}",
            {"id": doc_id, "g": self._gen()},
        )
        return Document(rows[0][0], rows[0][1], json.loads(rows[0][2])) if rows else None

    def live_iids(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """External id -> int id of the live row, for those of ``doc_ids`` that exist."""
        return {r[0]: int(r[1]) for r in self._live_rows("id, iid", "id", doc_ids)}

    def existing(self, doc_ids: Sequence[str]) -> set[str]:
        """Which of ``doc_ids`` are live."""
        return set(self.live_iids(doc_ids))

    def matching_iids(self, where: dict[str, Any]) -> np.ndarray:
        """Int ids (sorted) of the live rows whose metadata matches ``where``: ``{key: value}`` is
        equality, ``{key: {"in": [values]}}`` membership; keys are ANDed. Values compare as typed
        JSON: ``2019`` does not match ``"2019"``, nor ``true`` match ``1``."""
        clauses, params = [], []
        for key, cond in where.items():
            path = '$."' + key.replace('"', "") + '"'
            values = list(cond["in"]) if isinstance(cond, dict) else [cond]
            sql, args = _typed_match(path, values)
            clauses.append(sql)
            params += args
        sql = f"SELECT iid FROM docs WHERE {' AND '.join([*clauses, _LIVE_POS])} ORDER BY iid"
        rows = self._rows(sql, [*params, self._gen(), self._gen()])
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count(self) -> int:
        return int(self._rows(f"SELECT COUNT(*) FROM docs WHERE {_LIVE}", {"g": self._gen()})[0][0])

    def live_iid_array(self) -> np.ndarray:
        """The int ids of every live row, ascending (no text read)."""
        rows = self._rows(f"SELECT iid FROM docs WHERE {_LIVE} ORDER BY iid", {"g": self._gen()})
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def iter_live(self, batch: int = 10_000) -> Iterator[list[tuple[int, Document]]]:
        """All live rows in int-id order, in batches (for compaction)."""
        last = -1
        while True:
            rows = self._rows(
                "SELECT iid, id, text, metadata FROM docs "
                f"WHERE iid > :last AND {_LIVE} ORDER BY iid LIMIT :n",
                {"last": last, "g": self._gen(), "n": batch},
            )
            if not rows:
                return
            yield [(int(r[0]), Document(r[1], r[2], json.loads(r[3]))) for r in rows]
            last = int(rows[-1][0])

    def next_iid(self) -> int:
        """The next unused int id. Ids are never reused, even once compaction purges the rows
        that held them (meta ``next_iid``): a stale reader's segment may still hold the vector."""
        value = self._rows("SELECT MAX(iid) FROM docs")[0][0]
        floor = self._rows("SELECT value FROM meta WHERE key = 'next_iid'")
        return max(0 if value is None else int(value) + 1, int(floor[0][0]) if floor else 0)

    # ----------------------------------------------------------------- writes
    def apply(
        self,
        generation: int,
        added: Iterable[tuple[int, Document]],
        deleted_iids: Sequence[int] = (),
        vectors: np.ndarray | None = None,
    ) -> None:
        """In one transaction: mark ``deleted_iids`` deleted and insert ``added``, both at
        ``generation``; with ``vectors`` (one float32 row per added document), log those too."""
        rows = list(added)
        with self._tx() as conn:
            if deleted_iids:
                conn.executemany(
                    "UPDATE docs SET deleted_gen = ? WHERE iid = ? AND deleted_gen IS NULL",
                    ((generation, int(i)) for i in deleted_iids),
                )
            conn.executemany(
                "INSERT INTO docs (iid, id, text, metadata, added_gen) VALUES (?, ?, ?, ?, ?)",
                ((iid, d.id, d.text, metadata_json(d.metadata), generation) for iid, d in rows),
            )
            if vectors is not None:
                vecs = np.ascontiguousarray(vectors, dtype=np.float32)
                conn.executemany(
                    "INSERT INTO vectors (iid, gen, vec) VALUES (?, ?, ?)",
                    ((iid, generation, vecs[n].tobytes()) for n, (iid, _) in enumerate(rows)),
                )

    def add_many(self, rows: Iterable[tuple[int, Document]], generation: int = 1) -> None:
        self.apply(generation, rows)

    def rollback_after(self, generation: int) -> int:
        """Undo everything a writer committed after ``generation`` (a crash before its publish)."""
        with self._tx() as conn:
            removed = conn.execute("DELETE FROM docs WHERE added_gen > ?", (generation,)).rowcount
            restored = conn.execute(
                "UPDATE docs SET deleted_gen = NULL WHERE deleted_gen > ?", (generation,)
            ).rowcount
        return int(removed + restored)

    def rollback_rows_from(self, iid: int) -> int:
        """Drop rows with int id >= ``iid`` (a build chunk that was committed but not recorded)."""
        with self._tx() as conn:
            return int(conn.execute("DELETE FROM docs WHERE iid >= ?", (iid,)).rowcount)

    def seal(self) -> bool:
        """Fold the WAL into the main file and leave WAL mode, so the published ``docs.sqlite``
        is one self-contained file that opens on a read-only mount. Needs exclusive access:
        returns False (and stays in WAL mode) while another connection reads the file."""
        try:
            self._rows("PRAGMA busy_timeout=0")  # readers present: give up at once, not in 5 s
            self._rows("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = self._rows("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError:
            return False
        finally:
            self._rows("PRAGMA busy_timeout=5000")
        return bool(mode) and str(mode[0][0]).lower() == "delete"

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._users[0] -= 1
                if self._users[0] <= 0:
                    self._db.close()
                self._db = None
