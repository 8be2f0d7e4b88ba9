"""The service's cross-encoder: pair scoring through its own micro-batcher. No FastAPI here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.cross_encoder import CrossEncoder, rerank_order
from core.index.folder import Hit
from service.metrics import Metrics
from service.micro_batcher import MicroBatcher
from service.settings import Settings

Pair = tuple[str, str]


def _take(logits: np.ndarray, start: int, stop: int) -> np.ndarray:
    return logits[start:stop]


class Scorer:
    """What the routes call: the cross-encoder's probabilities per pair, from this process's
    model (:class:`Reranker`) or another's (the Ray Serve model deployment, service.ray_serve)."""

    labels: list[str]
    positive: int  # the column of the label "relevant" / "match"
    weight: float  # its share of the fused rerank score

    async def probabilities(self, pairs: Sequence[Pair]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    async def scores(self, pairs: Sequence[Pair]) -> np.ndarray:
        return (await self.probabilities(pairs))[:, self.positive]

    async def rerank_hits(self, query: str, hits: list[Hit], k: int) -> list[tuple[Hit, float]]:
        """The hits re-scored by the cross-encoder, top k by its score fused with the retrieval
        score (``weight``; 1: the cross-encoder alone). Both scores stay in the result."""
        if not hits:
            return []
        scores = await self.scores([(query, h.text) for h in hits])
        order, _ = rerank_order(np.array([h.score for h in hits]), scores, self.weight)
        return [(hits[i], float(scores[i])) for i in order[:k]]


class Reranker(Scorer):
    def __init__(self, model: CrossEncoder, settings: Settings, metrics: Metrics) -> None:
        self.model = model
        self.labels = model.labels
        self.positive = model.positive
        self.weight = model.rerank_weight if settings.rerank_weight is None else settings.rerank_weight
        max_len = model.max_seq_length
        self.batcher: MicroBatcher[Pair, np.ndarray] = MicroBatcher(
            "reranker",
            lambda pairs: model.logits(pairs, settings.encode_batch_size, settings.max_batch_tokens),
            _take,
            tokens=lambda pair: min(max_len, 3 + (len(pair[0]) + len(pair[1])) // 4),
            on_batch=lambda stats: metrics.observe_batch("reranker", stats),
            **settings.batcher_bounds(),
        )

    def close(self) -> None:
        self.batcher.close()

    async def logits(self, pairs: Sequence[Pair]) -> np.ndarray:
        return await self.batcher.submit(pairs)

    async def probabilities(self, pairs: Sequence[Pair]) -> np.ndarray:
        return self.model.probabilities(await self.logits(pairs))
