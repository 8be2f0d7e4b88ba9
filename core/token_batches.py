"""Shapes of inference batches, shared by the bi-encoder and the cross-encoder."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def token_batches(
    lengths: np.ndarray, batch_size: int, max_batch_tokens: int | None = None
) -> Iterator[np.ndarray]:
    """Index arrays of length-sorted batches (longest first, so memory peaks early). With
    ``max_batch_tokens``, a batch also stops before its padded size (rows x its longest row) would
    pass that budget: similar lengths travel together and little compute goes to padding."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    start = 0
    while start < len(order):
        rows = batch_size
        if max_batch_tokens is not None:  # the first row is the longest: it sets the padded width
            rows = max(1, min(rows, max_batch_tokens // int(lengths[order[start]])))
        yield order[start : start + rows]
        start += rows


def padded_width(longest: int, rows: int, max_length: int) -> int:
    """The width to pad a batch to: its longest row, rounded up to a multiple of 8 when it has
    several rows (never past ``max_length``). The rounding bounds the number of distinct shapes
    a server sees, and with it the kernels oneDNN / cuBLAS compile and cache for each (and the
    memory they hold); one row has at most ``max_length`` shapes, so it is not rounded."""
    if rows <= 1:
        return longest
    return max(longest, min(-(-longest // 8) * 8, max_length))


ACTIVATION_BUDGET = 24 * 1024 * 1024  # bytes; below glibc's 32 MiB mmap cap (core.device)


def cpu_max_batch_tokens(widest: int, itemsize: int) -> int:
    """Tokens per CPU forward pass such that the widest activation (``widest`` features of
    ``itemsize`` bytes per token, e.g. BERT's FFN intermediate) stays under 24 MiB, so it is
    served from malloc's heap instead of a fresh mmap each pass (:func:`core.device.tune_cpu_allocator`).
    MiniLM (1,536 features): 8,192 tokens in bf16, 4,096 in float32. Batches of 64 MEDLINE
    abstracts (12k tokens, 38 MB activations) encoded at 76 docs/s in bf16, 8,192-token batches
    at 96, 102 with the allocator tuned (BENCHMARKS.md). A multiple of 256, at least 256."""
    return max(256, ACTIVATION_BUDGET // max(1, widest * itemsize) // 256 * 256)
