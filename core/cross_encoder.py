"""The cross-encoder: BERT's sequence-pair classifier (``run_classifier``'s head).

``[CLS] a [SEP] b [SEP]`` with token type ids -> BERT's pooler (dense + tanh over [CLS]) ->
dropout -> linear to ``num_labels`` logits. A model folder is a plain transformers
sequence-classification folder (``config.json`` with ``id2label``, ``label2id``,
``problem_type``; safetensors weights), so ``AutoModelForSequenceClassification`` loads it.

A checkpoint without pooler weights (a BERT saved with ``add_pooling_layer=False``) gets no
randomly initialised pooler: the [CLS] hidden state goes straight to dropout and the linear layer
(``ClsPooler``). Transformers' BERT classifier always has a dense + tanh pooler and no config
switch removes it, so a saved folder stores that head in standard weights which compute the same
function to ~1e-5 relative: pooler dense = s * I with zero bias and classifier weight = W / s, for a
small power of two s. As tanh(s h) / s = h - s^2 h^3 / 3 + ..., plain transformers gives
W h + b up to that term (s = 2^-12: below 1e-5 relative for |h| <= 20; the largest [CLS]
value of MiniLM is about 6). ``config.json`` records s as ``cls_pooler_scale``, and ``load`` turns
such a pooler back into ``ClsPooler`` with W exactly (scaling by a power of two is exact), so
training and inference here use the [CLS] state itself, not its tanh approximation.
(Pooler dense = I with tanh still applied would store exactly, but it computes tanh([CLS]), which
saturates BERT's large outlier dimensions; it is not the [CLS] state.)

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
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from core.device import (
    native_precision,
    offline_mode,
    resolve_device,
    resolve_precision,
    torch_dtype,
    tune_cpu_allocator,
)
from core.errors import InvalidInputError, ModelFormatError, ModelNotFoundError
from core.fast_bert import UnpaddedBert, WeightsCache, unsupported_reason
from core.index.lexical import minmax
from core.precision_names import CROSS_ENCODER_PRECISIONS
from core.token_batches import padded_width, token_batches

log = logging.getLogger(__name__)

PROBLEMS = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
_SHORT = {v: k for k, v in PROBLEMS.items()}
POSITIVE_NAMES = {"1", "true", "yes", "positive", "relevant", "entailment", "paraphrase", "duplicate"}
CLS_POOLER_KEY = "cls_pooler_scale"  # in config.json: the head is ClsPooler, stored scaled by this
RERANK_WEIGHT_KEY = "semsearch_rerank_weight"  # in config.json: fuse_scores weight the model was tuned with
CLS_POOLER_SCALE = 2.0**-12


class ClsPooler(nn.Module):
    """BERT's pooler for a checkpoint that has none: the [CLS] hidden state, unchanged."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


