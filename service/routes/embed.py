from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter

from core.errors import InvalidInputError
from service.deps import EngineDep
from service.schemas import (
    EmbedRequest,
    EmbedResponse,
    OpenAIEmbedding,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIUsage,
    SimilarityRequest,
    SimilarityResponse,
)
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["embeddings"], route_class=StrictJSONRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "too many or too long texts"},
    422: {"description": "invalid request"},
    429: {"description": "overloaded; retry after Retry-After seconds"},
}


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="Embed texts with the service's encoder",
    responses=_ERRORS,
)
async def embed(body: EmbedRequest, engine: EngineDep) -> EmbedResponse:
    encoded = await engine.encode(body.texts)
    return EmbedResponse(
        embeddings=encoded.embeddings.tolist(),
        dim=int(encoded.embeddings.shape[1]),
        truncated=encoded.truncated.tolist(),
    )


@router.post(
    "/v1/embeddings",
    response_model=OpenAIEmbeddingResponse,
    summary="OpenAI-compatible embeddings (works with the official openai client)",
    responses=_ERRORS,
)
async def openai_embeddings(body: OpenAIEmbeddingRequest, engine: EngineDep) -> OpenAIEmbeddingResponse:
    if body.dimensions is not None and body.dimensions != engine.encoder.dim:
        raise InvalidInputError(
            f"dimensions: this model gives {engine.encoder.dim}-d vectors, not {body.dimensions}"
        )
    encoded = await engine.encode(body.texts(), "input")
    vectors = np.ascontiguousarray(encoded.embeddings, dtype="<f4")
    data = [
        OpenAIEmbedding(
            index=i,
            embedding=base64.b64encode(row.tobytes()).decode()
            if body.encoding_format == "base64"
            else row.tolist(),
        )
        for i, row in enumerate(vectors)
    ]
    tokens = int(encoded.token_counts.sum())
    return OpenAIEmbeddingResponse(
        data=data, model=body.model, usage=OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens)
    )


@router.post(
    "/similarity",
    response_model=SimilarityResponse,
    summary="Cosine similarity of text pairs (bi-encoder)",
    responses=_ERRORS,
)
async def similarity(body: SimilarityRequest, engine: EngineDep) -> SimilarityResponse:
    return SimilarityResponse(scores=await engine.similarity(body.pairs))
