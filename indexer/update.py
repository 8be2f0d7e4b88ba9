"""``semsearch index add / delete / stats / compact``: change a published index in place.

``add`` upserts a whole corpus file as ONE new generation: every chunk is written pending, and
the generation is published at the end, so a failure half-way publishes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.corpus import SeenIds, read_corpus
from core.embedding import load_for_index, sample_texts, set_precision
from core.errors import DataError
from core.index.compaction import CompactionPolicy
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.mutable import MutableIndex, UpdateResult

log = logging.getLogger(__name__)


@dataclass
class AddReport:
    generation: int
    added: int
    replaced: int
    skipped: list[DataError]


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
    with MutableIndex(index) as target:
        encoder = load_for_index(target.manifest, index, model, device)
        # The precision the index was built at, its drift from fp32 measured on the new texts.
        texts = sample_texts(r.doc.text for r in read_corpus(corpus, corpus_format, skip_bad_lines=True))
        quality = set_precision(encoder, "index", texts or None, against=target.manifest.precision)
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
            result = target.upsert(docs, vectors, commit=False)
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
        generation = target.commit()  # durable from here: what follows cannot undo it
        try:
            target.compact(full=False, policy=CompactionPolicy.from_env())  # when its deltas are due
        except Exception as exc:  # a full disk, say: the log keeps every write; compact later
            log.warning("%s: added, but the compaction that was due failed: %s", index, exc)
    return AddReport(generation, added, replaced, skipped)


def read_ids(args: list[str]) -> list[str]:
    """``--ids FILE`` (one id per line) or the ids themselves."""
    if len(args) == 1 and Path(args[0]).is_file():
        path = Path(args[0])
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    return args


def delete_ids(index: str | Path, ids: list[str]) -> UpdateResult:
    with MutableIndex(index) as target:
        return target.delete(ids)


def compact(index: str | Path) -> Manifest:
    """Fold the write log into a new base now, HNSW tombstones dropped too."""
    with MutableIndex(index) as target:
        return target.compact(full=True)


def disk_usage(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stats(index: str | Path) -> dict[str, Any]:
    path = Path(index)
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
