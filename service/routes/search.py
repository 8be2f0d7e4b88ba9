from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

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


def hit_out(hit: Hit, include: frozenset[str], rerank_score: float | None = None) -> HitOut:
    return HitOut(
        id=hit.id,
        score=hit.score,
        text=hit.text if "text" in include else None,
        metadata=hit.metadata if "metadata" in include else None,
        rerank_score=rerank_score,
    )


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
    if reranker is not None:  # every fetched candidate is scored: max(k, rerank_k) pairs
        engine.check_pairs(max(k, body.rerank_k), "candidates (max of k and rerank_k)")
    include = body.included()
    fetch = max(k, body.rerank_k) if reranker else k  # the reranker re-scores rerank_k candidates
    result = await engine.search(
        body.query, fetch, body.params(), where, body.hybrid, body.alpha, body.fusion, body.feedback
    )
    if reranker is None:
        engine.check_answer(result.hits, include)
        hits = [hit_out(h, include) for h in result.hits]
    else:
        reranked = await reranker.rerank_hits(body.query, result.hits, k)
        engine.check_answer((h for h, _ in reranked), include)
        hits = [hit_out(h, include, s) for h, s in reranked]
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
    include = body.included()
    results, took = await engine.search_many(
        body.queries, body.k, body.params(), filter_to_where(body.filter)
    )
    engine.check_answer((hit for hits, _ in results for hit in hits), include)
    return BatchSearchResponse(
        results=[BatchResult(hits=[hit_out(h, include) for h in hits], truncated=t) for hits, t in results],
        took_ms=round(took, 3),
    )
