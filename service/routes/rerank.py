"""``/rerank`` and ``/classify``: the cross-encoder (SEMSEARCH_RERANKER_DIR). Without one loaded
they answer 404 with a message that says how to configure one."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from core.errors import NotFoundError
from service.deps import EngineDep
from service.schemas import ClassifyRequest, ClassifyResult, RerankRequest, RerankResult
from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["reranker"], route_class=StrictJSONRoute)
_ERRORS = {
    404: {"description": "no reranker loaded"},
    413: {"description": "too many or too long texts"},
    422: {"description": "invalid request"},
    429: {"description": "overloaded; retry after Retry-After seconds"},
}


@router.post(
    "/rerank",
    response_model=list[RerankResult],
    summary="Score documents against a query with the cross-encoder; best first",
    responses=_ERRORS,  # type: ignore[arg-type]
)
async def rerank(body: RerankRequest, engine: EngineDep) -> list[RerankResult]:
    reranker = engine.require_reranker(NotFoundError)
    engine.check_texts([body.query, *body.documents], "texts")
    engine.check_pairs(len(body.documents), "documents")
    scores = await reranker.scores([(body.query, d) for d in body.documents])
    order = np.argsort(-scores, kind="stable")[: body.top_k or len(body.documents)]
    return [RerankResult(index=int(i), score=float(scores[i])) for i in order]


@router.post(
    "/classify",
    response_model=list[ClassifyResult],
    summary="Classify text pairs with the cross-encoder, with its own labels; input order",
    responses=_ERRORS,  # type: ignore[arg-type]
)
async def classify(body: ClassifyRequest, engine: EngineDep) -> list[ClassifyResult]:
    reranker = engine.require_reranker(NotFoundError)
    engine.check_texts([t for pair in body.pairs for t in pair], "texts")
    engine.check_pairs(len(body.pairs), "pairs")
    probs = await reranker.probabilities(body.pairs)
    labels = reranker.labels
    return [
        ClassifyResult(
            label=labels[int(row.argmax())],
            probabilities={n: float(p) for n, p in zip(labels, row, strict=True)},
        )
        for row in probs
    ]
