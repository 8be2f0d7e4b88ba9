from __future__ import annotations

from fastapi import APIRouter

from service.deps import EngineDep
from service.schemas import EmbedRequest, EmbedResponse

router = APIRouter(tags=["embeddings"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="Embed texts with the service's encoder",
    responses={413: {"description": "too many or too long texts"}, 422: {"description": "invalid request"}},
)
async def embed(body: EmbedRequest, engine: EngineDep) -> EmbedResponse:
    encoded = await engine.run(engine.embed, body.texts)
    return EmbedResponse(
        embeddings=encoded.embeddings.tolist(),
        dim=int(encoded.embeddings.shape[1]),
        truncated=encoded.truncated.tolist(),
    )
