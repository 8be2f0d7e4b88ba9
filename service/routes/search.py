from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from core.errors import InvalidInputError
from core.index.folder import Hit
from service.deps import EngineDep
from service.schemas import (
    BatchResult,
    BatchSearchRequest,
    BatchSearchResponse,
    HitOut,
    SearchRequest,
    SearchResponse,
    filter_to_where,
)
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["search"], route_class=StrictJSONRoute)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "rerank asked of a service that has no reranker loaded"},
    413: {"description": "query too long or too many queries"},
    422: {"description": "invalid request"},
    429: {"description": "overloaded; retry after Retry-After seconds"},
    503: {"description": "not ready"},
}


def hits_out(hits: list[Hit]) -> list[HitOut]:
    return [HitOut(id=h.id, score=h.score, text=h.text, metadata=h.metadata) for h in hits]


@router.post(
    "/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    summary="Semantic search, optionally filtered by metadata",
    responses=_ERRORS,
)
async def search(body: SearchRequest, engine: EngineDep) -> SearchResponse:
    started = time.perf_counter()
    where = filter_to_where(body.filter)
    reranker = engine.require_reranker() if body.rerank else None
    k = engine.check_k(body.k)
    fetch = max(k, body.rerank_k) if reranker else k  # the reranker re-scores rerank_k candidates
    if body.alpha is not None and not body.hybrid:
        raise InvalidInputError("alpha weighs the dense score in hybrid search: send it with hybrid: true")
    result = await engine.search(body.query, fetch, body.params(), where, body.hybrid, body.alpha)
    if reranker is None:
        hits = hits_out(result.hits)
    else:
        reranked = await reranker.rerank_hits(body.query, result.hits, k)
        hits = [
            HitOut(id=h.id, score=h.score, text=h.text, metadata=h.metadata, rerank_score=s)
            for h, s in reranked
        ]
    took = (time.perf_counter() - started) * 1000
    return SearchResponse(hits=hits, took_ms=round(took, 3), truncated=result.truncated)


@router.post(
    "/search/batch",
    response_model=BatchSearchResponse,
    response_model_exclude_none=True,
    summary="Several queries in one request: one model call, one index search",
    responses=_ERRORS,
)
async def search_batch(body: BatchSearchRequest, engine: EngineDep) -> BatchSearchResponse:
    results, took = await engine.search_many(
        body.queries, body.k, body.params(), filter_to_where(body.filter)
    )
    return BatchSearchResponse(
        results=[BatchResult(hits=hits_out(h), truncated=t) for h, t in results], took_ms=round(took, 3)
    )
