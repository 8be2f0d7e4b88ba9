"""``semsearch index build --shards N`` and the update commands on a sharded index folder.

The layout, the routing rule and what a reader sees during a write that spans shards are
core.index.sharding's. A sharded build runs one ordinary build per shard (indexer.build), each
embedding only the corpus rows routed to it, so every document is embedded once and every shard
is built, checkpointed and resumed exactly as an unsharded index is. The corpus is read once per
shard: parsing is cheap next to embedding. All of it happens in a work folder beside the output,
and the top-level manifest is written last, then the whole folder is swapped in at once: the
output holds the previous index or the new one, never a mix of shards from two builds.

The encoder's precision is chosen once, on the whole corpus's first texts, before any shard is
built: every shard then holds vectors of the same precision. ``--memory-budget`` and ``auto``'s
choice of index type apply to each shard, which is what one machine holds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from core.corpus import read_corpus
from core.durable import publish
from core.embedding import sample_texts, set_precision
from core.encoder import Encoder
from core.errors import DataError, IndexFormatError, InvalidInputError
from core.index.manifest import MANIFEST, next_generation, read_raw_manifest
from core.index.sharding import ShardedManifest, is_sharded, shard_dir_name
from core.index.writer_lock import work_dir, writer_lock
from indexer.build import BuildConfig, BuildReport, build_index, built_already

log = logging.getLogger(__name__)
STATE_FILE = "sharded_build.json"


@dataclasses.dataclass
class ShardedBuildReport:
    manifest: ShardedManifest
    shards: list[BuildReport]
    seconds: float

    @property
    def documents(self) -> int:
        return sum(r.documents for r in self.shards)

    @property
    def resumed_from(self) -> int:
        return sum(r.resumed_from for r in self.shards)

    @property
    def skipped(self) -> list[DataError]:
        # Every shard's build reads the whole corpus, so each sees the same bad lines: report once.
        return self.shards[0].skipped if self.shards else []

    @property
    def docs_per_s(self) -> float:
        done = self.documents - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


def _top_generation(output: Path) -> int:
    """The next top-level generation: a rebuild over a sharded index is its next one, over an
    unsharded index the one after that index's newest (generations only grow at one path)."""
    if not (output / MANIFEST).exists():
        return 1
    if is_sharded(output):
        try:
            return int(read_raw_manifest(output).get("generation", 0)) + 1
        except (IndexFormatError, TypeError, ValueError):
            return 1
    return next_generation(output, replacing=True)


def build_sharded(cfg: BuildConfig, encoder: Encoder | None = None) -> ShardedBuildReport:
    if cfg.shards < 2 or cfg.only_shard >= 0:
        raise InvalidInputError("build_sharded builds an index of two or more shards")
    if cfg.on_disk:
        raise InvalidInputError("--on-disk is not available with --shards yet: each shard is held in memory")
    if not Path(cfg.corpus).is_file():
        raise DataError(cfg.corpus, None, "corpus file not found")
    started = time.perf_counter()
    output = Path(cfg.output).expanduser().resolve()
    with writer_lock(output):
        encoder = encoder or Encoder.load(cfg.model, cfg.device)
        work = work_dir(output, "building-sharded")
        if not cfg.resume:  # --fresh: not even the finished shards of an interrupted build stay
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        quality = _choose_precision(cfg, encoder, work)
        reports: list[BuildReport] = []
        for i in range(cfg.shards):
            shard_cfg = dataclasses.replace(
                cfg, output=str(work / shard_dir_name(i)), only_shard=i, precision=encoder.precision
            )
            done = built_already(shard_cfg, encoder)
            if done is not None:
                log.info("shard %d of %d was built before the interruption: kept", i, cfg.shards)
                reports.append(BuildReport(done, done.count, [], 0.0, done.count))
                continue
            log.info("building shard %d of %d", i, cfg.shards)
            reports.append(build_index(shard_cfg, encoder, quality))
        if not sum(r.documents for r in reports):
            raise DataError(cfg.corpus, None, "no documents to index")
        first = reports[0].manifest
        top = ShardedManifest(
            shards=cfg.shards,
            model_fingerprint=first.model_fingerprint,
            model_dir=first.model_dir,
            dim=first.dim,
            max_seq_length=first.max_seq_length,
            precision=first.precision,
            precision_quality=quality,
            generation=_top_generation(output),
        )
        (work / STATE_FILE).unlink(missing_ok=True)
        top.write(work)  # last: a folder without it is not an index
        publish(work, output)
    return ShardedBuildReport(top, reports, time.perf_counter() - started)


def _choose_precision(cfg: BuildConfig, encoder: Encoder, work: Path) -> dict[str, Any]:
    """Set the encoder's precision once for every shard; an interrupted build's choice is kept
    (auto times the candidates, and another choice would discard every shard embedded so far)."""
    state_path = work / STATE_FILE
    precision = cfg.precision
    if precision == "auto" and cfg.resume and state_path.is_file():
        try:
            recorded = json.loads(state_path.read_text())
            precision, chosen = recorded["precision"], dict(recorded.get("quality", {}))
            set_precision(encoder, precision)
            log.info("continuing the interrupted sharded build at precision %s, as it chose", precision)
            return chosen
        except (OSError, ValueError, KeyError, TypeError, InvalidInputError):
            precision = cfg.precision
    quality: dict[str, Any] = {}
    if precision != encoder.precision:  # measured on the corpus's first texts, as a build does
        rows = read_corpus(cfg.corpus, cfg.corpus_format, skip_bad_lines=True)
        texts = sample_texts(r.doc.text for r in rows) or None
        quality = set_precision(encoder, precision, texts, cfg.max_precision_drift)
    tmp = work / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps({"precision": encoder.precision, "quality": quality}) + "\n")
    tmp.replace(state_path)
    return quality
