"""Index folders of real documents with random unit vectors, made for a real model: search cost
depends on the count, not on the values, and embedding 100k abstracts would take most of an
hour on these machines. Queries are still encoded by the model, whose manifest this is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.encoder import Encoder
from core.index.doc_store import Document
from core.index.manifest import Manifest
from core.index.writer import IndexWriter

CHUNK = 20_000


def model_manifest(encoder: Encoder, model: Path) -> Manifest:
    """An empty index's manifest for ``encoder`` (loaded from ``model``)."""
    manifest = Manifest(
        model_fingerprint=encoder.fingerprint or "",
        dim=encoder.dim,
        normalized=True,
        count=0,
        max_seq_length=encoder.max_seq_length,
    )
    manifest.model_dir = str(model)
    return manifest


def random_unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def write_index(out: Path, manifest: Manifest, docs: list[dict[str, Any]], vectors: np.ndarray) -> None:
    """``docs`` ({id, text, metadata}) with their ``vectors``, written in chunks and published."""
    with IndexWriter(out, manifest) as writer:
        for start in range(0, len(docs), CHUNK):
            part = docs[start : start + CHUNK]
            writer.add(
                [Document(d["id"], d["text"], d["metadata"]) for d in part], vectors[start : start + CHUNK]
            )
        writer.commit()
