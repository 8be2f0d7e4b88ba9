"""The cross-encoder: BERT's sequence-pair classifier (``run_classifier``'s head).

``[CLS] a [SEP] b [SEP]`` with token type ids -> BERT's pooler (dense + tanh over [CLS]) ->
dropout -> linear to ``num_labels`` logits. A model folder is a plain transformers
sequence-classification folder (``config.json`` with ``id2label``, ``label2id``,
``problem_type``; safetensors weights), so ``AutoModelForSequenceClassification`` loads it.

Problem types and what a logit means:
- ``single_label``: softmax over the labels (NLI's three classes, paraphrase 0/1);
- ``multi_label``: an independent sigmoid per label (they need not sum to 1);
- ``regression``: one logit; the score is its sigmoid, trained against scores scaled to 0..1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from core.batching import padded_width, token_batches
from core.device import offline_mode, resolve_device
from core.errors import InvalidInputError, ModelFormatError, ModelNotFoundError

log = logging.getLogger(__name__)

PROBLEMS = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
_SHORT = {v: k for k, v in PROBLEMS.items()}
POSITIVE_NAMES = {"1", "true", "yes", "positive", "relevant", "entailment", "paraphrase", "duplicate"}


class CrossEncoder:
    def __init__(self, model: Any, tokenizer: Any, device: torch.device, max_length: int) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        problem = getattr(model.config, "problem_type", None) or "single_label_classification"
        if problem not in _SHORT:
            raise ModelFormatError(f"unknown problem_type {problem!r} in the cross-encoder's config")
        self.problem = _SHORT[problem]
        self.labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, device: str = "auto", max_length: int | None = None) -> CrossEncoder:
        """A trained cross-encoder folder (or any sequence-classification folder)."""
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"cross-encoder folder not found (no config.json): {path}")
        offline_mode()
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        if not getattr(config, "problem_type", None) and config.num_labels == 1:
            config.problem_type = "regression"
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, local_files_only=True, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
        return cls(model, tokenizer, resolve_device(device), _max_length(config, tokenizer, max_length))

    @classmethod
    def new(
        cls,
        encoder_dir: str | Path,
        problem: str,
        labels: Sequence[str],
        device: str = "auto",
        max_length: int | None = None,
    ) -> CrossEncoder:
        """A new head on a BERT checkpoint (e.g. the packaged MiniLM's transformer weights)."""
        if problem not in PROBLEMS:
            raise InvalidInputError(f"unknown problem {problem!r}; use one of {', '.join(PROBLEMS)}")
        if problem == "regression" and len(labels) != 1:
            raise InvalidInputError("a regression cross-encoder has exactly one output")
        if problem != "regression" and len(labels) < 2 and problem == "single_label":
            raise InvalidInputError("single_label classification needs at least two labels")
        path = Path(encoder_dir).expanduser()
        offline_mode()
        config = AutoConfig.from_pretrained(
            path,
            local_files_only=True,
            num_labels=len(labels),
            problem_type=PROBLEMS[problem],
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
        )
        model = AutoModelForSequenceClassification.from_pretrained(
            path, config=config, local_files_only=True, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
        return cls(model, tokenizer, resolve_device(device), _max_length(config, tokenizer, max_length))

    def save(self, output: str | Path) -> None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(output, safe_serialization=True)
        self.tokenizer.save_pretrained(output)

    # ------------------------------------------------------------ inference
    def tokenize(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
        """Unpadded token ids per pair, truncated longest-first to ``max_length``."""
        if not pairs:
            return []
        firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
        enc = self.tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_length)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(pairs))]

    def collate(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = padded_width(max(len(r["input_ids"]) for r in rows), len(rows), self.max_length)
        pad = int(self.tokenizer.pad_token_id or 0)
        out: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            fill = pad if key == "input_ids" else 0
            arr = np.full((len(rows), width), fill, dtype=np.int64)
            for i, r in enumerate(rows):
                arr[i, : len(r[key])] = r[key]
            out[key] = torch.from_numpy(arr).to(self.device)
        return out

    def logits(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, max_tokens: int = 4096
    ) -> np.ndarray:
        """(n, num_labels) float32 logits, in input order; length-sorted, token-budgeted batches."""
        rows = self.tokenize(pairs)
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        if not rows:
            return out
        lengths = np.array([len(r["input_ids"]) for r in rows])
        with torch.inference_mode():
            for idx in token_batches(lengths, batch_size, max_tokens):
                logits = self.model(**self.collate([rows[i] for i in idx])).logits
                out[idx] = logits.float().cpu().numpy()
        return out

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        if self.problem == "single_label":
            shifted = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)  # multi-label and regression

    @property
    def positive(self) -> int:
        """The label whose probability is a pair's relevance: one named like a positive class
        ("1", "entailment", "relevant", ...), else the last."""
        for i, name in enumerate(self.labels):
            if name.lower() in POSITIVE_NAMES:
                return i
        return len(self.labels) - 1

    def scores(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """One relevance score per pair, for reranking: the regression score, or the
        probability of the positive label."""
        probs = self.probabilities(self.logits(pairs, batch_size))
        return probs[:, self.positive]


def _max_length(config: Any, tokenizer: Any, wanted: int | None) -> int:
    limit = int(getattr(config, "max_position_embeddings", 512))
    model_max = int(getattr(tokenizer, "model_max_length", limit) or limit)
    length = wanted or min(limit, model_max, 512)
    if not 8 <= length <= limit:
        raise InvalidInputError(f"max_seq_length must be between 8 and {limit}, got {length}")
    return length
