"""Reading and writing a whole index folder (``index.faiss`` + ``docs.sqlite`` + ``manifest.json``)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from core.errors import IndexFormatError, InvalidInputError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.manifest import Manifest
from core.index.publish import publish, staging_dir
from core.index.vectors import FLAT_FACTORY, VectorIndex

INDEX_FILE = "index.faiss"


@dataclass
class Hit:
    id: str
    score: float
    text: str
    metadata: dict[str, Any]


def file_digest(path: Path) -> dict[str, Any]:
    with path.open("rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": sha}


class IndexFolder:
    """A published index folder opened for search."""

    def __init__(self, path: Path, manifest: Manifest, vectors: VectorIndex, store: DocStore) -> None:
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.store = store

    @classmethod
    def open(cls, path: str | Path) -> IndexFolder:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise IndexFormatError(f"index folder not found: {path}")
        manifest = Manifest.read(path)
        index_path = path / INDEX_FILE
        if not index_path.is_file():
            raise IndexFormatError(f"{path}: {INDEX_FILE} is missing")
        expected = manifest.files.get(INDEX_FILE)
        if expected:
            # Checked before FAISS sees the bytes: a truncated or altered file gets a clear
            # message here instead of an obscure error (or worse) from inside FAISS.
            actual = file_digest(index_path)
            if actual != expected:
                raise IndexFormatError(
                    f"{index_path}: size/checksum do not match manifest.json "
                    f"({actual['bytes']} bytes vs {expected.get('bytes')}); the file is truncated or corrupt"
                )
        vectors = VectorIndex.load(index_path, manifest.faiss_factory)
        if vectors.dim != manifest.dim:
            raise IndexFormatError(f"{index_path}: dim {vectors.dim} but manifest says {manifest.dim}")
        store = DocStore(path / DOCS_FILE, readonly=True)
        counts = {"manifest": manifest.count, "faiss": vectors.count, "docs.sqlite": store.count()}
        if len(set(counts.values())) != 1:
            store.close()
            raise IndexFormatError(f"{path}: document counts disagree {counts}")
        return cls(path, manifest, vectors, store)

    @property
    def count(self) -> int:
        return self.vectors.count

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        scores, ids = self.vectors.search(queries, k)
        wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
        docs = self.store.get_many(wanted)
        results: list[list[Hit]] = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            hits = []
            for score, iid in zip(row_scores, row_ids, strict=True):
                doc = docs.get(int(iid))
                if iid < 0 or doc is None:
                    continue
                hits.append(Hit(doc.id, float(score), doc.text, doc.metadata))
            results.append(hits)
        return results

    def get(self, doc_id: str) -> Document | None:
        return self.store.get(doc_id)

    def close(self) -> None:
        self.store.close()


class IndexWriter:
    """Builds a complete index in a staging folder, then publishes it atomically.

    Used as a context manager: an exception discards the staging folder and leaves whatever
    was at ``output`` untouched.
    """

    def __init__(self, output: str | Path, manifest: Manifest, factory: str = FLAT_FACTORY) -> None:
        self.output = Path(output).expanduser()
        self.manifest = manifest
        self.staging = staging_dir(self.output)
        self.vectors = VectorIndex.create(manifest.dim, factory)
        self.manifest.faiss_factory = factory
        self.store = DocStore(self.staging / DOCS_FILE)
        self._next_iid = 0
        try:  # a rebuild over a published index is its next generation
            self.manifest.generation = Manifest.read(self.output).generation + 1
        except IndexFormatError:
            self.manifest.generation = 1

    def add(self, docs: Sequence[Document], vectors: np.ndarray) -> None:
        if len(docs) != len(vectors):
            raise InvalidInputError(f"{len(docs)} documents but {len(vectors)} vectors")
        iids = np.arange(self._next_iid, self._next_iid + len(docs), dtype=np.int64)
        # Store first: a failure there leaves FAISS untouched, so the two never disagree.
        self.store.add_many(zip(iids.tolist(), docs, strict=True))
        self.vectors.add(iids, vectors)
        self._next_iid += len(docs)

    def commit(self) -> Manifest:
        index_path = self.staging / INDEX_FILE
        self.vectors.save(index_path)
        self.store.seal()
        self.store.close()
        self.manifest.count = self.vectors.count
        self.manifest.files = {INDEX_FILE: file_digest(index_path)}
        self.manifest.write(self.staging)  # last: a folder without a manifest is not an index
        publish(self.staging, self.output)
        return self.manifest

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
