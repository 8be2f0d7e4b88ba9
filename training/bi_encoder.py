"""``semsearch train bi-encoder``: the siamese SBERT trainer.

One encoder embeds both sentences (u, v); objectives:
- ``softmax``: a linear classifier over concat(u, v, |u-v| [, u*v]) with cross-entropy (SBERT's
  NLI objective), optionally focal (``--focal-gamma``);
- ``cosine``: MSE of cos(u, v) against a 0..1 score;
- ``mnrl``: in-batch negatives (multiple-negatives ranking loss) over (anchor, positive) pairs.
  With ``hard_negatives``, each anchor's labelled negatives in the file join the candidates.

Both sentences of a batch go through the encoder in one forward pass, and every sentence is
tokenised once up front: the two things that make this faster than sentence-transformers.
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
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from core.cross_encoder import POSITIVE_NAMES
from core.device import resolve_device
from core.encoder import Encoder
from core.errors import DataError, InvalidInputError, ModelFormatError
from core.unit_vectors import cosine_rows
from training.curves import plot_curves
from training.data import PairExample, build_label_map, encode_labels, load_pair_data
from training.evaluate import spearman
from training.length_batches import length_batches
from training.loop import METRICS_FILE, PairRunConfig, run

log = logging.getLogger(__name__)
OBJECTIVES = ("softmax", "cosine", "mnrl")
HEAD_FILE = "softmax_head.safetensors"
HEAD_CONFIG = "softmax_head.json"
CONFIG_FILE = "train_config.json"


@dataclass(kw_only=True)
class BiEncoderConfig(PairRunConfig):
    objective: str = "softmax"
    focal_gamma: float = 0.0
    use_product: bool = False  # add u*v to the classifier input
    mnrl_scale: float = 20.0
    # mnrl: up to this many of each anchor's labelled negatives (rows of the training file with
    # the same first sentence and a negative label, as `train pseudo-queries` writes its BM25
    # hard negatives) join the batch's candidates, beside the other pairs' positives
    hard_negatives: int = 0
    smart_batching: bool = True  # False: plain random batches, as sentence-transformers draws them


class SoftmaxHead(nn.Module):
    """Linear layer over concat(u, v, |u-v| [, u*v])."""

    def __init__(self, dim: int, num_labels: int, use_product: bool = False) -> None:
        super().__init__()
        self.dim, self.num_labels, self.use_product = dim, num_labels, use_product
        self.classifier = nn.Linear((4 if use_product else 3) * dim, num_labels)

    def features(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        parts = [u, v, torch.abs(u - v)]
        if self.use_product:
            parts.append(u * v)
        return torch.cat(parts, dim=-1)

    def forward(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(u, v))
        return out

    def save(self, folder: Path, label_map: dict[str, int]) -> None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(folder / HEAD_FILE)
        )
        cfg = {
            "dim": self.dim,
            "num_labels": self.num_labels,
            "use_product": self.use_product,
            "label2id": label_map,
            "id2label": {str(i): n for n, i in label_map.items()},
        }
        (folder / HEAD_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> tuple[SoftmaxHead, dict[str, int]]:
        try:
            cfg = json.loads((folder / HEAD_CONFIG).read_text())
            head = cls(int(cfg["dim"]), int(cfg["num_labels"]), bool(cfg["use_product"]))
            head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        except (OSError, KeyError, ValueError) as exc:
            raise ModelFormatError(f"{folder}: no usable softmax head ({exc})") from exc
        return head, {str(k): int(v) for k, v in cfg["label2id"].items()}


def focal_cross_entropy(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Cross-entropy scaled by (1 - p_t)^gamma (Lin et al. 2017); gamma 0 is plain CE."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)
    if gamma == 0:
        return -logp.mean()
    return (-((1 - logp.exp()) ** gamma) * logp).mean()


MNRL_MIN_SCORE = 0.8  # a scored pair without a label is a positive for mnrl at or above this


def is_positive_pair(example: PairExample) -> bool:
    """Whether a pair says its two sentences match: a label named like a positive class
    (core.cross_encoder.POSITIVE_NAMES: 1, entailment, paraphrase ...), else a score of at least
    MNRL_MIN_SCORE, else (a bare pair, as a pairs file of positives holds) yes."""
    if example.label is not None:
        return example.label.strip().lower() in POSITIVE_NAMES
    if example.score is not None:
        return example.score >= MNRL_MIN_SCORE
    return True


def mnrl_positives(train: list[PairExample], source: str) -> list[PairExample]:
    """The pairs in-batch negatives train on: positives only. A labelled negative taken as a
    positive would teach the encoder to pull non-matching sentences together."""
    kept = [e for e in train if is_positive_pair(e)]
    if not kept:
        raise DataError(
            source, None, "the mnrl objective needs positive pairs; every pair is labelled negative"
        )
    if len(kept) < len(train):
        log.info(
            "mnrl: %d positive pairs of %d (labelled or scored negatives left out)", len(kept), len(train)
        )
    return kept


class BiEncoderTask:
    def __init__(
        self, cfg: BiEncoderConfig, encoder: Encoder, train: list[PairExample], dev: list[PairExample] | None
    ) -> None:
        if cfg.objective not in OBJECTIVES:
            raise InvalidInputError(
                f"unknown objective {cfg.objective!r}; use one of {', '.join(OBJECTIVES)}"
            )
        negatives: list[list[str]] = []
        if cfg.objective == "mnrl":
            if cfg.hard_negatives < 0:
                raise InvalidInputError("hard_negatives must be 0 or more")
            by_anchor: dict[str, list[str]] = {}
            for e in train:
                if not is_positive_pair(e):
                    by_anchor.setdefault(e.s1, []).append(e.s2)
            train = mnrl_positives(train, cfg.train[0] if cfg.train else "")
            if cfg.hard_negatives:
                negatives = [by_anchor.get(e.s1, [])[: cfg.hard_negatives] for e in train]
                log.info("mnrl: %d hard negatives for %d anchors", sum(map(len, negatives)), len(train))
        elif cfg.hard_negatives:
            raise InvalidInputError("hard_negatives is for the mnrl objective")
        self.cfg, self.encoder, self.train, self.dev = cfg, encoder, train, dev
        self.head: SoftmaxHead | None = None
        self.label_map: dict[str, int] = {}
        if cfg.objective == "softmax":
            self.label_map = build_label_map(train)
            if len(self.label_map) < 2:
                raise DataError(cfg.train[0], None, "the softmax objective needs at least two label classes")
            self.labels = torch.tensor(encode_labels(train, self.label_map))
            self.head = SoftmaxHead(encoder.dim, max(self.label_map.values()) + 1, cfg.use_product).to(
                encoder.device
            )
        elif cfg.objective == "cosine":
            missing = next((e for e in train if e.score is None), None)
            if missing:
                raise DataError(
                    missing.source, missing.line, "the cosine objective needs a score on every pair"
                )
            self.scores = torch.tensor([e.score for e in train], dtype=torch.float32)
        self.modules: dict[str, nn.Module] = {"encoder": encoder.net}
        if self.head is not None:
            self.modules["head"] = self.head
        self.key_metric = (
            "spearman"
            if dev and any(e.score is not None for e in dev)
            else ("accuracy" if dev and self.head is not None else None)
        )
        # Tokenise every sentence once; batches only pad and stack.
        self.enc1 = encoder.tokenize([e.s1 for e in train])
        self.enc2 = encoder.tokenize([e.s2 for e in train])
        # one tokenizer call for every hard negative (it batches), then split back per anchor
        flat = encoder.tokenize([t for negs in negatives for t in negs]) if negatives else []
        ends = np.cumsum([len(negs) for negs in negatives]).tolist()
        self.negatives = [flat[a:b] for a, b in zip([0, *ends], ends, strict=False)] or [[] for _ in train]
        self.lengths = np.array(
            [
                max(len(a.ids), len(b.ids), *(len(n.ids) for n in negs))
                for a, b, negs in zip(self.enc1, self.enc2, self.negatives, strict=True)
            ]
        )

    def num_examples(self) -> int:
        return len(self.train)

    def batches(self, epoch: int) -> list[np.ndarray]:
        if not self.cfg.smart_batching:
            order = np.random.default_rng(self.cfg.seed + epoch).permutation(len(self.lengths))
            return [order[i : i + self.cfg.batch_size] for i in range(0, len(order), self.cfg.batch_size)]
        return length_batches(self.lengths, self.cfg.batch_size, self.cfg.seed + epoch)

    def loss(self, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        idx = batch.tolist()
        negatives = [n for i in idx for n in self.negatives[i]]  # mnrl's hard negatives, pooled
        feats = self.encoder.collate([self.enc1[i] for i in idx] + [self.enc2[i] for i in idx] + negatives)
        emb = self.encoder.forward(feats)["sentence_embedding"]
        u, v = emb[: len(idx)], emb[len(idx) :]  # v: the positives, then the hard negatives
        device = emb.device
        if self.head is not None:
            logits = self.head(u, v)
            return focal_cross_entropy(logits, self.labels[idx].to(device), self.cfg.focal_gamma), len(idx)
        if self.cfg.objective == "cosine":
            cos = F.cosine_similarity(u.float(), v.float())
            return F.mse_loss(cos, self.scores[idx].to(device)), len(idx)
        sims = F.normalize(u.float(), dim=-1) @ F.normalize(v.float(), dim=-1).T * self.cfg.mnrl_scale
        return F.cross_entropy(sims, torch.arange(len(idx), device=device)), len(idx)

    def evaluate(self) -> dict[str, float]:
        if not self.dev:
            return {}
        out: dict[str, float] = {}
        n = len(self.dev)
        emb = self.encoder.encode([e.s1 for e in self.dev] + [e.s2 for e in self.dev], batch_size=64)
        scored = [i for i, e in enumerate(self.dev) if e.score is not None]
        if len(scored) >= 2:
            cos = cosine_rows(emb[:n], emb[n:])[scored]
            out["spearman"] = 100 * spearman(cos, np.array([self.dev[i].score for i in scored]))
        labelled = [i for i, e in enumerate(self.dev) if e.label in self.label_map]
        if self.head is not None and labelled:
            u = torch.from_numpy(emb[:n][labelled]).to(self.encoder.device)
            v = torch.from_numpy(emb[n:][labelled]).to(self.encoder.device)
            pred = self.head(u, v).argmax(-1).cpu().numpy()
            gold = np.array([self.label_map[self.dev[i].label or ""] for i in labelled])
            out["accuracy"] = 100 * float((pred == gold).mean())
        return out

    def save_model(self, output: Path) -> None:
        self.encoder.save(output)
        if self.head is not None:
            self.head.save(output, self.label_map)


def train_bi_encoder(cfg: BiEncoderConfig) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    train, dev, skipped = load_pair_data(cfg)
    encoder = Encoder.load(cfg.model, device)
    if cfg.max_seq_length:
        encoder.set_max_seq_length(cfg.max_seq_length)
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
    task = BiEncoderTask(cfg, encoder, train, dev)
    log.info(
        "%d training pairs, %d dev pairs, objective %s, %d skipped line(s)",
        len(task.train),
        len(dev or []),
        cfg.objective,
        len(skipped),
    )
    summary = run(task, cfg, device)
    plot_curves(output / METRICS_FILE, output / "training_curves.png")
    summary.update({"train_pairs": len(task.train), "skipped_lines": len(skipped), "output": str(output)})
    return summary
