from __future__ import annotations

from fastapi import APIRouter

from service.deps import WriterDep
from service.schemas import ReloadResponse
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["admin"], route_class=StrictJSONRoute)


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Swap to the newest published index generation (no failed requests meanwhile)",
    responses={403: {"description": "read-only key"}, 503: {"description": "the new index cannot be served"}},
)
async def reload(engine: WriterDep) -> ReloadResponse:
    reloaded = await engine.reload()
    current = engine.index.current
    return ReloadResponse(reloaded=reloaded, generation=current.generation, documents=current.count)
