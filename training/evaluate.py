"""Evaluation: Spearman/Pearson of cosine vs gold (x100), and NLI accuracy of the softmax head.

``semsearch eval sts --model DIR --data FILE [--format stsb|sick|pairs]`` prints both
correlations and the encode throughput.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.encoder import Encoder
from core.errors import DataError
from core.unit_vectors import cosine_rows
from training.data import PairExample, read_pairs


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties get their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(rankdata(a), rankdata(b))


@dataclass
class StsResult:
    spearman: float  # x100
    pearson: float  # x100
    pairs: int
    sentences_per_s: float


def sts_eval(encoder: Encoder, examples: list[PairExample], batch_size: int = 32) -> StsResult:
    scored = [e for e in examples if e.score is not None]
    if len(scored) < 2:
        raise DataError(examples[0].source if examples else "?", None, "STS evaluation needs scored pairs")
    sentences = [e.s1 for e in scored] + [e.s2 for e in scored]
    t0 = time.perf_counter()
    emb = encoder.encode(sentences, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    n = len(scored)
    cos = cosine_rows(emb[:n], emb[n:])
    gold = np.array([e.score for e in scored], dtype=np.float64)
    return StsResult(100 * spearman(cos, gold), 100 * pearson(cos, gold), n, len(sentences) / seconds)


def eval_sts_file(
    model: str | Path,
    data: str | Path,
    fmt: str = "auto",
    split: str | None = None,
    batch_size: int = 32,
    device: str = "auto",
) -> StsResult:
    encoder = Encoder.load(model, device)
    return sts_eval(encoder, read_pairs(data, fmt, split), batch_size)
