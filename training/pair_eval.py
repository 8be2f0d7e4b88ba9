"""``semsearch eval pairs``: a bi-encoder on labelled pairs (LCQMC's protocol): accuracy and F1 of
``cosine >= threshold``, the threshold chosen on another file (dev) where one is given, plus
the accuracy of the siamese softmax head when the model folder has one (``train bi-encoder
--objective softmax`` saves it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.encoder import Encoder
from core.errors import DataError, ModelFormatError
from core.unit_vectors import cosine_rows
from training.bi_encoder import HEAD_CONFIG, SoftmaxHead
from training.data import PairExample, read_pairs

POSITIVE, NEGATIVE = "1", "0"


@dataclass
class PairClassResult:
    accuracy: float  # x100, cosine >= threshold predicts POSITIVE
    f1: float  # x100, of the positive class
    threshold: float
    threshold_from: str  # the file the threshold was chosen on
    pairs: int
    head_accuracy: float | None = None  # x100, the softmax head's argmax


def _binary(examples: list[PairExample], source: str | Path) -> tuple[list[PairExample], np.ndarray]:
    kept = [e for e in examples if e.label in (POSITIVE, NEGATIVE)]
    if not kept:
        raise DataError(source, None, "no pair labelled 0 or 1 (eval pairs scores binary matching)")
    return kept, np.array([e.label == POSITIVE for e in kept])


def _embed(encoder: Encoder, examples: list[PairExample], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(u, v): the embeddings of each pair's two sides, in one encode call."""
    emb = encoder.encode([e.s1 for e in examples] + [e.s2 for e in examples], batch_size=batch_size)
    return emb[: len(examples)], emb[len(examples) :]


def best_threshold(cos: np.ndarray, gold: np.ndarray) -> float:
    """The cosine threshold with the best accuracy: a midpoint between neighbouring cosines."""
    order = np.argsort(cos)
    sorted_cos, sorted_gold = cos[order], gold[order]
    # Predicting positive from index i on: correct = negatives below i + positives from i.
    neg_below = np.concatenate([[0], np.cumsum(~sorted_gold)])
    pos_from = np.concatenate([np.cumsum(sorted_gold[::-1])[::-1], [0]])
    best = int(np.argmax(neg_below + pos_from))
    if best == 0:
        return float(sorted_cos[0]) - 1e-6
    if best == len(cos):
        return float(sorted_cos[-1]) + 1e-6
    return float((sorted_cos[best - 1] + sorted_cos[best]) / 2)


def scores_at(cos: np.ndarray, gold: np.ndarray, threshold: float) -> tuple[float, float]:
    pred = cos >= threshold
    tp = float((pred & gold).sum())
    precision = tp / max(float(pred.sum()), 1.0)
    recall = tp / max(float(gold.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return 100 * float((pred == gold).mean()), 100 * f1


def _head_accuracy(folder: Path, examples: list[PairExample], u: np.ndarray, v: np.ndarray) -> float | None:
    """The softmax head's accuracy on the pairs whose embeddings are ``u``, ``v`` (None without one)."""
    if not (folder / HEAD_CONFIG).is_file():
        return None
    head, label2id = SoftmaxHead.load(folder)
    rows = [i for i, e in enumerate(examples) if e.label in label2id]
    if not rows:
        raise ModelFormatError(
            f"{folder}: the softmax head knows none of the labels {POSITIVE!r}, {NEGATIVE!r}"
        )
    with torch.inference_mode():
        pred = head(torch.from_numpy(u[rows]), torch.from_numpy(v[rows])).argmax(-1).numpy()
    gold = np.array([label2id[examples[i].label or ""] for i in rows])
    return 100 * float((pred == gold).mean())


def eval_pairs_file(
    model: str | Path,
    data: str | Path,
    threshold_from: str | Path | None = None,
    fmt: str = "auto",
    batch_size: int = 64,
    device: str = "auto",
) -> PairClassResult:
    """Accuracy and F1 on ``data`` at the threshold best on ``threshold_from`` (``data`` itself
    when None: an upper bound, and said so in ``threshold_from``)."""
    encoder = Encoder.load(model, device)
    examples, gold = _binary(read_pairs(data, fmt), data)
    u, v = _embed(encoder, examples, batch_size)  # for the cosines and the head alike
    cos = cosine_rows(u, v)
    if threshold_from is None:
        threshold, chosen_on = best_threshold(cos, gold), f"{Path(data).name} itself (an upper bound)"
    else:
        dev, dev_gold = _binary(read_pairs(threshold_from, fmt), threshold_from)
        threshold, chosen_on = (
            best_threshold(cosine_rows(*_embed(encoder, dev, batch_size)), dev_gold),
            str(threshold_from),
        )
    accuracy, f1 = scores_at(cos, gold, threshold)
    head = _head_accuracy(Path(model), examples, u, v)
    return PairClassResult(accuracy, f1, threshold, chosen_on, len(examples), head)