class CrossEncoder:
    def __init__(self, model: Any, tokenizer: Any, device: torch.device, max_seq_length: int) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        if device.type == "cpu":
            tune_cpu_allocator()
        self.max_seq_length = max_seq_length
        problem = getattr(model.config, "problem_type", None) or "single_label_classification"
        if problem not in _SHORT:
            raise ModelFormatError(f"unknown problem_type {problem!r} in the cross-encoder's config")
        self.problem = _SHORT[problem]
        self.labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
        self.precision = "fp32"
        base = getattr(model, "base_model", None)
        # BERT-family bodies run unpadded at inference, like the bi-encoder (core.fast_bert).
        self._unpadded = base is not None and unsupported_reason(base) is None
        self._cache = WeightsCache()

    def to_precision(self, precision: str) -> str:
        """Inference precision: ``fp32``, ``bf16`` (native CPUs and GPUs), ``fp16`` (CUDA) or ``auto``
        (:func:`core.device.native_precision`). Not for training."""
        if precision == "auto":
            precision = native_precision(self.device, CROSS_ENCODER_PRECISIONS)
        if precision not in CROSS_ENCODER_PRECISIONS:
            raise InvalidInputError(
                f"the cross-encoder runs at {', '.join(CROSS_ENCODER_PRECISIONS[1:])}; "
                f"{precision!r} is not one of them (int8 is for the bi-encoder)"
            )
        chosen = resolve_precision(precision, self.device)
        self.model.to(torch_dtype(chosen))
        self.precision = chosen
        log.info("cross-encoder precision %s on %s", chosen, self.device)
        return chosen

    def _forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for one collated batch: the unpadded body where it applies, then the model's own
        pooler and classifier (dropout is off in eval)."""
        if not self._unpadded:
            logits: torch.Tensor = self.model(**batch).logits
            return logits
        base = self.model.base_model
        body = self._cache.get(base, lambda: UnpaddedBert(base))
        hidden = body(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        out: torch.Tensor = self.model.classifier(base.pooler(hidden))
        return out

    # ------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, device: str = "auto", max_seq_length: int | None = None) -> CrossEncoder:
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
        if getattr(config, CLS_POOLER_KEY, None) is not None:
            _unfold_cls_pooler(model, float(getattr(config, CLS_POOLER_KEY)), classifier_folded=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
        return cls(
            model, tokenizer, resolve_device(device), _max_seq_length(config, tokenizer, max_seq_length)
        )

    @classmethod
    def new(
        cls,
        encoder_dir: str | Path,
        problem: str,
        labels: Sequence[str],
        device: str = "auto",
        max_seq_length: int | None = None,
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
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
            local_files_only=True,
            use_safetensors=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # a cross-encoder folder with another head starts a new one
        )
        missing = {k if isinstance(k, str) else k[0] for k in info["missing_keys"]}
        missing |= {k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", ())}
        if getattr(config, CLS_POOLER_KEY, None) is not None:  # a saved cross-encoder without pooler
            classifier_folded = not any(k.startswith("classifier.") for k in missing)
            _unfold_cls_pooler(model, float(getattr(config, CLS_POOLER_KEY)), classifier_folded)
        elif _pooler_dense(model) is not None and any(k.endswith("pooler.dense.weight") for k in missing):
            log.info("%s has no pooler weights: the [CLS] hidden state feeds the classifier", path)
            _set_cls_pooler(model)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, use_fast=True)
        return cls(
            model, tokenizer, resolve_device(device), _max_seq_length(config, tokenizer, max_seq_length)
        )

    @property
    def cls_pooler(self) -> bool:
        """Whether the [CLS] hidden state feeds the classifier directly (no pooler weights)."""
        return isinstance(getattr(self.model.base_model, "pooler", None), ClsPooler)

    def save(self, output: str | Path) -> None:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        state = _folded_state(self.model) if self.cls_pooler else None
        self.model.save_pretrained(output, safe_serialization=True, state_dict=state)
        # The length it was trained (or set) to truncate at is the length it is served at.
        self.tokenizer.model_max_length = self.max_seq_length
        self.tokenizer.save_pretrained(output)

    # ------------------------------------------------------------ inference
    def tokenize(self, pairs: Sequence[tuple[str, str]]) -> list[dict[str, list[int]]]:
        """Unpadded token ids per pair, truncated longest-first to ``max_seq_length``."""
        if not pairs:
            return []
        firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
        enc = self.tokenizer(firsts, seconds, truncation="longest_first", max_length=self.max_seq_length)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        return [{k: enc[k][i] for k in keys} for i in range(len(pairs))]

    def collate(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = padded_width(max(len(r["input_ids"]) for r in rows), len(rows), self.max_seq_length)
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
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, max_batch_tokens: int = 4096
    ) -> np.ndarray:
        """(n, num_labels) float32 logits, in input order; length-sorted, token-budgeted batches."""
        rows = self.tokenize(pairs)
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        if not rows:
            return out
        lengths = np.array([len(r["input_ids"]) for r in rows])
        with torch.inference_mode():
            for idx in token_batches(lengths, batch_size, max_batch_tokens):
                logits = self._forward(self.collate([rows[i] for i in idx]))
                out[idx] = logits.float().cpu().numpy()
        return out

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        if self.problem == "single_label":
            shifted = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)  # multi-label and regression

    @property
    def rerank_weight(self) -> float:
        """The cross-encoder's share when its scores are fused with the first stage's
        (:func:`fuse_scores`); kept in config.json, 1.0 (the cross-encoder alone) when unset."""
        stored = getattr(self.model.config, RERANK_WEIGHT_KEY, None)
        if stored is None:
            return 1.0
        if isinstance(stored, bool) or not isinstance(stored, int | float) or not 0.0 <= stored <= 1.0:
            raise ModelFormatError(
                f"config.json: {RERANK_WEIGHT_KEY} must be a number in [0, 1], got {stored!r}"
            )
        return float(stored)

    @rerank_weight.setter
    def rerank_weight(self, weight: float) -> None:
        if not 0.0 <= weight <= 1.0:
            raise InvalidInputError(f"rerank weight must be in [0, 1], got {weight}")
        setattr(self.model.config, RERANK_WEIGHT_KEY, float(weight))

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


def fuse_scores(first: np.ndarray, rerank: np.ndarray, weight: float) -> np.ndarray:
    """``weight * z(rerank) + (1 - weight) * z(first)``, each min-max normalised over the
    candidates as hybrid search's ``alpha`` mixing does (:func:`core.index.lexical.minmax`);
    ``rerank`` (probabilities) is taken as log-odds first, so that saturated probabilities near
    0 or 1 still order. Weight 1 is the cross-encoder's order alone."""
    if weight >= 1.0:
        return np.asarray(rerank, dtype=np.float64)
    p = np.clip(np.asarray(rerank, dtype=np.float64), 1e-7, 1 - 1e-7)
    logit = np.log(p) - np.log1p(-p)
    return weight * minmax(logit) + (1.0 - weight) * minmax(np.asarray(first, dtype=np.float64))


