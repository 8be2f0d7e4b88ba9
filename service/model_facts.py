"""What another process needs to know of the models a service runs: plain data, no model and no
torch, so a Ray Serve shard searcher that receives it (to check its shard against the encoder)
never loads torch (service.ray_serve)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.encoder import Encoder


@dataclass
class EncoderFacts:
    """What the routes and logs read of an encoder that runs in another process."""

    source: str
    fingerprint: str | None
    dim: int
    max_seq_length: int
    device: str
    precision: str

    @classmethod
    def of(cls, encoder: Encoder) -> EncoderFacts:
        return cls(
            str(encoder.source),
            encoder.fingerprint,
            encoder.dim,
            encoder.max_seq_length,
            str(encoder.device),
            encoder.precision,
        )


@dataclass
class ScorerFacts:
    labels: list[str]
    positive: int
    weight: float


@dataclass
class ModelFacts:
    encoder: EncoderFacts
    precision_quality: dict[str, Any]
    drift: float | None  # 1 - mean cosine to fp32 (core.embedding.drift_vs_fp32)
    threads: int
    reranker: ScorerFacts | None
