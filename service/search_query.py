"""One search request's queries and options, as every index layout runs them: a folder or a
sharded folder in this process, or a shard searcher in another (service.ray_serve), which is
sent this object. No model here: a searcher process never loads torch for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.fusion_names import DEFAULT_FUSION
from core.index.folder import Hit, IndexFolder
from core.index.sharded_folder import ShardedFolder


@dataclass
class Query:
    texts: list[str]
    k: int
    params: dict[str, int] | None = None
    where: dict[str, Any] | None = None
    hybrid: bool = False
    alpha: float | None = None
    fusion: str = DEFAULT_FUSION
    feedback: int = 0  # hybrid only: pseudo-relevance feedback documents (core.index.feedback)

    def run(self, snapshot: IndexFolder | ShardedFolder, vectors: np.ndarray) -> list[list[Hit]]:
        """The whole search over one snapshot (the in-process service's)."""
        if not self.hybrid:
            return snapshot.search(vectors, self.k, self.params, self.where)
        return [
            snapshot.search_hybrid(
                v, q, self.k, self.params, self.where, self.alpha, fusion=self.fusion, feedback=self.feedback
            )
            for v, q in zip(vectors, self.texts, strict=True)
        ]
