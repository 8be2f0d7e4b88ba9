"""Shared by the index tests: random unit vectors, and a published index of a planned type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.index.doc_store import Document
from core.index.manifest import Manifest
from core.index.vectors import plan_index
from core.index.writer import IndexWriter


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build_planned(out: Path, index_type: str, docs: Sequence[Document], vectors: np.ndarray) -> None:
    """Publish ``docs`` with ``vectors`` at ``out`` as the index ``plan_index`` picks for the type
    (trained on the first vectors when it needs training)."""
    n, dim = vectors.shape
    plan = plan_index(index_type, n, dim)
    manifest = Manifest(model_fingerprint="f" * 64, dim=dim, normalized=True, count=0, max_seq_length=16)
    manifest.index_type = index_type
    manifest.search_params = plan.search_params or {}
    with IndexWriter(out, manifest, plan.factory) as writer:
        if plan.train_size:
            writer.vectors.train(vectors[: plan.train_size])
        writer.add(list(docs), vectors)
        writer.commit()
