"""Updating a published index in place: upsert, delete, compact. One writer at a time.

A write is appended to the write log (core.index.write_log): its rows, its vectors and its log
row, in ONE SQLite transaction committed with an fsync of the WAL. That commit is the
acknowledgement; nothing else is written, so a write costs what it holds, not what the index
holds. Several writes (a service's group commit, ``index add``'s chunks) share one transaction
and one fsync, each inside its own savepoint: an invalid write is undone alone.

The base FAISS file is never rewritten by a write. Readers replay the log tail as delta
segments (core.index.segments); compaction (core.index.compaction) folds it into a new base,
published by :meth:`MutableIndex.install_base` under this writer's lock.

Opening a writer recovers the folder: it undoes rows an older version left unpublished, finishes
a compaction killed between its manifest and its fold, and sweeps temps and unnamed FAISS files.

An index built with ``--on-disk`` (IVF lists in an mmapped ``index.ivfdata``) is refused here
with a :class:`ConflictError` (409) that says to rebuild: its lists are mapped read-only, and a
compaction would mean copying the whole ivfdata file (see core.index.ondisk).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from core.durable import replace_file
from core.errors import (
    ConflictError,
    IndexBusyError,
    IndexFormatError,
    IndexMismatchError,
    InvalidInputError,
)
from core.index.compaction import CompactionPolicy, NewBase, prepare
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.folder import IndexFolder, file_digest
from core.index.manifest import Manifest, same_publication, utc_now
from core.index.ondisk import refusal
from core.index.wal_check import check_wal
from core.index.writer_lock import sweep_files, writer_lock
from core.unit_vectors import unit_rows

log = logging.getLogger(__name__)


@dataclass
class UpdateResult:
    generation: int
    added: int
    replaced: int
    deleted: int
    missing: list[str]


def recover(path: str | Path) -> bool:
    """Open and close a writer: the folder's recovery (see the module doc), done by a service
    at start, before any SQLite connection of its own. False when it cannot write the folder."""
    if not (Path(path) / "manifest.json").is_file():
        return False  # the reader's open says what is wrong
    try:
        MutableIndex(path, seal=False).close()
    except (IndexBusyError, ConflictError, PermissionError, OSError) as exc:
        log.info("%s: no recovery at start (%s)", path, exc)
        return False
    return True


class MutableIndex:
    """Opened with the writer lock held; use as a context manager."""

    def __init__(self, path: str | Path, seal: bool = True, check_log: bool = True) -> None:
        """``seal``: on close, fold SQLite's WAL into docs.sqlite and leave WAL mode (a CLI
        writer, so the folder opens on a read-only mount); a service keeps WAL mode.
        ``check_log``: check the WAL's frames first (core.index.wal_check); a service checks at
        its first open only, its own connections stay open after."""
        self.path = Path(path).expanduser().resolve()
        if not (self.path / "manifest.json").is_file():
            raise IndexFormatError(f"{self.path}: not a published index folder (no manifest.json)")
        self._closed = False
        self._seal = seal
        self._pending: int | None = None  # generation being written, not yet committed
        self._added = self._deleted = 0  # of the pending generation
        self._lock = writer_lock(self.path)
        self._lock.__enter__()
        try:
            self.manifest = Manifest.read(self.path)
            if self.manifest.on_disk:  # its lists are mapped read-only: rebuild instead
                raise ConflictError(refusal(self.path, self.manifest.ivfdata_file))
            if check_log:
                check_wal(self.path / DOCS_FILE)
            self.store = DocStore(self.path / DOCS_FILE)
            self._recover()
        except BaseException:
            if getattr(self, "store", None) is not None:
                self.store.close()
            self._lock.__exit__(None, None, None)
            raise

    def _recover(self) -> None:
        m = self.manifest
        self.generation, self.count = self.store.latest(m.generation, m.count)
        undone = self.store.rollback_after(self.generation)
        if undone:  # only an older version (manifest as commit point) leaves these
            log.warning("%s: undid %d row change(s) of an update that never published", self.path, undone)
        folded = self.store.base_generation()
        if folded is None or folded < m.generation:
            # A compaction published its manifest, then died before dropping what it folded.
            self.store.fold(m.generation, None)
        swept = sweep_files(self.path, {m.index_file})
        if swept:
            log.info("%s: removed %s left by a killed writer", self.path, ", ".join(swept))

    def close(self) -> None:
        """Release the index. Changes never committed are undone."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                self.store.rollback()
                self._pending = None
            if self._seal and not self.store.seal():
                log.info("%s: readers are open; docs.sqlite stays in WAL mode", self.path)
        finally:
            self.store.close()
            self._lock.__exit__(None, None, None)

    def __enter__(self) -> MutableIndex:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_model(self, fingerprint: str | None, dim: int, max_seq_length: int | None = None) -> None:
        self.manifest.check_model(fingerprint, dim, self.path, max_seq_length)

    # ------------------------------------------------------------ writes
    def upsert(self, docs: Sequence[Document], vectors: np.ndarray, commit: bool = True) -> UpdateResult:
        """Add documents; an id that already exists has its text, metadata and vector replaced.
        With ``commit=False`` the change waits for :meth:`commit`, so several batches commit as
        one generation (all or nothing)."""
        if len(docs) != len(vectors):
            raise InvalidInputError(f"{len(docs)} documents but {len(vectors)} vectors")
        if not docs:
            return UpdateResult(self._pending or self.generation, 0, 0, 0, [])
        if vectors.ndim != 2 or vectors.shape[1] != self.manifest.dim:
            raise IndexMismatchError(
                f"{self.path}: vectors are {vectors.shape[-1]}-d but the index holds "
                f"{self.manifest.dim}-d vectors (a different model?)"
            )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # fail here, before any change
        if not np.isfinite(vectors).all():
            raise InvalidInputError("vectors must be finite numbers")
        if self.manifest.normalized:  # the invariant, kept here for every writer (service, index add)
            vectors = unit_rows(vectors)
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise InvalidInputError(f"duplicate id(s) in one batch: {', '.join(dupes[:5])}")
        gen = self._begin()
        old = self.store.live_iids(ids)
        start = self.store.next_iid()
        rows = zip(range(start, start + len(docs)), docs, strict=True)
        self.store.apply(gen, rows, list(old.values()), vectors)  # a savepoint: all of it or none
        self._added += len(docs)
        self._deleted += len(old)
        result = UpdateResult(gen, len(docs) - len(old), len(old), 0, [])
        if commit:
            self.commit()
        return result

    def delete(self, doc_ids: Sequence[str], commit: bool = True) -> UpdateResult:
        """Delete by external id; ids that do not exist are reported, not an error."""
        unique = list(dict.fromkeys(doc_ids))
        # Read before the transaction opens: this writer holds the lock, nothing changes it.
        found = self.store.live_iids(unique)
        if not found and self._pending is None:  # nothing to do: no transaction, no generation
            return UpdateResult(self.generation, 0, 0, 0, unique)
        gen = self._begin()
        missing = [i for i in unique if i not in found]
        if found:
            self.store.apply(gen, [], list(found.values()))
            self._deleted += len(found)
        result = UpdateResult(gen, 0, 0, len(found), missing)
        if commit:
            self.commit()
        return result

    def _begin(self) -> int:
        if self._pending is None:
            self.store.begin()
            self._pending = self.generation + 1  # next_generation's rule, on what we hold
            self._added = self._deleted = 0
        return self._pending

    def commit(self) -> int:
        """Commit the pending writes as the next generation (one fsync); returns the newest
        committed generation. On failure nothing of them stays."""
        if self._pending is None:
            return self.generation
        gen, self._pending = self._pending, None
        if not self._added and not self._deleted:  # every write of the group was refused
            self.store.rollback()
            return self.generation
        count = self.count + self._added - self._deleted
        try:
            self.store.log_commit(gen, count, self._added, self._deleted, utc_now())
            self.store.commit()  # the acknowledgement
        except BaseException:
            self.store.rollback()
            raise
        self.generation, self.count = gen, count
        return gen

    def rollback(self) -> None:
        """Drop the pending writes."""
        if self._pending is not None:
            self._pending = None
            self.store.rollback()

    # ------------------------------------------------------------ compaction
    def snapshot(self) -> IndexFolder:
        """The newest committed generation, opened for reading (and for compaction)."""
        return IndexFolder.open(self.path)

    def compact(self, full: bool = True, policy: CompactionPolicy | None = None) -> Manifest:
        """Fold the log into a new base now (``full``: HNSW rebuilt without its tombstones too);
        without ``full``, only when ``policy`` says it is due. Returns the manifest."""
        self.commit()  # pending writes first: compaction starts from a committed generation
        policy = policy or CompactionPolicy.from_env()
        snapshot = self.snapshot()
        try:
            if not full and not policy.due(snapshot):
                return self.manifest
            new = prepare(snapshot, full or policy.full(snapshot))
        finally:
            snapshot.close()
        self.install_base(new)
        return self.manifest

    def install_base(self, new: NewBase) -> Manifest | None:
        """Step 2 of a compaction (core.index.compaction), under this writer's lock: publish
        ``new`` as the base of its generation. None (and the file dropped) when the folder was
        rebuilt or compacted since the snapshot it was made from."""
        current = Manifest.read(self.path)
        assert isinstance(new.based_on, Manifest)
        if not same_publication(current, new.based_on) or self._pending is not None:
            new.temp.discard()
            return None
        name = f"index.g{new.generation}.faiss"
        for n in range(1, 1000):
            if not (self.path / name).exists():
                break
            name = f"index.g{new.generation}.{n}.faiss"
        try:
            replace_file(new.temp.path, self.path / name)
        except BaseException:
            new.temp.discard()
            raise
        new.temp.release()
        manifest = dataclasses.replace(
            current,
            generation=new.generation,
            count=new.count,
            tombstones=new.vectors.count - new.count,
            index_file=name,
            files={name: file_digest(self.path / name)},
            created_at=utc_now(),
        )
        manifest.write(self.path)  # the commit point: readers now open this base
        self.manifest = manifest
        # If this fails, the next writer open folds (_recover); readers are right meanwhile.
        self.store.fold(new.generation, new.generation, -1 if new.full else current.generation)
        if current.index_file != name:
            (self.path / current.index_file).unlink(missing_ok=True)
        log.info("%s: base is now generation %d (%d documents)", self.path, new.generation, new.count)
        return manifest
