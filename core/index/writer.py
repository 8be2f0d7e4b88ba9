"""Writing a whole index folder in one go: staging folder, then an atomic swap into place."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np

from core.durable import publish, staging_dir
from core.errors import InvalidInputError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.folder import INDEX_FILE, file_digest
from core.index.manifest import Manifest, next_generation, utc_now
from core.index.vectors import FLAT_FACTORY, VectorIndex


def publish_folder(staging: Path, output: Path, manifest: Manifest) -> Manifest:
    """The one way a whole index folder is published (a build, a resumed build, an IndexWriter):
    numbered as ``output``'s next generation (core.index.manifest.next_generation), its
    manifest written last, everything fsynced, swapped in atomically (core.durable.publish). In-place
    changes have their own single path: the write log, and a compaction's base through
    :meth:`core.index.mutable.MutableIndex.install_base`."""
    manifest.generation = next_generation(output, replacing=True)
    manifest.created_at = utc_now()
    manifest.write(staging)  # last: a folder without a manifest is not an index
    publish(staging, output)
    return manifest


class IndexWriter:
    """Builds a complete index in a staging folder, then publishes it atomically.

    Used as a context manager: an exception discards the staging folder and leaves whatever
    was at ``output`` untouched. A rebuild over a published index is its next generation.
    """

    def __init__(self, output: str | Path, manifest: Manifest, factory: str = FLAT_FACTORY) -> None:
        self.output = Path(output).expanduser()
        self.manifest = manifest
        self.staging = staging_dir(self.output)
        self.vectors = VectorIndex.create(manifest.dim, factory)
        self.manifest.faiss_factory = factory
        self.store = DocStore(self.staging / DOCS_FILE)
        self._next_iid = 0

    def add(self, docs: Sequence[Document], vectors: np.ndarray, iids: np.ndarray | None = None) -> None:
        """Add documents with their vectors (int ids: consecutive unless given)."""
        if len(docs) != len(vectors):
            raise InvalidInputError(f"{len(docs)} documents but {len(vectors)} vectors")
        if iids is None:
            iids = np.arange(self._next_iid, self._next_iid + len(docs), dtype=np.int64)
        # Store first: a failure there leaves FAISS untouched, so the two never disagree.
        self.store.apply(self.manifest.generation, zip(iids.tolist(), docs, strict=True))
        self.vectors.add(iids, vectors)
        self._next_iid = max(self._next_iid, int(iids.max()) + 1) if len(iids) else self._next_iid

    def commit(self) -> Manifest:
        index_path = self.staging / INDEX_FILE
        self.vectors.save(index_path)
        self.store.seal()
        self.store.close()
        self.manifest.count = self.vectors.count
        self.manifest.index_file = INDEX_FILE
        self.manifest.tombstones = 0
        self.manifest.files = {INDEX_FILE: file_digest(index_path)}
        return publish_folder(self.staging, self.output, self.manifest)

    def abort(self) -> None:
        self.store.close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abort()