def rerank_order(first: np.ndarray, rerank: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """(order, fused): the candidates' positions best first by :func:`fuse_scores`, ties kept in
    first-stage order (a stable sort), and the fused scores. The service's rerank and
    ``eval retrieval`` both rank with this, so that the two cannot drift apart."""
    fused = fuse_scores(first, rerank, weight)
    return np.argsort(-fused, kind="stable"), fused


def _pooler_dense(model: Any) -> nn.Linear | None:
    """The dense layer of BERT's pooler (dense + tanh) when the classifier is BERT's (pooler ->
    dropout -> linear)."""
    dense = getattr(getattr(model.base_model, "pooler", None), "dense", None)
    if isinstance(dense, nn.Linear) and isinstance(getattr(model, "classifier", None), nn.Linear):
        return dense
    return None


def _set_cls_pooler(model: Any) -> None:
    model.base_model.pooler = ClsPooler()
    setattr(model.config, CLS_POOLER_KEY, CLS_POOLER_SCALE)


def _folded_state(model: Any) -> dict[str, torch.Tensor]:
    """The state dict with ClsPooler stored as BERT's pooler: dense s*I, zero bias, classifier W/s."""
    state = dict(model.state_dict())
    scale = float(getattr(model.config, CLS_POOLER_KEY))
    weight = model.classifier.weight
    hidden = weight.shape[1]
    prefix = f"{model.base_model_prefix}.pooler.dense"
    state[f"{prefix}.weight"] = torch.eye(hidden, dtype=weight.dtype, device=weight.device) * scale
    state[f"{prefix}.bias"] = torch.zeros(hidden, dtype=weight.dtype, device=weight.device)
    state["classifier.weight"] = weight.detach() / scale
    return state


def _unfold_cls_pooler(model: Any, scale: float, classifier_folded: bool) -> None:
    """Back from ``_folded_state`` (the classifier too when it came from the folder, not new);
    a pooler changed since (trained on elsewhere) stays a pooler."""
    dense = _pooler_dense(model)
    if dense is None:
        raise ModelFormatError(f"{CLS_POOLER_KEY} in config.json but the model has no BERT pooler")
    identity = torch.eye(dense.weight.shape[0], dtype=dense.weight.dtype) * scale
    if not (torch.equal(dense.weight.detach().cpu(), identity) and not dense.bias.detach().any()):
        log.warning("%s set but the pooler is not %g * I; keeping it as a pooler", CLS_POOLER_KEY, scale)
        delattr(model.config, CLS_POOLER_KEY)
        return
    if classifier_folded:
        with torch.no_grad():
            model.classifier.weight.mul_(scale)
    _set_cls_pooler(model)


def _max_seq_length(config: Any, tokenizer: Any, wanted: int | None) -> int:
    limit = int(getattr(config, "max_position_embeddings", 512))
    model_max = int(getattr(tokenizer, "model_max_length", limit) or limit)
    length = wanted or min(limit, model_max, 512)
    if not 8 <= length <= limit:
        raise InvalidInputError(f"max_seq_length must be between 8 and {limit}, got {length}")
    return length
