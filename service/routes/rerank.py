"""``/rerank`` and ``/classify``: reserved for the cross-encoder. Without one configured they answer
404 with a message that says how to configure one."""

from __future__ import annotations

from fastapi import APIRouter

from core.errors import NotFoundError
from service.deps import EngineDep
from service.schemas import ClassifyRequest, RerankRequest
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["reranker"], route_class=StrictJSONRoute)
_NO_RERANKER = "no cross-encoder is loaded: start the service with SEMSEARCH_RERANKER_DIR (or --reranker DIR)"


@router.post(
    "/rerank",
    summary="Re-score documents against a query (needs a cross-encoder)",
    responses={404: {"description": "no reranker"}},
)
async def rerank(body: RerankRequest, engine: EngineDep) -> None:
    raise NotFoundError(_NO_RERANKER)


@router.post(
    "/classify",
    summary="Classify text pairs (needs a cross-encoder)",
    responses={404: {"description": "no reranker"}},
)
async def classify(body: ClassifyRequest, engine: EngineDep) -> None:
    raise NotFoundError(_NO_RERANKER)
