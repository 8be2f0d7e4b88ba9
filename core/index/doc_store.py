"""``docs.sqlite``: external id <-> int64 id <-> text <-> metadata JSON.

WAL mode so readers never block the (single) writer. Connections are per thread because a
sqlite3 connection must not be shared across threads without our own locking.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import IndexFormatError

DOCS_FILE = "docs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    iid INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
"""


@dataclass
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


class DocStore:
    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []  # every thread's connection, so close() reaches them
        self._all_lock = threading.Lock()
        if readonly and not path.is_file():
            raise IndexFormatError(f"{path}: missing")
        conn = self._conn()
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.commit()
        else:
            try:
                conn.execute("SELECT iid, id, text, metadata FROM docs LIMIT 1").fetchall()
            except sqlite3.DatabaseError as exc:
                raise IndexFormatError(f"{path}: not a semsearch document store ({exc})") from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(self.path, check_same_thread=False)
                conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def add_many(self, rows: Iterable[tuple[int, Document]]) -> None:
        conn = self._conn()
        with conn:
            conn.executemany(
                "INSERT INTO docs (iid, id, text, metadata) VALUES (?, ?, ?, ?)",
                ((iid, d.id, d.text, json.dumps(d.metadata, ensure_ascii=False)) for iid, d in rows),
            )

    def get_many(self, iids: Sequence[int]) -> dict[int, Document]:
        out: dict[int, Document] = {}
        conn = self._conn()
        for start in range(0, len(iids), 500):  # stay under SQLite's bound-parameter limit
            part = [int(i) for i in iids[start : start + 500]]
            marks = ",".join("?" * len(part))
            rows = conn.execute(f"SELECT iid, id, text, metadata FROM docs WHERE iid IN ({marks})", part)
            out.update((int(r[0]), Document(r[1], r[2], json.loads(r[3]))) for r in rows)
        return out

    def get(self, doc_id: str) -> Document | None:
        row = self._conn().execute("SELECT id, text, metadata FROM docs WHERE id = ?", (doc_id,)).fetchone()
        return Document(row[0], row[1], json.loads(row[2])) if row else None

    def existing(self, doc_ids: Sequence[str]) -> set[str]:
        """Which of ``doc_ids`` are already stored."""
        found: set[str] = set()
        conn = self._conn()
        for start in range(0, len(doc_ids), 500):  # stay under SQLite's bound-parameter limit
            part = list(doc_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in conn.execute(f"SELECT id FROM docs WHERE id IN ({marks})", part))
        return found

    def count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def seal(self) -> None:
        """Before publish: fold the WAL into the main file and leave WAL mode, so the published
        ``docs.sqlite`` is one self-contained file that opens on a read-only mount."""
        conn = self._conn()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")

    def close(self) -> None:
        """Close the connections of every thread that used this store."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
