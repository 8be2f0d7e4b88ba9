"""``semsearch index build``: stream a corpus through the encoder into a new published index.

Crash-safe and resumable. The build works in ``.<output>.building/`` beside the output:
- the corpus is read as a stream and embedded ``chunk_size`` documents at a time;
- each chunk's vectors go to ``shards/shard-NNNNN.npy`` (temp file, fsync, rename), then its
  documents into ``docs.sqlite`` in one transaction, then ``build_state.json`` records the
  chunk; so after a kill -9 at any point a rerun skips the recorded chunks without re-embedding;
- once the corpus is done the FAISS index is planned (``--index-type``), trained on a seeded
  random sample when it needs training, filled shard by shard, and the folder is published by
  an atomic swap. The output path always holds the previous complete index or the new one.
Memory stays flat in the corpus size, apart from the FAISS index itself; with ``on_disk``
(ivf / ivfpq) not even that: each shard fills its own copy of the trained index and the lists
are merged into an mmapped ``index.ivfdata`` file (indexer.ondisk_merge). Such an index cannot be
updated in place (``index add/delete/compact`` refuse it): rebuild it instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from core.corpus import CorpusRow, SeenIds, read_corpus
from core.durable import fsync_path, replace_file
from core.embedding import document_vectors, sample_texts, set_precision
from core.encoder import Encoder
from core.errors import DataError, InvalidInputError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.folder import INDEX_FILE, file_digest
from core.index.manifest import MANIFEST, Manifest
from core.index.ondisk import IVFDATA_FILE
from core.index.sharding import check_shard_count, shard_of
from core.index.vectors import VectorIndex, plan_index
from core.index.writer import publish_folder
from core.index.writer_lock import work_dir, writer_lock
from core.precision import DEFAULT_MAX_DRIFT, candidates
from indexer.ondisk_merge import ON_DISK_TYPES, merge_on_disk

log = logging.getLogger(__name__)
CONFIG_FILE = "build_config.json"
STATE_FILE = "build_state.json"
SHARDS = "shards"


# Each engine's own chunk: locally, a step small enough to checkpoint often; on Ray, large enough
# that each dataset's actor start-up is amortised.
CHUNK_SIZES = {"local": 4096, "ray": 50_000}


@dataclass
class BuildConfig:
    """Every knob of a build; CLI flags override these defaults, and the resolved config is
    written into the index folder as ``build_config.json``."""

    model: str
    corpus: str
    output: str
    corpus_format: str = "auto"
    index_type: str = "auto"
    memory_budget_mb: int = 0  # 0: no budget; else auto picks IVF-PQ when float32 vectors exceed it
    batch_size: int = 64
    max_batch_tokens: int | None = None  # also cap each forward pass at this many padded tokens
    # Documents embedded and checkpointed per step; bounds memory. 0: the engine's own default
    # (CHUNK_SIZES), set when the config is made, so build_config.json records the real size.
    chunk_size: int = 0
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | fp16 | int8 | auto (fastest within max_precision_drift)
    max_precision_drift: float = DEFAULT_MAX_DRIFT  # 1 - mean cosine to fp32 that auto accepts
    skip_bad_lines: bool = False
    resume: bool = True  # continue a matching interrupted build (False: start over)
    engine: str = "local"  # local | ray
    ray_address: str | None = None  # None: start a local Ray
    ray_actors: int = 2
    ray_cpus_per_actor: int = 1
    seed: int = 1234
    progress: bool = True
    # ivf / ivfpq: fill per-chunk IVF indexes and merge their lists on disk (index.ivfdata,
    # mmapped at search time) instead of holding every vector in memory; see indexer.ondisk_merge.
    on_disk: bool = False
    # Index shards (core.index.sharding; indexer.sharded builds them): 1 is the classic folder.
    shards: int = 1
    # Set by indexer.sharded for each shard's own build: only the corpus rows routed to this
    # shard of ``shards`` are embedded (-1: every row).
    only_shard: int = -1

    def __post_init__(self) -> None:
        if self.engine not in CHUNK_SIZES:
            raise InvalidInputError(f"unknown engine {self.engine!r}; use {' or '.join(CHUNK_SIZES)}")
        if self.chunk_size < 0:
            raise InvalidInputError("--chunk-size must be at least 1")
        self.chunk_size = self.chunk_size or CHUNK_SIZES[self.engine]
        check_shard_count(self.shards)
        if not -1 <= self.only_shard < self.shards:
            raise InvalidInputError(f"shard {self.only_shard} of {self.shards} does not exist")


@dataclass
class BuildReport:
    manifest: Manifest
    documents: int
    skipped: list[DataError]
    seconds: float
    resumed_from: int = 0

    @property
    def docs_per_s(self) -> float:
        done = self.documents - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


def _build_key(cfg: BuildConfig, encoder: Encoder, precision: str | None = None) -> str:
    """What must be unchanged for an interrupted build's shards to be reused (``precision``:
    the encoder's, unless given)."""
    st = os.stat(cfg.corpus)
    key: dict[str, Any] = {
        "model": encoder.fingerprint,
        "corpus": str(Path(cfg.corpus).resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "format": cfg.corpus_format,
        "chunk": cfg.chunk_size,
        "batch": cfg.batch_size,
        "max_batch_tokens": cfg.max_batch_tokens,
        "max_seq_length": encoder.max_seq_length,
        "skip_bad": cfg.skip_bad_lines,
        "precision": precision or encoder.precision,
    }
    if cfg.only_shard >= 0:  # (absent otherwise, so an unsharded build's key is as it was)
        key["shard"] = [cfg.only_shard, cfg.shards]
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    replace_file(tmp, path)


def _check_duplicates(chunk: list[CorpusRow], store: DocStore, corpus: str) -> None:
    ids = SeenIds(corpus)
    for row in chunk:
        ids.add(row)
    seen = ids.lines
    clash = store.existing(list(seen))  # the chunks before this one (a resumed build included)
    if clash:
        first = min(clash, key=lambda i: seen[i])
        raise DataError(corpus, seen[first], f"duplicate id {first!r} (already seen earlier in the corpus)")


class _Work:
    """The work folder of one build: shards, the document store and the progress record."""

    def __init__(self, cfg: BuildConfig, key: str, precision: str) -> None:
        self.path = work_dir(Path(cfg.output), "building")
        self.key = key
        state_path = self.path / STATE_FILE
        state: dict[str, Any] | None = None
        if state_path.is_file():
            state = json.loads(state_path.read_text())
            if not cfg.resume or state.get("key") != key:
                reason = "--fresh given" if not cfg.resume else "the corpus, model or settings changed"
                log.warning("discarding the interrupted build in %s (%s)", self.path, reason)
                state = None
        if state is None:
            shutil.rmtree(self.path, ignore_errors=True)
            (self.path / SHARDS).mkdir(parents=True)
            state = {"key": key, "rows_done": 0, "shards": [], "precision": precision}
            _write_json(state_path, state)
        self.state = state
        self.store = DocStore(self.path / DOCS_FILE)
        # Rows committed after the last recorded shard belong to a chunk that never finished.
        self.store.rollback_rows_from(self.state["rows_done"])

    def add_chunk(self, docs: list[Document], vectors: np.ndarray) -> None:
        n = len(self.state["shards"])
        name = f"shard-{n:05d}.npy"
        tmp = self.path / SHARDS / f".{name}.tmp"
        with tmp.open("wb") as fh:
            np.save(fh, vectors)
        replace_file(tmp, self.path / SHARDS / name)
        start = self.state["rows_done"]
        self.store.apply(1, zip(range(start, start + len(docs)), docs, strict=True))
        self.state["shards"].append({"file": name, "rows": len(docs)})
        self.state["rows_done"] = start + len(docs)
        _write_json(self.path / STATE_FILE, self.state)

    def iter_shards(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first int id, vectors) per shard, one shard in memory at a time: mapping them all at
        once would put every shard's pages into the process's resident memory."""
        start = 0
        for shard in self.state["shards"]:
            yield start, np.load(self.path / SHARDS / shard["file"])
            start += shard["rows"]

    def sample(self, size: int, seed: int) -> np.ndarray:
        total = self.state["rows_done"]
        picks = np.sort(np.random.default_rng(seed).choice(total, size=min(size, total), replace=False))
        out: np.ndarray | None = None  # filled in place: gathering parts to vstack held it twice
        filled = 0
        for start, arr in self.iter_shards():
            local = picks[(picks >= start) & (picks < start + len(arr))] - start
            if len(local):
                if out is None:
                    out = np.empty((len(picks), arr.shape[1]), dtype=np.float32)
                out[filled : filled + len(local)] = arr[local]
                filled += len(local)
        assert out is not None and filled == len(picks)
        return out


def build_index(
    cfg: BuildConfig, encoder: Encoder | None = None, quality: dict[str, Any] | None = None
) -> BuildReport:
    """Build one index folder (``cfg.shards`` 1, or one shard's folder: indexer.sharded builds
    a sharded one). ``quality``: the drift record of a precision the caller measured."""
    if cfg.shards > 1 and cfg.only_shard < 0:
        raise InvalidInputError("a sharded build is indexer.sharded.build_sharded's")
    output = Path(cfg.output).expanduser().resolve()
    if cfg.on_disk and cfg.index_type not in ("auto", *ON_DISK_TYPES):
        raise InvalidInputError(
            "--on-disk keeps IVF lists on disk: use it with --index-type ivf, ivfpq or auto, "
            f"not {cfg.index_type}"
        )
    if not Path(cfg.corpus).is_file():
        raise DataError(cfg.corpus, None, "corpus file not found")
    with writer_lock(output):
        # A caller's own encoder is used at the precision it has unless the config names one.
        given = encoder is not None and cfg.precision == "auto"
        encoder = encoder or Encoder.load(cfg.model, cfg.device)
        if cfg.device == "auto" and not torch.cuda.is_available():
            log.info("--device auto: torch sees no CUDA GPU, so the corpus is embedded on CPU")
        precision = cfg.precision
        if not given and precision == "auto" and cfg.resume:
            # auto times the candidates, and on another try the timing may choose differently:
            # that would change the build key and discard every embedded shard. Continue at
            # the precision the interrupted build chose instead.
            precision = _interrupted_precision(cfg, encoder, output) or precision
        quality = dict(quality or {})
        if not given and precision != encoder.precision:
            # The drift is measured on the corpus's own first texts: what the index will hold.
            rows = read_corpus(cfg.corpus, cfg.corpus_format, skip_bad_lines=True)
            texts = sample_texts(r.doc.text for r in rows) or None
            quality = set_precision(encoder, precision, texts, cfg.max_precision_drift)
        return _build(cfg, encoder, output, quality)


_INDEX_SETTINGS = ("index_type", "memory_budget_mb", "seed", "on_disk")


def _interrupted_precision(cfg: BuildConfig, encoder: Encoder, output: Path) -> str | None:
    """The precision an interrupted build of this same corpus, model and settings chose (its
    progress record, or the config of a finished but unpublished one); None when there is none."""
    path = work_dir(output, "building")
    for name, key_field, field in (
        (STATE_FILE, "key", "precision"),
        (CONFIG_FILE, "build_key", "encoder_precision"),
    ):
        try:
            record = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        precision = record.get(field) if isinstance(record, dict) else None
        # Only one this device runs (a build begun at fp16 on a GPU may resume on a CPU).
        usable = precision in candidates(encoder.device)
        if usable and record.get(key_field) == _build_key(cfg, encoder, str(precision)):
            log.info("continuing the interrupted build at precision %s, as it chose", precision)
            return str(precision)
    return None


def built_already(cfg: BuildConfig, encoder: Encoder) -> Manifest | None:
    """The manifest of ``cfg.output`` when a build with this config (same embeddings, same index
    settings) published it, else None: how a resumed sharded build skips its finished shards."""
    output = Path(cfg.output).expanduser().resolve()
    if not _completed(output, _build_key(cfg, encoder), cfg):
        return None
    return Manifest.read(output)


def _completed(path: Path, key: str, cfg: BuildConfig) -> bool:
    """A work folder whose index is complete (killed after the manifest, before the swap), made
    from the same embeddings and with the same index settings."""
    try:
        done = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    same = all(done.get(k) == getattr(cfg, k) for k in _INDEX_SETTINGS)
    return (path / MANIFEST).is_file() and done.get("build_key") == key and same


Embed = Callable[[list[str]], np.ndarray]
T = TypeVar("T")


def _embedder(cfg: BuildConfig, encoder: Encoder) -> tuple[Embed, Callable[[], None]]:
    """(embed function, cleanup) for the chosen engine."""
    if cfg.engine == "local":
        return (lambda texts: encoder.encode(texts, cfg.batch_size, cfg.max_batch_tokens)), (lambda: None)
    if cfg.engine != "ray":
        raise InvalidInputError(f"unknown engine {cfg.engine!r}; use local or ray")
    if cfg.max_batch_tokens is not None:
        raise InvalidInputError("--max-batch-tokens works with --engine local only")
    from indexer.ray_engine import RayEmbedder

    ray = RayEmbedder(
        str(Path(cfg.model).resolve()),
        encoder.dim,
        cfg.device,
        encoder.precision,
        cfg.batch_size,
        cfg.ray_address,
        cfg.ray_actors,
        cfg.ray_cpus_per_actor,
    )
    return ray, ray.close


def _build(cfg: BuildConfig, encoder: Encoder, output: Path, quality: dict[str, Any]) -> BuildReport:
    started = time.perf_counter()
    key = _build_key(cfg, encoder)
    pending = work_dir(output, "building")
    if cfg.resume and _completed(pending, key, cfg):
        # The output may have moved on meanwhile: publish_folder numbers it from what is there now.
        manifest = publish_folder(pending, output, Manifest.read(pending))
        return BuildReport(manifest, manifest.count, [], time.perf_counter() - started, manifest.count)
    work = _Work(cfg, key, encoder.precision)
    resumed_from = work.state["rows_done"]
    if resumed_from:
        log.info("resuming the build in %s: %d documents already embedded", work.path, resumed_from)
    skipped: list[DataError] = []
    rows = read_corpus(cfg.corpus, cfg.corpus_format, cfg.skip_bad_lines, skipped)
    if cfg.only_shard >= 0:
        rows = (r for r in rows if shard_of(r.doc.id, cfg.shards) == cfg.only_shard)
    embed, cleanup = _embedder(cfg, encoder)
    chunks = _chunks(rows, resumed_from, cfg.chunk_size)
    items: Iterator[tuple[list[CorpusRow], Any]]
    if cfg.engine == "local":
        # Reading, validating and tokenising the next chunk overlap with the model on this one.
        items = prefetch((c, encoder.tokenize([r.doc.text for r in c])) for c in chunks)
    else:
        items = ((c, None) for c in chunks)
    bar = tqdm(desc="embedding", unit="doc", initial=resumed_from, disable=not cfg.progress, file=sys.stderr)
    try:
        for chunk, tokens in items:
            chunk_embed = embed if tokens is None else _pretokenized(encoder, tokens, cfg)
            _embed_chunk(chunk, work, chunk_embed, cfg)
            bar.update(len(chunk))
    except (DataError, InvalidInputError):
        work.store.close()
        shutil.rmtree(work.path, ignore_errors=True)  # the input must change: nothing to resume
        raise
    finally:
        bar.close()
        cleanup()
    total = work.state["rows_done"]
    if total == 0 and cfg.only_shard < 0:  # (a shard may be empty: indexer.sharded checks the whole)
        work.store.close()
        shutil.rmtree(work.path, ignore_errors=True)
        raise DataError(
            cfg.corpus, None, "no documents to index" + (" after skipping bad lines" if skipped else "")
        )
    manifest = publish_folder(work.path, output, _finish(cfg, encoder, output, work, quality))
    return BuildReport(manifest, total, skipped, time.perf_counter() - started, resumed_from)


def _chunks(rows: Iterator[CorpusRow], resumed_from: int, size: int) -> Iterator[list[CorpusRow]]:
    chunk: list[CorpusRow] = []
    for position, row in enumerate(rows, 1):
        if position <= resumed_from:
            continue  # embedded before the interruption: re-read, not re-embedded
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _pretokenized(encoder: Encoder, tokens: Any, cfg: BuildConfig) -> Embed:
    return lambda _texts: encoder.encode_tokenized(tokens, cfg.batch_size, cfg.max_batch_tokens).embeddings


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer; an
    exception in the producer is raised here, in order, after the items before it. A consumer
    that stops early releases the producer at its next hand-over."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))

    worker = threading.Thread(target=produce, name="indexer-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            ok, value = box.get()
            if not ok:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()


def _embed_chunk(chunk: list[CorpusRow], work: _Work, embed: Embed, cfg: BuildConfig) -> None:
    _check_duplicates(chunk, work.store, cfg.corpus)
    docs = [r.doc for r in chunk]
    work.add_chunk(docs, document_vectors(embed([d.text for d in docs])))


def _finish(
    cfg: BuildConfig, encoder: Encoder, output: Path, work: _Work, quality: dict[str, Any]
) -> Manifest:
    total = work.state["rows_done"]
    budget = cfg.memory_budget_mb * 2**20 if cfg.memory_budget_mb else None
    plan = plan_index(cfg.index_type, total, encoder.dim, budget)
    on_disk = cfg.on_disk and plan.index_type in ON_DISK_TYPES
    if cfg.on_disk and not on_disk:
        log.warning(
            "--on-disk: %s (auto's pick for %d vectors) has no IVF lists; built in memory",
            plan.index_type,
            total,
        )
    vectors = VectorIndex.create(encoder.dim, plan.factory)
    if plan.train_size:
        log.info("training %s on a random sample of %d of %d vectors", plan.factory, plan.train_size, total)
        vectors.train(work.sample(plan.train_size, cfg.seed), seed=cfg.seed)
    index_path = work.path / INDEX_FILE
    files: dict[str, dict[str, Any]] = {}
    if on_disk:  # writes index.faiss too
        ivfdata = merge_on_disk(vectors, work.iter_shards(), work.path)
        del vectors  # unmaps the ivfdata file
        fsync_path(ivfdata)
        files[IVFDATA_FILE] = file_digest(ivfdata)
    else:
        for start, arr in work.iter_shards():
            vectors.add(np.arange(start, start + len(arr), dtype=np.int64), np.asarray(arr, dtype=np.float32))
        vectors.save(index_path)
    fsync_path(index_path)
    manifest = Manifest(
        model_fingerprint=encoder.fingerprint or "",
        dim=encoder.dim,
        normalized=True,
        count=total,
        max_seq_length=encoder.max_seq_length,
        model_dir=str(Path(cfg.model).resolve()),
        precision=encoder.precision,
        precision_quality=quality,
        faiss_factory=plan.factory,
        index_type=plan.index_type,
        search_params=plan.search_params or {},
        train_size=plan.train_size,
        files={INDEX_FILE: file_digest(index_path), **files},
        on_disk=on_disk,
        ivfdata_file=IVFDATA_FILE if on_disk else None,
    )
    work.store.seal()
    work.store.close()
    # The shards and the progress record are not part of the index: drop them before the
    # manifest marks the folder complete (a crash in between restarts the build, safely).
    (work.path / STATE_FILE).unlink(missing_ok=True)  # first: a state naming missing shards would wedge
    shutil.rmtree(work.path / SHARDS, ignore_errors=True)
    done = {**dataclasses.asdict(cfg), "build_key": work.key, "encoder_precision": encoder.precision}
    _write_json(work.path / CONFIG_FILE, done)
    manifest.write(work.path)
    return manifest
