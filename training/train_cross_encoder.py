"""``semsearch train cross-encoder``: BERT's pair classifier trained by the shared loop.

Same readers, schedule, checkpoints, metrics.jsonl and curves as the bi-encoder (training.loop).
Losses by problem type: cross-entropy (single_label), binary cross-entropy per label
(multi_label, labels written ``a,b`` in the data), and MSE between sigmoid(logit) and the score
scaled to 0..1 (regression). Dev metrics: accuracy and F1, or Spearman.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.cross_encoder import CrossEncoder
from core.device import resolve_device
from core.errors import DataError, InvalidInputError
from training.curves import plot_curves
from training.data import PairExample, load_pair_data
from training.evaluate import spearman
from training.length_batches import length_batches
from training.loop import METRICS_FILE, PairRunConfig, run

log = logging.getLogger(__name__)
CONFIG_FILE = "train_config.json"


@dataclass(kw_only=True)
class CrossEncoderConfig(PairRunConfig):
    problem: str = "single_label"  # single_label | multi_label | regression
    num_labels: int | None = None  # default: the labels found in the training data
    # Stored in the saved config.json: the cross-encoder's share when a reranker fuses its score
    # with the retrieval score (core.cross_encoder.fuse_scores); None leaves the default (1.0).
    rerank_weight: float | None = None
    # "pointwise": the problem type's loss per pair. "listwise" (single_label, two labels): the
    # rows come in groups sharing sentence1, one positive first then its negatives (as
    # ``semsearch train pseudo-queries`` writes them); the loss is softmax cross-entropy of the
    # positive against its group, over each pair's log-odds.
    loss: str = "pointwise"


def label_names(examples: list[PairExample], problem: str, num_labels: int | None) -> list[str]:
    """The model's labels: integer labels keep their value as index, names are sorted."""
    if problem == "regression":
        return ["score"]
    names: set[str] = set()
    for e in examples:
        if e.label is not None:
            names.update(_split(e.label) if problem == "multi_label" else [e.label])
    if all(n.lstrip("-").isdigit() for n in names) and names:
        size = max(max(int(n) for n in names) + 1, num_labels or 0)
        return [str(i) for i in range(size)]
    ordered = sorted(names)
    if num_labels is not None and num_labels != len(ordered):
        raise InvalidInputError(f"--num-labels {num_labels} but the data has {len(ordered)}: {ordered}")
    return ordered


def _split(label: str) -> list[str]:
    return [part.strip() for part in label.split(",") if part.strip()]


def targets(examples: list[PairExample], problem: str, labels: list[str]) -> torch.Tensor:
    index = {name: i for i, name in enumerate(labels)}
    if problem == "regression":
        bad = next((e for e in examples if e.score is None), None)
        if bad:
            raise DataError(bad.source, bad.line, "regression needs a score on every pair")
        return torch.tensor([e.score for e in examples], dtype=torch.float32)
    bad = next((e for e in examples if e.label is None), None)
    if bad:
        raise DataError(bad.source, bad.line, f"{problem} needs a label on every pair")
    if problem == "single_label":
        return torch.tensor([index[e.label or ""] for e in examples], dtype=torch.long)
    hot = torch.zeros(len(examples), len(labels))
    for row, e in enumerate(examples):
        for name in _split(e.label or ""):
            hot[row, index[name]] = 1.0
    return hot


def pair_loss(logits: torch.Tensor, target: torch.Tensor, problem: str) -> torch.Tensor:
    logits = logits.float()
    if problem == "single_label":
        return F.cross_entropy(logits, target)
    if problem == "multi_label":
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.mse_loss(torch.sigmoid(logits[:, 0]), target)


def query_groups(examples: list[PairExample], target: torch.Tensor) -> list[np.ndarray]:
    """Row indices per query for the listwise loss: a group starts at each positive (label index
    1) and takes the negatives after it that share its sentence1."""
    groups: list[np.ndarray] = []
    labels = target.tolist()
    for i, e in enumerate(examples):
        if labels[i] == 1:
            groups.append(np.array([i]))
        elif not groups or examples[int(groups[-1][0])].s1 != e.s1:
            raise DataError(
                e.source, e.line, "listwise: a negative must follow its query's positive (label 1)"
            )
        else:
            groups[-1] = np.append(groups[-1], i)
    bad = next((g for g in groups if len(g) < 2), None)
    if bad is not None:
        e = examples[int(bad[0])]
        raise DataError(e.source, e.line, "listwise: this query's positive has no negatives after it")
    return groups


def group_mrr(scores: np.ndarray, groups: list[np.ndarray]) -> float:
    """Mean reciprocal rank (x100) of each group's positive (its first row) among the group."""
    ranks = [1 + int(np.sum(scores[g[1:]] > scores[g[0]])) for g in groups]
    return 100 * float(np.mean([1 / r for r in ranks]))


