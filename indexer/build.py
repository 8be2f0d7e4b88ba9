"""``semsearch index build``: stream a corpus through the encoder into a new published index."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from core.corpus import CorpusRow, read_corpus
from core.encoder import Encoder
from core.errors import DataError
from core.index.doc_store import Document
from core.index.folder import IndexWriter
from core.index.manifest import Manifest

log = logging.getLogger(__name__)
CONFIG_FILE = "build_config.json"


@dataclass
class BuildConfig:
    """Every knob of a build; CLI flags override these defaults, and the resolved config is
    written into the index folder as ``build_config.json``."""

    model: str
    corpus: str
    output: str
    corpus_format: str = "auto"
    batch_size: int = 64
    chunk_size: int = 4096  # documents embedded and written per step; bounds memory
    device: str = "auto"
    skip_bad_lines: bool = False
    progress: bool = True


@dataclass
class BuildReport:
    manifest: Manifest
    documents: int
    skipped: list[DataError]
    seconds: float

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds if self.seconds > 0 else 0.0


def _check_duplicates(chunk: list[CorpusRow], writer: IndexWriter, corpus: str) -> None:
    seen: dict[str, int] = {}
    for row in chunk:
        if row.doc.id in seen:
            raise DataError(
                corpus, row.line, f"duplicate id {row.doc.id!r} (first seen on line {seen[row.doc.id]})"
            )
        seen[row.doc.id] = row.line
    clash = writer.store.existing(list(seen))
    if clash:
        first = min(clash, key=lambda i: seen[i])
        raise DataError(corpus, seen[first], f"duplicate id {first!r} (already seen earlier in the corpus)")


def build_index(cfg: BuildConfig, encoder: Encoder | None = None) -> BuildReport:
    encoder = encoder or Encoder.load(cfg.model, cfg.device)
    started = time.perf_counter()
    skipped: list[DataError] = []
    manifest = Manifest(
        model_fingerprint=encoder.fingerprint or "",
        dim=encoder.dim,
        normalized=True,
        count=0,
        max_seq_length=encoder.max_seq_length,
        model_dir=str(Path(cfg.model).resolve()),
    )
    rows = read_corpus(cfg.corpus, cfg.corpus_format, cfg.skip_bad_lines, skipped)
    total = 0
    with (
        IndexWriter(cfg.output, manifest) as writer,
        tqdm(desc="embedding", unit="doc", disable=not cfg.progress, file=sys.stderr) as bar,
    ):
        chunk: list[CorpusRow] = []

        def flush() -> None:
            nonlocal total
            _check_duplicates(chunk, writer, cfg.corpus)
            docs: list[Document] = [r.doc for r in chunk]
            vectors = encoder.encode([d.text for d in docs], batch_size=cfg.batch_size)
            if not encoder.normalize:  # inner product == cosine only on unit vectors
                vectors /= (vectors**2).sum(axis=1, keepdims=True).clip(min=1e-24) ** 0.5
            writer.add(docs, vectors)
            total += len(docs)
            bar.update(len(docs))
            chunk.clear()

        for row in rows:
            chunk.append(row)
            if len(chunk) >= cfg.chunk_size:
                flush()
        if chunk:
            flush()
        if total == 0:
            raise DataError(cfg.corpus, None, "no documents to index")
        (writer.staging / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        published = writer.commit()
    seconds = time.perf_counter() - started
    return BuildReport(published, total, skipped, seconds)
