"""Unit vectors: the one place for L2 normalisation and row cosines.

Inner product over unit rows is cosine similarity, which is what every index here searches. The
guarantee that an index's stored vectors have norm 1 when its manifest says ``normalized`` is
kept by ``unit_rows``, which every writer calls; the same arithmetic compares two precisions
(core.precision) and scores STS pairs (training.evaluate). NumPy only, so that importing it
loads no FAISS or torch.
"""

from __future__ import annotations

import numpy as np


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit rows as float32: inner product over them is cosine similarity."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)


def unit_rows(vectors: np.ndarray, tolerance: float = 1e-4) -> np.ndarray:
    """``vectors`` as float32 with every row of norm 1 (the index's invariant when its manifest
    says ``normalized``): rows already within ``tolerance`` of 1 are kept bit for bit, the others
    divided by their norm. Writers call this however their encoder was configured."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        return vectors
    norms = np.linalg.norm(vectors, axis=1)
    off = np.abs(norms - 1) > tolerance
    if not off.any():
        return vectors
    out = vectors.copy()
    out[off] /= np.clip(norms[off], 1e-12, None)[:, None]
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between matching rows of two matrices (zero rows count as norm 1e-12)."""
    return np.asarray(np.sum(l2_normalise(a) * l2_normalise(b), axis=1))
