"""Request and response bodies. Unknown fields are rejected (422), not ignored."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from core.fusion_names import (
    DEFAULT_ALPHA,
    DEFAULT_FEEDBACK_DOCS,
    DEFAULT_FUSION,
    DEFAULT_SEARCH_MODE,
    FUSIONS,
    MAX_FEEDBACK_DOCS,
)
from core.index.doc_rules import MAX_ID_CHARS
from service.settings import MAX_K, MAX_RERANK_K

INT64 = 2**63 - 1
MAX_FILTER_KEYS = 16
MAX_IN_VALUES = 256


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} must not be empty or only whitespace")
    return value


def _texts(values: list[str], what: str) -> list[str]:
    for i, text in enumerate(values):
        _not_blank(text, f"{what}[{i}]")
    return values


# ------------------------------------------------------------------ filters
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("filter values must be finite numbers")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
        raise ValueError("filter integers must fit in 64 bits")
    return value


class InFilter(Strict):
    in_: list[Scalar] = Field(..., alias="in", max_length=MAX_IN_VALUES, description="any of these values")

    @field_validator("in_")
    @classmethod
    def _values(cls, v: list[Any]) -> list[Any]:
        return [_scalar(x) for x in v]


FilterKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Filter = dict[FilterKey, Scalar | InFilter]


def filter_to_where(flt: Filter | None) -> dict[str, Any] | None:
    if not flt:
        return None
    return {k: ({"in": v.in_} if isinstance(v, InFilter) else v) for k, v in flt.items()}


class SearchOptions(Strict):
    k: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_K,
        description=f"Number of hits, 1..{MAX_K} and at most SEMSEARCH_MAX_K; default 10.",
    )
    filter: Filter | None = Field(
        None,
        description='Metadata filter: `{"key": value}` is equality, `{"key": {"in": [v1, v2]}}` membership; '
        "keys are ANDed. k hits come back whenever k documents match.",
    )
    nprobe: StrictInt | None = Field(
        None, ge=1, le=65536, description="IVF lists to visit (default: the index's)"
    )
    ef_search: StrictInt | None = Field(
        None, ge=1, le=65536, description="HNSW search breadth (default: the index's)"
    )
    include: list[Literal["text", "metadata"]] | None = Field(
        None,
        max_length=2,
        description='Hit fields to return beside id and score: any of "text" and "metadata" '
        "(default: both; [] for ids and scores only, the smallest answer).",
    )

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: Filter | None) -> Filter | None:
        if v is not None:
            if len(v) > MAX_FILTER_KEYS:
                raise ValueError(f"at most {MAX_FILTER_KEYS} filter keys")
            for value in v.values():
                if not isinstance(value, InFilter):
                    _scalar(value)
        return v

    def params(self) -> dict[str, int]:
        return {k: v for k, v in (("nprobe", self.nprobe), ("ef_search", self.ef_search)) if v}

    def included(self) -> frozenset[str]:
        return frozenset(("text", "metadata") if self.include is None else self.include)


class SearchRequest(SearchOptions):
    query: str = Field(..., description="Natural-language query; truncated at the model's max tokens.")
    rerank: StrictBool = Field(
        False, description="Re-score the top rerank_k candidates with the cross-encoder."
    )
    rerank_k: StrictInt = Field(
        50,
        ge=1,
        le=MAX_RERANK_K,
        description="Candidates the reranker re-scores; at most SEMSEARCH_MAX_RERANK_PAIRS (default 100).",
    )
    hybrid: StrictBool | None = Field(
        None,
        description="Fuse BM25 (over this index generation) with dense search, over the top 100 of "
        "each: by default alpha * dense + (1 - alpha) * BM25, each min-max normalised, after "
        "pseudo-relevance feedback. false: dense only. Unset: the server's SEMSEARCH_SEARCH_MODE "
        f"(default {DEFAULT_SEARCH_MODE}).",
    )
    feedback: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_FEEDBACK_DOCS,
        description="Hybrid only: pseudo-relevance feedback, the dense query moved toward the top N "
        "fused hits' vectors and searched again; 0: off. Default SEMSEARCH_SEARCH_FEEDBACK "
        f"({DEFAULT_FEEDBACK_DOCS}).",
    )
    alpha: float | None = Field(
        None,
        ge=0,
        le=1,
        strict=True,
        description=f"Hybrid only: weight of the dense score (0..1; default {DEFAULT_ALPHA}).",
    )
    fusion: StrictStr = Field(
        DEFAULT_FUSION,
        pattern="^(" + "|".join(FUSIONS) + ")$",
        description="Hybrid only: convex (the alpha-weighted normalised scores) or rrf "
        "(reciprocal rank fusion, 1 / (60 + rank) summed; takes no alpha).",
    )

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _not_blank(v, "query")


class HitOut(BaseModel):
    id: str
    score: float
    text: str | None = Field(None, description='Left out unless "text" is included (the default).')
    metadata: dict[str, Any] | None = Field(
        None, description='Left out unless "metadata" is included (the default).'
    )
    rerank_score: float | None = None


class SearchResponse(BaseModel):
    hits: list[HitOut]
    took_ms: float
    truncated: bool = Field(description="True when the query was cut at the model's max tokens.")


class BatchSearchRequest(SearchOptions):
    queries: list[str] = Field(..., min_length=1, description="Queries, embedded in one model call.")

    @field_validator("queries")
    @classmethod
    def _queries(cls, v: list[str]) -> list[str]:
        return _texts(v, "queries")


class BatchResult(BaseModel):
    hits: list[HitOut]
    truncated: bool


class BatchSearchResponse(BaseModel):
    results: list[BatchResult]
    took_ms: float


# ------------------------------------------------------------------ embeddings
class EmbedRequest(Strict):
    texts: list[str] = Field(..., min_length=1, description="Texts to embed.")

    @field_validator("texts")
    @classmethod
    def _texts(cls, v: list[str]) -> list[str]:
        return _texts(v, "texts")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dim: int
    truncated: list[bool]


class OpenAIEmbeddingRequest(Strict):
    input: str | list[str] = Field(
        ..., description="A text or a list of texts (token arrays are not accepted)."
    )
    model: str = Field(..., min_length=1, max_length=256, description="Any name; the served model answers.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, ge=1, description="Must equal the model's dimension if given.")
    user: str | None = Field(None, max_length=256)

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts:
            raise ValueError("input must not be empty")
        return texts

    @field_validator("input")
    @classmethod
    def _input(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("input must not be an empty list")
            return _texts(v, "input")
        return _not_blank(v, "input")


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class SimilarityRequest(Strict):
    pairs: list[tuple[str, str]] = Field(..., min_length=1, description="[[a, b], ...] text pairs.")

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, v: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for i, (a, b) in enumerate(v):
            _not_blank(a, f"pairs[{i}][0]")
            _not_blank(b, f"pairs[{i}][1]")
        return v


class SimilarityResponse(BaseModel):
    scores: list[float] = Field(description="Cosine similarity of each pair's bi-encoder embeddings.")


# ------------------------------------------------------------------ documents
DocId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")]


MAX_VECTOR_DIM = 8192  # a bound before the engine's exact check against the index's dimension


class DocumentIn(Strict):
    id: DocId
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    vector: list[float] | None = Field(
        None,
        max_length=MAX_VECTOR_DIM,
        description="The document's embedding when it is computed already (by `/embed`, or by the "
        "index's own model elsewhere): stored instead of encoding `text`, scaled to unit length when "
        "the index is normalised. Its length must be the index's dimension. `text` is still stored, "
        "filtered on and used by hybrid search.",
    )

    @field_validator("vector")
    @classmethod
    def _vector(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if not all(math.isfinite(x) for x in v):
            raise ValueError("vector must hold finite numbers only")
        if not any(v):
            raise ValueError("vector must not be all zeros: it has no direction to search by")
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _not_blank(v, "text")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v, allow_nan=False)
        except (ValueError, RecursionError) as exc:
            raise ValueError("metadata must be plain JSON with finite numbers") from exc
        return v


class UpsertRequest(Strict):
    documents: list[DocumentIn] = Field(..., min_length=1)


class WriteResponse(BaseModel):
    generation: int = Field(description="The index generation that holds this change (published).")
    upserted: int = 0
    deleted: int = 0


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any]


class ReloadResponse(BaseModel):
    reloaded: bool
    generation: int
    documents: int


class ReadyResponse(BaseModel):
    status: str
    documents: int
    generation: int
    model_fingerprint: str
    dim: int
    device: str
    precision: str
    precision_quality: dict[str, Any] = Field(
        default_factory=dict,
        description="How the precision was chosen and its measured drift (1 - cosine) from fp32 "
        "and from the index's precision, on the index's own documents; empty for plain fp32.",
    )
    threads: int
    micro_batching: bool
    read_only: bool
    auth: Literal["on", "off"] = Field(description="Whether API keys are required (off: anyone may call).")
    reranker: bool
    hybrid: bool
    search_mode: str = Field(description="What a search that does not send hybrid gets: hybrid or dense.")
    search_feedback: int = Field(
        description="Hybrid search's pseudo-relevance feedback documents by default."
    )


class RerankRequest(Strict):
    query: str = Field(..., description="The query every document is scored against.")
    documents: list[str] = Field(..., min_length=1, description="Texts to score (at most the texts limit).")
    top_k: StrictInt | None = Field(None, ge=1, description="Return only the best top_k (default: all).")

    @field_validator("query")
    @classmethod
    def _query(cls, v: str) -> str:
        return _not_blank(v, "query")

    @field_validator("documents")
    @classmethod
    def _documents(cls, v: list[str]) -> list[str]:
        return _texts(v, "documents")


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request.")
    score: float = Field(description="Relevance: the positive label's probability, or the regression score.")


class ClassifyRequest(SimilarityRequest):
    """Same shape as /similarity: ``{"pairs": [[a, b], ...]}``."""


class ClassifyResult(BaseModel):
    label: str = Field(description="The most probable label.")
    probabilities: dict[str, float] = Field(
        description="Per label: softmax (single-label), independent sigmoids (multi-label), "
        "or the score (regression)."
    )
