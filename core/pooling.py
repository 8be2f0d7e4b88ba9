"""Pooling and normalisation modules, following sentence-transformers' features-dict contract.

Each module takes the features dict (``token_embeddings``, ``attention_mask``, ...) and adds
to it; pooling writes ``sentence_embedding``. Config keys are sentence-transformers' own so a
``1_Pooling/config.json`` round-trips unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import ModelFormatError

# sentence-transformers concatenates the enabled modes in this order.
MODES = ("cls", "max", "mean", "mean_sqrt_len")
_CONFIG_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}
_UNSUPPORTED_KEYS = ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
_ST6_NAMES = {"mean_sqrt_len_tokens": "mean_sqrt_len"}

Features = dict[str, torch.Tensor]


def mean_pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over the sequence: padding positions contribute nothing."""
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    summed = (token_embeddings * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


class Pooling(nn.Module):
    def __init__(self, dim: int, modes: tuple[str, ...] = ("mean",)) -> None:
        super().__init__()
        if not modes:
            raise ModelFormatError("pooling config enables no pooling mode")
        unknown = [m for m in modes if m not in MODES]
        if unknown:
            raise ModelFormatError(f"unknown pooling mode(s) {unknown}; supported: {list(MODES)}")
        self.dim = dim
        self.modes = tuple(m for m in MODES if m in modes)

    @property
    def output_dim(self) -> int:
        return self.dim * len(self.modes)

    def forward(self, features: Features) -> Features:
        tokens = features["token_embeddings"]
        mask = features["attention_mask"]
        parts: list[torch.Tensor] = []
        for mode in self.modes:
            if mode == "cls":
                parts.append(tokens[:, 0])
            elif mode == "max":
                masked = tokens.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(tokens.dtype).min)
                parts.append(masked.max(dim=1).values)
            elif mode == "mean":
                parts.append(mean_pool(tokens, mask))
            else:  # mean_sqrt_len
                lengths = mask.sum(dim=1, keepdim=True).to(tokens.dtype).clamp(min=1.0)
                parts.append(mean_pool(tokens, mask) * lengths / lengths.sqrt())
        features["sentence_embedding"] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return features

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"word_embedding_dimension": self.dim}
        for mode, key in _CONFIG_KEYS.items():
            cfg[key] = mode in self.modes
        return cfg

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")

    @classmethod
    def from_config(cls, cfg: dict[str, Any], source: str) -> Pooling:
        """Read either layout: sentence-transformers < 6 (``word_embedding_dimension`` plus
        ``pooling_mode_*_tokens`` booleans) or >= 6 (``embedding_dimension``, ``pooling_mode``)."""
        dim = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
        if dim is None:
            raise ModelFormatError(f"{source}: missing embedding_dimension / word_embedding_dimension")
        if "pooling_mode" in cfg:
            raw = cfg["pooling_mode"]
            names = [raw] if isinstance(raw, str) else list(raw)
            modes = tuple(_ST6_NAMES.get(n, n) for n in names)
            bad = [n for n in modes if n not in MODES]
            if bad:
                raise ModelFormatError(
                    f"{source}: pooling mode(s) {bad} are not supported (supported: {list(MODES)})"
                )
        else:
            for key in _UNSUPPORTED_KEYS:
                if cfg.get(key):
                    raise ModelFormatError(f"{source}: pooling mode {key} is not supported")
            modes = tuple(mode for mode, key in _CONFIG_KEYS.items() if cfg.get(key))
        return cls(int(dim), modes)

    @classmethod
    def load(cls, folder: Path) -> Pooling:
        path = folder / "config.json"
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelFormatError(f"pooling config not found: {path}") from exc
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{path}: invalid JSON ({exc})") from exc
        return cls.from_config(cfg, str(path))


class Normalize(nn.Module):
    """L2-normalise ``sentence_embedding`` (sentence-transformers' ``Normalize`` module)."""

    def forward(self, features: Features) -> Features:
        features["sentence_embedding"] = nn.functional.normalize(features["sentence_embedding"], p=2, dim=1)
        return features
