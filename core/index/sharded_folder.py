"""A sharded index opened for search: one :class:`IndexFolder` snapshot per shard, searched
together and merged as if they were one index.

- Dense search: every shard's top k, merged by score. With exact (flat) shards that is exactly
  the top k of one flat index of the same documents; with a metadata filter too, since each
  shard applies it to its own documents.
- Hybrid search: the shards' BM25 statistics for the query's terms are summed first (document
  count, total length, document frequencies), and every shard scores BM25 with those, the whole
  index's (core.index.bm25; Elasticsearch calls it dfs_query_then_fetch). Every shard's dense
  and BM25 candidates are then merged into one dense and one BM25 list (``depth`` each, as one
  index has) and fused once over the union, so the min-max normalisation and RRF's ranks are the
  whole index's too. BM25's equal scores are ordered by a hash of the document id in both
  layouts (core.index.lexical.tie_keys). With flat shards that is one flat index's hybrid search
  exactly; only exactly equal dense scores (duplicate vectors) may come in another order.
- A document is read from the one shard its id routes to.

Each shard's snapshot is one generation of that shard; a snapshot of the whole is the shards'
snapshots taken together, with no atomicity across shards (what a reader may see during a
write that spans shards: core.index.sharding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import IndexFormatError
from core.fusion_names import DEFAULT_FUSION
from core.index.bm25 import TermStats
from core.index.doc_store import DocStore, Document
from core.index.feedback import two_rounds
from core.index.folder import HYBRID_DEPTH, Hit, IndexFolder
from core.index.lexical import check_fusion
from core.index.manifest import Manifest
from core.index.shard_merge import merge_dense, merge_hybrid
from core.index.sharding import ShardedManifest, group_by_shard


class ShardedFolder:
    def __init__(self, path: Path, top: ShardedManifest, shards: Sequence[IndexFolder]) -> None:
        if len(shards) != top.shards:
            raise IndexFormatError(f"{path}: {top.shards} shards in the manifest, {len(shards)} opened")
        self.path = path
        self.top = top
        self.shards = list(shards)

    @classmethod
    def open(cls, path: str | Path) -> ShardedFolder:
        path = Path(path).expanduser()
        top = ShardedManifest.read(path)
        shards: list[IndexFolder] = []
        try:
            for shard_path in top.shard_paths(path):
                shards.append(IndexFolder.open(shard_path))
            check_same_model([(shard.path, shard.manifest) for shard in shards])
        except BaseException:
            for shard in shards:
                shard.close()
            raise
        return cls(path, top, shards)

    def with_shard(self, i: int, snapshot: IndexFolder) -> ShardedFolder:
        """The same shards, shard ``i`` at a newer snapshot (the others' objects are shared)."""
        shards = list(self.shards)
        shards[i] = snapshot
        return ShardedFolder(self.path, self.top, shards)

    # ------------------------------------------------------------ what callers read
    @property
    def manifest(self) -> Manifest:
        """Shard 0's: every shard was made by one model at one precision (checked at open)."""
        return self.shards[0].manifest

    @property
    def count(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def generation(self) -> int:
        """The sum of the shards' generations: it grows with every write to any shard."""
        return sum(s.generation for s in self.shards)

    @property
    def store(self) -> DocStore:
        """The store of the largest shard (a sample of the documents, for measuring precision)."""
        return max(self.shards, key=lambda s: s.count).store

    def get(self, doc_id: str) -> Document | None:
        return self.shards[self.top.route(doc_id)].get(doc_id)

    def vectors_of(self, doc_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of those of ``doc_ids`` that are live, each from its own shard."""
        ids = list(doc_ids)
        groups = group_by_shard(ids, self.top.route, len(self.shards))
        parts = [self.shards[i].vectors_of([ids[r] for r in rows]) for i, rows in enumerate(groups) if rows]
        return np.concatenate(parts) if parts else np.empty((0, self.manifest.dim), np.float32)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

    # ------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        k: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        return merge_dense([shard.search(queries, k, params, where) for shard in self.shards], k)

    def search_hybrid(
        self,
        query: np.ndarray,
        text: str,
        k: int,
        params: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
        alpha: float | None = None,
        depth: int = HYBRID_DEPTH,
        fusion: str = DEFAULT_FUSION,
        feedback: int = 0,
    ) -> list[Hit]:
        """As :meth:`IndexFolder.search_hybrid` over the whole index (see the module doc)."""
        if feedback:
            return two_rounds(self, query, text, k, params, where, alpha, fusion, feedback)
        check_fusion(fusion, alpha)
        n = max(k, depth)
        # BM25 scored with the whole index's statistics: the shards' summed (DFS, then query).
        lexes = [shard.lexical() for shard in self.shards]
        stats = sum((lex.stats(text) for lex in lexes), TermStats())
        parts = [
            shard.hybrid_part(query, text, n, params, where, stats, fusion, lexical=lex)
            for shard, lex in zip(self.shards, lexes, strict=True)
        ]
        fused = merge_hybrid(parts, n, fusion, alpha)
        return self._hits(fused.iids[:k], fused.scores[:k])

    def _hits(self, gids: np.ndarray, scores: np.ndarray) -> list[Hit]:
        size = len(self.shards)
        docs: dict[int, Document] = {}
        for i, shard in enumerate(self.shards):
            mine = [int(g) for g in gids if g % size == i]
            if mine:
                found = shard.store.get_many(sorted(g // size for g in mine))
                docs.update({g: found[g // size] for g in mine if g // size in found})
        return [
            Hit(docs[int(g)].id, float(s), docs[int(g)].text, docs[int(g)].metadata)
            for g, s in zip(gids, scores, strict=True)
            if int(g) in docs
        ]


def check_same_model(shards: Sequence[tuple[Path, Manifest]]) -> None:
    """Every shard (its folder and manifest) from one model at one precision: their vectors are
    compared with each other. Manifests only, so a process that opens no shard can check too."""
    first_path, first = shards[0]
    for path, m in shards[1:]:
        if (m.model_fingerprint, m.dim, m.precision) != (first.model_fingerprint, first.dim, first.precision):
            raise IndexFormatError(
                f"{path}: made by model {m.model_fingerprint[:12]} at {m.precision}, but "
                f"{first_path} by {first.model_fingerprint[:12]} at {first.precision}: "
                "the shards of one index must come from one build"
            )


def open_for_search(path: str | Path) -> IndexFolder | ShardedFolder:
    """An index folder opened for search, sharded or not."""
    from core.index.sharding import is_sharded

    return ShardedFolder.open(path) if is_sharded(path) else IndexFolder.open(path)