def listwise_loss(logits: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Mean over groups of -log softmax(positive) among the group's log-odds (logit 1 - logit 0)."""
    odds = (logits[:, 1] - logits[:, 0]).float()
    losses = [-F.log_softmax(part, dim=0)[0] for part in torch.split(odds, sizes)]
    return torch.stack(losses).mean()


def classification_metrics(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and F1 (x100): F1 of class 1 for two classes, macro F1 otherwise."""
    f1s = []
    for c in range(num_labels):
        tp = float(np.sum((pred == c) & (gold == c)))
        fp, fn = float(np.sum((pred == c) & (gold != c))), float(np.sum((pred != c) & (gold == c)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    f1 = f1s[1] if num_labels == 2 else float(np.mean(f1s))
    return {"accuracy": 100 * float(np.mean(pred == gold)), "f1": 100 * f1}


def evaluate_pairs(
    model: CrossEncoder, examples: list[PairExample], batch_size: int = 64
) -> dict[str, float]:
    """Spearman (regression), accuracy + F1 (single-label), or exact-match accuracy (multi-label)."""
    logits = model.logits([(e.s1, e.s2) for e in examples], batch_size=batch_size)
    gold = targets(examples, model.problem, model.labels).numpy()
    if model.problem == "regression":
        return {"spearman": 100 * spearman(model.probabilities(logits)[:, 0], gold)}
    if model.problem == "multi_label":
        pred = model.probabilities(logits) >= 0.5
        return {"accuracy": 100 * float(np.mean(np.all(pred == (gold > 0.5), axis=1)))}
    return classification_metrics(logits.argmax(1), gold, len(model.labels))


class CrossEncoderTask:
    def __init__(
        self,
        cfg: CrossEncoderConfig,
        model: CrossEncoder,
        train: list[PairExample],
        dev: list[PairExample] | None,
    ) -> None:
        self.cfg, self.model, self.dev = cfg, model, dev
        self.problem = model.problem
        self.target = targets(train, self.problem, model.labels)
        self.rows = model.tokenize([(e.s1, e.s2) for e in train])
        self.lengths = np.array([len(r["input_ids"]) for r in self.rows])
        self.modules: dict[str, nn.Module] = {"model": model.model}
        self.key_metric = None if not dev else ("spearman" if self.problem == "regression" else "accuracy")
        self.groups: list[np.ndarray] | None = None
        self.dev_groups: list[np.ndarray] | None = None
        if cfg.loss == "listwise":
            if self.problem != "single_label" or len(model.labels) != 2:
                raise InvalidInputError("--loss listwise needs --problem single_label with labels 0 and 1")
            self.groups = query_groups(train, self.target)
            if dev:  # ranking, not a 0.5 threshold, is what a listwise model is trained for
                self.dev_groups = query_groups(dev, targets(dev, self.problem, model.labels))
                self.key_metric = "mrr"

    def num_examples(self) -> int:
        return len(self.rows)

    def batches(self, epoch: int) -> list[np.ndarray]:
        if self.groups is None:
            return length_batches(self.lengths, self.cfg.batch_size, self.cfg.seed + epoch)
        # Whole groups, shuffled; --batch-size counts pairs, so a batch holds that many pairs' groups.
        order = np.random.default_rng(self.cfg.seed + epoch).permutation(len(self.groups))
        per = max(1, self.cfg.batch_size // max(1, len(self.groups[0])))
        return [
            np.concatenate([self.groups[g] for g in order[i : i + per]]) for i in range(0, len(order), per)
        ]

    def loss(self, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        idx = batch.tolist()
        logits = self.model.model(**self.model.collate([self.rows[i] for i in idx])).logits
        if self.groups is not None:
            starts = [i for i, row in enumerate(idx) if int(self.target[row]) == 1]
            sizes = [b - a for a, b in zip(starts, [*starts[1:], len(idx)], strict=True)]
            return listwise_loss(logits, sizes), len(idx)
        return pair_loss(logits, self.target[idx].to(logits.device), self.problem), len(idx)

    def evaluate(self) -> dict[str, float]:
        if not self.dev:
            return {}
        model = self.model.model
        was_training = model.training
        model.eval()
        try:
            if self.dev_groups is not None:
                logits = self.model.logits([(e.s1, e.s2) for e in self.dev])
                return {"mrr": group_mrr(logits[:, 1] - logits[:, 0], self.dev_groups)}
            return evaluate_pairs(self.model, self.dev)
        finally:
            model.train(was_training)

    def save_model(self, output: Path) -> None:
        self.model.save(output)


def train_cross_encoder(cfg: CrossEncoderConfig) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    train, dev, skipped = load_pair_data(cfg)
    labels = label_names(train, cfg.problem, cfg.num_labels)
    model = CrossEncoder.new(cfg.model, cfg.problem, labels, cfg.device, cfg.max_seq_length)
    if cfg.rerank_weight is not None:
        model.rerank_weight = cfg.rerank_weight
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    task = CrossEncoderTask(cfg, model, train, dev)
    log.info(
        "%d training pairs, %d dev pairs, %s over labels %s", len(train), len(dev or []), cfg.problem, labels
    )
    summary = run(task, cfg, resolve_device(cfg.device))
    plot_curves(output / METRICS_FILE, output / "training_curves.png")
    summary.update({"train_pairs": len(train), "skipped_lines": len(skipped), "output": str(output)})
    return summary
