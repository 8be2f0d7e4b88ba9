"""Request and response bodies. Unknown fields are rejected (422), not ignored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.settings import MAX_K


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty or only whitespace")
    return value


class SearchRequest(Strict):
    query: str = Field(..., description="Natural-language query; truncated at the model's max tokens.")
    k: int | None = Field(
        None,
        ge=1,
        le=MAX_K,
        description=f"Number of hits, 1..{MAX_K} and at most SEMSEARCH_MAX_K; default 10.",
    )

    nprobe: int | None = Field(None, ge=1, le=65536, description="IVF lists to visit (default: the index's)")
    ef_search: int | None = Field(
        None, ge=1, le=65536, description="HNSW search breadth (default: the index's)"
    )

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _not_blank(v, "query")


class HitOut(BaseModel):
    id: str
    score: float
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    hits: list[HitOut]
    took_ms: float
    truncated: bool = Field(description="True when the query was cut at the model's max tokens.")


class EmbedRequest(Strict):
    texts: list[str] = Field(..., min_length=1, description="Texts to embed.")

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        for i, text in enumerate(v):
            _not_blank(text, f"texts[{i}]")
        return v


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dim: int
    truncated: list[bool]


class ReadyResponse(BaseModel):
    status: str
    documents: int
    model_fingerprint: str
    dim: int
    device: str
    precision: str
