"""Updating a published index in place: upsert, delete, compact. One writer at a time.

Each batch becomes a new generation, in this order:
1. ``docs.sqlite``: in one transaction, the replaced/deleted rows are marked deleted at G+1 and
   the new rows are inserted at G+1. Readers pinned to G do not see any of it.
2. The FAISS index of G+1 is written to ``index.g<G+1>.faiss`` (temp file, fsync, rename).
3. ``manifest.json`` is replaced atomically with generation G+1, naming that file and its
   checksum. This is the commit point; the previous FAISS file is removed after it.
A crash before step 3 leaves generation G published, and the next writer undoes the unpublished
rows (:meth:`DocStore.rollback_after`). So the store and the vectors never disagree for a reader.

An index built with ``--on-disk`` (IVF lists in an mmapped ``index.ivfdata``) is refused here
with a :class:`ConflictError` (409) that says to rebuild: its lists are mapped read-only and
shared with the readers of the published generation, and a new generation would mean copying
the whole ivfdata file (see core.index.ondisk).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from core.errors import ConflictError, IndexFormatError, IndexMismatchError, InvalidInputError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.folder import file_digest, load_vectors
from core.index.manifest import Manifest, utc_now
from core.index.ondisk import refusal
from core.index.publish import replace_file, writer_lock
from core.index.vectors import VectorIndex, unit_rows
from core.index.writer import IndexWriter

log = logging.getLogger(__name__)


@dataclass
class UpdateResult:
    generation: int
    added: int
    replaced: int
    deleted: int
    missing: list[str]


def same_publication(a: Manifest, b: Manifest) -> bool:
    """The same published index: generation numbers alone can repeat when a folder is replaced
    by an unrelated build, the publication time does not."""
    return (a.generation, a.created_at) == (b.generation, b.created_at)


class MutableIndex:
    """Opened with the writer lock held; use as a context manager."""

    def __init__(self, path: str | Path, adopt: tuple[Manifest, VectorIndex] | None = None) -> None:
        """``adopt``: (manifest, vectors) already in memory (a server's current index). A copy of
        them is used when that manifest is still the published one, instead of reading the
        FAISS file again; the caller's object is never mutated."""
        self.path = Path(path).expanduser().resolve()
        if not (self.path / "manifest.json").is_file():
            raise IndexFormatError(f"{self.path}: not a published index folder (no manifest.json)")
        self._closed = False
        self._pending: int | None = None  # generation being written, not yet published
        self._delta = 0  # change in live documents since the last publish
        self._tombstones = 0
        self._lock = writer_lock(self.path)
        self._lock.__enter__()
        try:
            self.manifest = Manifest.read(self.path)
            if self.manifest.on_disk:  # its lists are mapped read-only: rebuild instead
                raise ConflictError(refusal(self.path, self.manifest.ivfdata_file))
            if adopt is not None and same_publication(adopt[0], self.manifest):
                self.vectors = adopt[1].clone()
            else:
                self.vectors = load_vectors(self.path, self.manifest)
            self.store = DocStore(self.path / DOCS_FILE)
            undone = self.store.rollback_after(self.manifest.generation)
            if undone:
                log.warning("%s: undid %d row change(s) of an update that never published", self.path, undone)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def close(self) -> None:
        """Release the index. Changes never committed are undone (on disk; memory is dropped)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending is not None:
                self.store.rollback_after(self.manifest.generation)
                self._pending = None
            if not self.store.seal():
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

    def check_model(self, fingerprint: str | None, dim: int) -> None:
        self.manifest.check_model(fingerprint, dim, self.path)

    # ------------------------------------------------------------ updates
    def upsert(self, docs: Sequence[Document], vectors: np.ndarray, commit: bool = True) -> UpdateResult:
        """Add documents; an id that already exists has its text, metadata and vector replaced.
        With ``commit=False`` the change waits for :meth:`commit`, so several batches publish as
        one generation (all or nothing)."""
        if len(docs) != len(vectors):
            raise InvalidInputError(f"{len(docs)} documents but {len(vectors)} vectors")
        if not docs:
            return UpdateResult(self._pending or self.manifest.generation, 0, 0, 0, [])
        if vectors.ndim != 2 or vectors.shape[1] != self.manifest.dim:
            raise IndexMismatchError(
                f"{self.path}: vectors are {vectors.shape[-1]}-d but the index holds "
                f"{self.manifest.dim}-d vectors (a different model?)"
            )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # fail here, before any change
        if self.manifest.normalized:  # the invariant, kept here for every writer (service, index add)
            vectors = unit_rows(vectors)
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            raise InvalidInputError(f"duplicate id(s) in one batch: {', '.join(dupes[:5])}")
        old = self.store.live_iids(ids)
        start = self.store.next_iid()
        new_iids = np.arange(start, start + len(docs), dtype=np.int64)
        self.store.apply(self._gen(), zip(new_iids.tolist(), docs, strict=True), list(old.values()))
        self._remove_vectors(list(old.values()))
        self.vectors.add(new_iids, vectors)
        self._delta += len(docs) - len(old)
        result = UpdateResult(self._gen(), len(docs) - len(old), len(old), 0, [])
        if commit:
            self.commit()
        return result

    def delete(self, doc_ids: Sequence[str], commit: bool = True) -> UpdateResult:
        """Delete by external id; ids that do not exist are reported, not an error."""
        unique = list(dict.fromkeys(doc_ids))
        found = self.store.live_iids(unique)
        missing = [i for i in unique if i not in found]
        if not found:
            return UpdateResult(self._pending or self.manifest.generation, 0, 0, 0, missing)
        self.store.apply(self._gen(), [], list(found.values()))
        self._remove_vectors(list(found.values()))
        self._delta -= len(found)
        result = UpdateResult(self._gen(), 0, 0, len(found), missing)
        if commit:
            self.commit()
        return result

    def _gen(self) -> int:
        if self._pending is None:
            # next_generation's rule (the published one + 1) on the manifest this writer read under
            # the lock: no second read of the file on every online write.
            self._pending = self.manifest.generation + 1
            self._tombstones = self.manifest.tombstones
        return self._pending

    def commit(self) -> int:
        """Publish the pending changes as the next generation; returns the published generation."""
        if self._pending is None:
            return self.manifest.generation
        self._publish(self._pending, self.manifest.count + self._delta)
        self._pending, self._delta = None, 0
        return self.manifest.generation

    def _remove_vectors(self, iids: list[int]) -> None:
        if not iids:
            return
        removed = self.vectors.delete(np.array(iids, dtype=np.int64))
        # HNSW keeps them: they become tombstones that search skips until compact.
        self._tombstones += len(iids) - removed

    def _publish(self, gen: int, count: int) -> None:
        old_file = self.manifest.index_file
        new_file = f"index.g{gen}.faiss"
        tmp = self.path / f".{new_file}.tmp"
        self.vectors.save(tmp)
        replace_file(tmp, self.path / new_file)
        manifest = dataclasses.replace(
            self.manifest,
            generation=gen,
            count=count,
            tombstones=self._tombstones,
            index_file=new_file,
            files={new_file: file_digest(self.path / new_file)},
            created_at=utc_now(),
        )
        manifest.write(self.path)  # the commit point
        self.manifest = manifest  # only now: a failed write leaves memory at the old generation
        if old_file != new_file:
            (self.path / old_file).unlink(missing_ok=True)

    # ------------------------------------------------------------ compaction
    def compact(self) -> Manifest:
        """Rewrite the folder with only live rows and vectors: drops HNSW tombstones and the old
        versions of replaced/deleted documents. Published as a whole new folder, atomically."""
        self.commit()  # pending changes first: compaction starts from a published generation
        base = dataclasses.replace(self.manifest)
        trained = not VectorIndex.create(base.dim, base.faiss_factory).is_trained
        with IndexWriter(self.path, base, base.faiss_factory) as writer:
            if trained:
                # IVF / PQ: keep the trained index (it holds no deleted vectors) and the int ids in it.
                writer.vectors = self.vectors
            for batch in self.store.iter_live():
                docs = [d for _, d in batch]
                if trained:
                    writer.store.apply(writer.manifest.generation, batch)
                else:
                    # float32 vectors whatever the index stores (binary: its +-1 sign vectors)
                    vecs = self.vectors.reconstruct(np.array([iid for iid, _ in batch], dtype=np.int64))
                    writer.add(docs, vecs)
            for extra in ("build_config.json",):
                if (self.path / extra).exists():
                    shutil.copy2(self.path / extra, writer.staging / extra)
            self.store.close()
            manifest = writer.commit()
        self.manifest = manifest
        self.store = DocStore(self.path / DOCS_FILE)
        self.vectors = load_vectors(self.path, manifest)
        log.info(
            "compacted %s to %d documents (generation %d)", self.path, manifest.count, manifest.generation
        )
        return manifest
