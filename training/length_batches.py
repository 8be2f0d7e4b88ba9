"""Smart batching for training: similar lengths together, order still random."""

from __future__ import annotations

import numpy as np


def length_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """Shuffle, sort by length inside windows of 100 batches, cut into batches, shuffle the batches.
    Deterministic for a given seed; padding drops because batch members have similar lengths."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    window = batch_size * 100
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        part = order[start : start + window]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]
