from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from core.errors import NotReadyError
from service.deps import EngineDep
from service.metrics import CONTENT_TYPE
from service.schemas import ReadyResponse
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["health"], route_class=StrictJSONRoute)


@router.get("/health", summary="Liveness: 200 while the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: 200 once the model and index are loaded; 503 before, and while a reload swaps",
    responses={503: {"description": "not ready"}},
)
async def ready(engine: EngineDep, request: Request) -> ReadyResponse:
    if not engine.ready:
        raise NotReadyError("swapping to a new index generation")
    current = engine.index.current
    manifest = current.manifest
    return ReadyResponse(
        status="ready",
        documents=current.count,
        generation=current.generation,
        model_fingerprint=manifest.model_fingerprint,
        dim=manifest.dim,
        device=str(engine.encoder.device),
        precision=engine.encoder.precision,
        precision_quality=engine.precision_quality,
        threads=engine.threads,
        micro_batching=engine.settings.micro_batching,
        read_only=engine.settings.read_only,
        auth="on" if getattr(request.app.state, "auth", False) else "off",
        reranker=engine.reranker is not None,
        hybrid=True,
        search_mode=engine.settings.search_mode,
        search_feedback=engine.settings.search_feedback,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE)
