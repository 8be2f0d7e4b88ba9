"""The sentence encoder every part of semsearch shares.

A transformer followed by pooling (and optionally L2 normalisation), loaded from and saved to
the sentence-transformers folder layout. ``encode`` does smart batching: it tokenises once,
sorts by token length, pads each batch only to its own longest member, and restores the
input order before returning float32 numpy.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.device import offline_mode, resolve_device, resolve_precision, torch_dtype, tune_cpu_allocator
from core.errors import InvalidInputError, ModelFormatError
from core.fast_bert import UnpaddedBert, WeightsCache, unsupported_reason
from core.model_folder import fingerprint, read_spec, weight_files, write_st_layout
from core.pooling import Features, Normalize, Pooling
from core.token_batches import cpu_max_batch_tokens, padded_width, token_batches

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Embeddings plus what the caller needs to report: truncation and token counts."""

    embeddings: np.ndarray  # (n, dim) float32
    truncated: np.ndarray  # (n,) bool: the text was cut at max_seq_length
    token_counts: np.ndarray  # (n,) int: tokens fed to the model, special tokens included


class _Padded(nn.Module):
    """The transformers model as an inference module with UnpaddedBert's call signature."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra, return_dict=True)
        hidden: torch.Tensor = out.last_hidden_state
        return hidden


class Transformer(nn.Module):
    """Runs the transformer and puts ``token_embeddings`` into the features dict.

    Training (grads on) runs the transformers model itself. Inference runs an inference module
    built from the same weights: BERT-family models run unpadded (:mod:`core.fast_bert`), and
    with ``quantized`` the module's linear layers are dynamic int8. It is rebuilt whenever a
    weight changes, so it never serves stale weights."""

    def __init__(self, model: nn.Module, use_token_type_ids: bool) -> None:
        super().__init__()
        self.auto_model = model
        self.use_token_type_ids = use_token_type_ids
        self.unpadded = unsupported_reason(model) is None
        self.quantized = False
        self._cache = WeightsCache()

    def inference_module(self) -> nn.Module:
        def build() -> nn.Module:
            module: nn.Module = UnpaddedBert(self.auto_model) if self.unpadded else _Padded(self.auto_model)
            return quantize_int8(module) if self.quantized else module

        return self._cache.get(self.auto_model, build, self.unpadded, self.quantized)

    def forward(self, features: Features) -> Features:
        types = features.get("token_type_ids") if self.use_token_type_ids else None
        if self.training or torch.is_grad_enabled():
            out = _Padded(self.auto_model)(features["input_ids"], features["attention_mask"], types)
        else:
            out = self.inference_module()(features["input_ids"], features["attention_mask"], types)
        # Pooling and normalisation run in float32 whatever the weights' precision.
        features["token_embeddings"] = out.float()
        return features


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with dynamic int8 linear layers: int8 weights per output channel,
    activations quantised per batch. The FFN down-projections (in_features > 2 x out_features)
    stay float: their inputs are GELU outputs with large outliers, and quantising them doubled
    the drift from fp32 on MiniLM (1 - mean cosine 2.7e-2 -> 1.5e-2 without them; BENCHMARKS.md).
    torch.ao's eager API is deprecated in favour of torchao, which is not a dependency here; it
    still ships and its x86 kernels use VNNI where present."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    spec = {
        name: per_channel_dynamic_qconfig
        for name, sub in module.named_modules()
        if isinstance(sub, nn.Linear) and sub.in_features <= 2 * sub.out_features
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(module, spec, dtype=torch.qint8)
    return quantized


class Encoder:
    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        pooling: Pooling,
        normalize: bool,
        max_seq_length: int,
        do_lower_case: bool = False,
        device: str | torch.device | None = "auto",
        model_fingerprint: str | None = None,
        source: Path | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self.device = resolve_device(device)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.max_seq_length = int(max_seq_length)
        self.do_lower_case = do_lower_case
        self.fingerprint = model_fingerprint
        self.source = source
        self.precision = "fp32"
        use_tt = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
        modules: list[nn.Module] = [Transformer(model, use_tt), pooling]
        if normalize:
            modules.append(Normalize())
        self.net = nn.Sequential(*modules).to(self.device).eval()
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelFormatError(f"{source}: a fast (tokenizers) tokenizer is required")
        # A private copy: tokenizer.json files often carry their own truncation/padding
        # (all-MiniLM-L6-v2's says 128), and we want ours without mutating the caller's object.
        self._tok = Tokenizer.from_str(backend.to_str())
        self._tok.no_padding()
        self._tok.enable_truncation(max_length=self.max_seq_length)
        self._pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = "auto") -> Encoder:
        """Load a sentence-transformers or plain transformers folder, offline, safetensors only."""
        offline_mode()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        spec = read_spec(path)
        weight_files(spec.transformer_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(spec.transformer_dir), local_files_only=True)
            model = AutoModel.from_pretrained(
                str(spec.transformer_dir), local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFormatError(f"{spec.transformer_dir}: cannot load transformer ({exc})") from exc
        hidden = int(model.config.hidden_size)
        pooling = spec.pooling or Pooling(hidden, ("mean",))
        if pooling.dim != hidden:
            raise ModelFormatError(
                f"{spec.root}: pooling dimension {pooling.dim} does not match hidden size {hidden}"
            )
        limit = int(getattr(model.config, "max_position_embeddings", 512))
        tok_max = int(getattr(tokenizer, "model_max_length", limit) or limit)
        max_len = min(spec.max_seq_length or min(tok_max, limit), limit)
        fp = fingerprint(spec.transformer_dir, pooling.config(), spec.normalize)
        enc = cls(
            model, tokenizer, pooling, spec.normalize, max_len, spec.do_lower_case, device, fp, spec.root
        )
        log.info(
            "loaded %s (%s layout, dim %d, max_seq_length %d, normalize %s) on %s",
            spec.root,
            spec.layout,
            enc.dim,
            max_len,
            spec.normalize,
            enc.device,
        )
        return enc

    def save(self, path: str | Path) -> None:
        """Save in sentence-transformers layout (safetensors weights)."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        transformer: Any = self.net[0]
        transformer.auto_model.save_pretrained(str(root))
        self.tokenizer.save_pretrained(str(root))
        write_st_layout(root, self.pooling, self.normalize, self.max_seq_length, self.do_lower_case)
        self.fingerprint = fingerprint(root, self.pooling.config(), self.normalize)
        self.source = root

    def to_precision(self, precision: str) -> str:
        """Cast to an explicit inference precision: ``fp32``, ``bf16`` (native on AMX/avx512_bf16
        CPUs and recent GPUs), ``fp16`` (CUDA only) or ``int8`` (dynamic quantisation on CPU).
        Returns it. ``auto`` and ``index`` are choices, made by core.embedding.set_precision, not
        casts. Not for training, which keeps fp32 weights."""
        chosen = resolve_precision(precision, self.device)
        if chosen == "auto":
            raise InvalidInputError(
                "auto is a measured choice, not a cast: core.embedding.set_precision makes it"
            )
        transformer: Any = self.net[0]
        transformer.quantized = chosen == "int8"
        transformer.to(torch_dtype(chosen))
        self.precision = chosen
        log.info("encoder precision %s on %s", chosen, self.device)
        return chosen

    def variant(self, precision: str) -> Encoder:
        """A copy of this encoder at another precision (this one is unchanged)."""
        transformer: Any = self.net[0]
        transformer._cache.clear()  # not worth copying: rebuilt on the next encode
        other = copy.copy(self)
        other.net = copy.deepcopy(self.net)
        other.to_precision(precision)
        return other

    def set_max_seq_length(self, max_seq_length: int) -> None:
        """Change where tokenisation truncates (bounded by the model's position embeddings)."""
        transformer: Any = self.net[0]
        limit = int(getattr(transformer.auto_model.config, "max_position_embeddings", max_seq_length))
        if not 1 <= max_seq_length <= limit:
            raise InvalidInputError(f"max_seq_length must be between 1 and {limit}, got {max_seq_length}")
        self.max_seq_length = max_seq_length
        self._tok.enable_truncation(max_length=max_seq_length)

    # ---------------------------------------------------------------- encoding
    @property
    def dim(self) -> int:
        return self.pooling.output_dim

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """Token encodings (truncated at ``max_seq_length``), one per text, unpadded."""
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a list of strings, not a single string")
        batch = [t.lower() for t in texts] if self.do_lower_case else list(texts)
        return list(self._tok.encode_batch(batch))

    def collate(self, encodings: Sequence[Any]) -> Features:
        """Pad a batch (see :func:`core.token_batches.padded_width`) and move it to the device."""
        longest = max(len(e.ids) for e in encodings)
        width = padded_width(longest, len(encodings), self.max_seq_length)
        ids = np.full((len(encodings), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        return {
            "input_ids": torch.from_numpy(ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
            "token_type_ids": torch.from_numpy(types).to(self.device),
        }

    def forward(self, features: Features) -> Features:
        out: Features = self.net(features)
        return out

    def batches(
        self, encodings: Sequence[Any], batch_size: int, max_batch_tokens: int | None = None
    ) -> Iterator[np.ndarray]:
        """Length-sorted, optionally token-budgeted batches (:func:`core.token_batches.token_batches`)."""
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        budget = self.default_max_batch_tokens() if max_batch_tokens is None else max_batch_tokens
        return token_batches(lengths, batch_size, budget)

    def default_max_batch_tokens(self) -> int | None:
        """``max_batch_tokens`` when the caller gives none: on CPU,
        :func:`core.token_batches.cpu_max_batch_tokens` for this model's widest activation at the
        current precision (int8 computes in float32); None (rows alone) on CUDA."""
        if self.device.type != "cpu":
            return None
        config = getattr(self.net[0].auto_model, "config", None)
        hidden = int(getattr(config, "hidden_size", self.dim))
        widest = max(hidden, int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden))
        itemsize = 2 if self.precision in ("bf16", "fp16") else 4
        return cpu_max_batch_tokens(widest, itemsize)

    def encode_detailed(
        self, texts: Sequence[str], batch_size: int = 32, max_batch_tokens: int | None = None
    ) -> Encoded:
        if batch_size < 1 or (max_batch_tokens is not None and max_batch_tokens < 1):
            raise InvalidInputError("batch_size and max_batch_tokens must be >= 1")
        return self.encode_tokenized(self.tokenize(texts), batch_size, max_batch_tokens)

    def encode_tokenized(
        self, encodings: Sequence[Any], batch_size: int = 32, max_batch_tokens: int | None = None
    ) -> Encoded:
        """:meth:`encode_detailed` on the output of :meth:`tokenize` (which may run elsewhere,
        e.g. in the indexer's reader thread, overlapped with the model)."""
        n = len(encodings)
        out = np.empty((n, self.dim), dtype=np.float32)
        with torch.inference_mode():
            for idx in self.batches(encodings, batch_size, max_batch_tokens):
                feats = self.forward(self.collate([encodings[i] for i in idx]))
                out[idx] = feats["sentence_embedding"].float().cpu().numpy()
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=n)
        counts = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
        return Encoded(out, truncated, counts)

    def encode(
        self, texts: Sequence[str], batch_size: int = 32, max_batch_tokens: int | None = None
    ) -> np.ndarray:
        """Embed ``texts`` in input order: float32 array of shape (len(texts), dim)."""
        return self.encode_detailed(texts, batch_size, max_batch_tokens).embeddings
