from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.deps import EngineDep
from service.schemas import HitOut, SearchRequest, SearchResponse

router = APIRouter(tags=["search"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "query too long"},
    422: {"description": "invalid request"},
    503: {"description": "not ready"},
}


@router.post("/search", response_model=SearchResponse, summary="Semantic search", responses=_ERRORS)
async def search(body: SearchRequest, engine: EngineDep) -> SearchResponse:
    params = {"nprobe": body.nprobe, "ef_search": body.ef_search}
    result = await engine.run(engine.search, body.query, body.k, {k: v for k, v in params.items() if v})
    return SearchResponse(
        hits=[HitOut(id=h.id, score=h.score, text=h.text, metadata=h.metadata) for h in result.hits],
        took_ms=round(result.took_ms, 3),
        truncated=result.truncated,
    )
