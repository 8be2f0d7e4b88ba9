from __future__ import annotations

from fastapi import APIRouter

from service.deps import EngineDep
from service.schemas import ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness: 200 while the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: 200 once the model and index are loaded, else 503",
    responses={503: {"description": "not ready"}},
)
async def ready(engine: EngineDep) -> ReadyResponse:
    manifest = engine.index.manifest
    return ReadyResponse(
        status="ready",
        documents=engine.index.count,
        model_fingerprint=manifest.model_fingerprint,
        dim=manifest.dim,
        device=str(engine.encoder.device),
        precision=engine.encoder.precision,
    )
