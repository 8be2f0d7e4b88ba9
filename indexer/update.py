"""``semsearch index add / delete / stats / compact``: change a published index in place.

``add`` upserts a whole corpus file as ONE new generation: every chunk is written pending, and
the generation is published at the end, so a failure half-way publishes nothing.

On a sharded index (core.index.sharding) each document goes to its shard, and so does each
deleted id: every shard involved commits its part as one generation of its own, in shard order,
and the command succeeds only once all of them have. ``compact`` and ``stats`` take every shard.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.corpus import SeenIds, read_corpus
from core.embedding import load_for_index, sample_texts, set_precision
from core.errors import DataError
from core.index.compaction import CompactionPolicy
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.mutable import MutableIndex, UpdateResult
from core.index.sharding import ShardedManifest, group_by_shard, is_sharded
from core.index.writer_lock import writer_lock

log = logging.getLogger(__name__)


@dataclass
class AddReport:
    generation: int  # the newest shard generation this write made (the index's own, unsharded)
    added: int
    replaced: int
    skipped: list[DataError]


Route = Callable[[str], int]


@contextmanager
def writers(index: str | Path) -> Iterator[tuple[list[MutableIndex], Route]]:
    """The writers of every shard (one for an unsharded index) and the id -> shard rule. A
    sharded folder is also locked as a whole, so that no rebuild swaps it out meanwhile."""
    path = Path(index)
    if not is_sharded(path):
        with MutableIndex(path) as target:
            yield [target], lambda _doc_id: 0
        return
    top = ShardedManifest.read(path)
    with writer_lock(path), ExitStack() as stack:
        # In shard order, as every writer takes them: two writers never wait on each other.
        targets = [stack.enter_context(MutableIndex(p)) for p in top.shard_paths(path)]
        yield targets, top.route


def add_corpus(
    index: str | Path,
    corpus: str | Path,
    model: str | None = None,
    corpus_format: str = "auto",
    batch_size: int = 64,
    chunk_size: int = 4096,
    device: str = "auto",
    skip_bad_lines: bool = False,
) -> AddReport:
    index = Path(index)
    skipped: list[DataError] = []
    added = replaced = 0
    with writers(index) as (targets, route):
        first = targets[0]
        encoder = load_for_index(first.manifest, first.path, model, device)
        for other in targets[1:]:  # one build made them all; a shard copied in from elsewhere did not
            other.check_model(encoder.fingerprint, encoder.dim, encoder.max_seq_length)
        # The precision the index was built at, its drift from fp32 measured on the new texts.
        texts = sample_texts(r.doc.text for r in read_corpus(corpus, corpus_format, skip_bad_lines=True))
        quality = set_precision(encoder, "index", texts or None, against=first.manifest.precision)
        if quality:
            log.info(
                "%s: adding at %s, mean cosine to fp32 %s",
                index,
                encoder.precision,
                quality["mean_cosine_vs_fp32"],
            )
        chunk: list[Any] = []
        seen = SeenIds(str(corpus))

        def flush() -> None:
            nonlocal added, replaced
            docs = [r.doc for r in chunk]
            vectors = encoder.encode([d.text for d in docs], batch_size)
            for shard, rows in enumerate(group_by_shard([d.id for d in docs], route, len(targets))):
                if rows:
                    picked = np.asarray(rows)
                    result = targets[shard].upsert([docs[i] for i in rows], vectors[picked], commit=False)
                    added += result.added
                    replaced += result.replaced
            chunk.clear()

        for row in read_corpus(corpus, corpus_format, skip_bad_lines, skipped):
            seen.add(row)
            chunk.append(row)
            if len(chunk) >= chunk_size:
                flush()
        if chunk:
            flush()
        if not seen.lines:
            raise DataError(corpus, None, "no documents to add")
        # Durable from here, shard by shard: what follows cannot undo it (core.index.sharding).
        generation = max(target.commit() for target in targets)
        for target in targets:
            try:
                target.compact(full=False, policy=CompactionPolicy.from_env())  # when its deltas are due
            except Exception as exc:  # a full disk, say: the log keeps every write; compact later
                log.warning("%s: added, but the compaction that was due failed: %s", target.path, exc)
    return AddReport(generation, added, replaced, skipped)


def read_ids(args: list[str]) -> list[str]:
    """``--ids FILE`` (one id per line) or the ids themselves."""
    if len(args) == 1 and Path(args[0]).is_file():
        path = Path(args[0])
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return args


def delete_ids(index: str | Path, ids: list[str]) -> UpdateResult:
    unique = list(dict.fromkeys(ids))
    with writers(index) as (targets, route):
        results = [
            targets[shard].delete([unique[i] for i in rows])
            for shard, rows in enumerate(group_by_shard(unique, route, len(targets)))
            if rows
        ]
    missing = {m for r in results for m in r.missing}
    return UpdateResult(
        max(r.generation for r in results),
        0,
        0,
        sum(r.deleted for r in results),
        [i for i in unique if i in missing],
    )


def compact(index: str | Path) -> list[Manifest]:
    """Fold the write log into a new base now, HNSW tombstones dropped too; returns each shard's
    manifest (one for an unsharded index)."""
    with writers(index) as (targets, _route):
        return [target.compact(full=True) for target in targets]


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stats(index: str | Path) -> dict[str, Any]:
    """An unsharded index's figures; for a sharded one, the totals, the top-level manifest's
    fields and each shard's own figures under ``shards``."""
    path = Path(index)
    if is_sharded(path):
        return _sharded_stats(path)
    folder = IndexFolder.open(path)
    try:
        m = folder.manifest
        segments = folder.segments
        return {
            "path": str(path.resolve()),
            "documents": folder.count,
            "vectors": segments.count,
            # vectors held for deleted documents (skipped by every search until compaction)
            "tombstones": segments.count - folder.count,
            "base_generation": m.generation,
            "base_vectors": segments.base.count,
            "delta_segments": len(segments.deltas),
            "delta_vectors": segments.delta_count(),
            "index_type": m.index_type,
            "faiss_factory": m.faiss_factory,
            "search_params": m.search_params,
            "dim": m.dim,
            "metric": m.metric,
            "precision": m.precision,
            "model_fingerprint": m.model_fingerprint,
            "model_dir": m.model_dir,
            "generation": folder.generation,
            "created_at": m.created_at,
            "on_disk_lists": m.ivfdata_file if m.on_disk else None,  # counted in size_bytes
            "size_bytes": disk_usage(path),
        }
    finally:
        folder.close()


def _sharded_stats(path: Path) -> dict[str, Any]:
    top = ShardedManifest.read(path)
    shards = [stats(p) for p in top.shard_paths(path)]
    return {
        "path": str(path.resolve()),
        "shards": top.shards,
        "routing": top.routing,
        "documents": sum(s["documents"] for s in shards),
        "vectors": sum(s["vectors"] for s in shards),
        "tombstones": sum(s["tombstones"] for s in shards),
        "dim": top.dim,
        "precision": top.precision,
        "model_fingerprint": top.model_fingerprint,
        "model_dir": top.model_dir,
        "generation": top.generation,  # the build's; each shard's own is in its figures
        "created_at": top.created_at,
        "size_bytes": disk_usage(path),
        "shard_stats": {name: s for name, s in zip(top.shard_dirs, shards, strict=True)},
    }
