"""``manifest.json``: what an index folder holds and which model made it. Written last."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.durable import replace_file
from core.errors import IndexFormatError, IndexMismatchError
from core.index.doc_store import DOCS_FILE, DocStore

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A top-level manifest over shard folders (core.index.sharding) says so in its "kind".
SHARDED_KIND = "sharded"


def read_raw_manifest(folder: Path) -> dict[str, Any]:
    """A folder's manifest.json as a JSON object (an index's, or a sharded index's top level)."""
    path = folder / MANIFEST
    if not path.exists():
        raise IndexFormatError(f"{folder}: no {MANIFEST}; not a published index folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise IndexFormatError(f"{path}: expected a JSON object")
    return raw


def utc_now() -> str:
    # Microseconds: two publications of one generation (a forced compaction) must differ.
    return datetime.now(UTC).isoformat(timespec="microseconds")


def same_publication(a: Manifest, b: Manifest) -> bool:
    """The same published manifest: generation numbers alone can repeat (a folder replaced by an
    unrelated build, a compaction), the publication time and base file do not."""
    return (a.generation, a.created_at, a.index_file) == (b.generation, b.created_at, b.index_file)


@dataclass
class Manifest:
    model_fingerprint: str
    dim: int
    normalized: bool
    count: int
    max_seq_length: int
    metric: str = "inner_product"
    faiss_factory: str = "IDMap2,Flat"
    index_type: str = "flat"
    precision: str = "fp32"
    # The precision's measured drift from fp32 (core.embedding.set_precision); empty for fp32
    # builds and for indexes written before it was recorded.
    precision_quality: dict[str, Any] = field(default_factory=dict)
    generation: int = 1
    created_at: str = field(default_factory=utc_now)
    model_dir: str | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"bytes", "sha256"}
    search_params: dict[str, Any] = field(default_factory=dict)  # nprobe / ef_search defaults
    index_file: str = "index.faiss"  # updates write index.g<generation>.faiss beside it
    tombstones: int = 0  # deleted vectors still inside the FAISS index (HNSW cannot remove)
    train_size: int = 0  # vectors sampled to train IVF / PQ
    # IVF lists kept on disk (build --on-disk): they live in ``ivfdata_file`` beside the FAISS
    # file, mmapped at search time; such an index cannot be updated in place (core.index.ondisk).
    on_disk: bool = False
    ivfdata_file: str | None = None
    format_version: int = FORMAT_VERSION

    def write(self, folder: Path) -> None:
        """Write via a temporary file, fsync, rename (core.durable.replace_file): a reader
        never sees half a manifest, and the rename survives a power loss."""
        tmp = folder / f".{MANIFEST}.tmp"
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(self), fh, indent=2, sort_keys=True)
            fh.write("\n")
        replace_file(tmp, folder / MANIFEST)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        raw = read_raw_manifest(folder)
        if raw.get("kind") == SHARDED_KIND:
            raise IndexFormatError(
                f"{folder}: a sharded index of {raw.get('shards')} shards, not one index folder "
                "(core.index.sharded_folder opens it for search; each shard-NNN folder in it is one)"
            )
        if raw.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path}: format_version {raw.get('format_version')!r} is not supported "
                f"(this build reads {FORMAT_VERSION})"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(
            n for n in ("model_fingerprint", "dim", "normalized", "count", "max_seq_length") if n not in raw
        )
        if missing:
            raise IndexFormatError(f"{path}: missing field(s) {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})

    def check_model(
        self, model_fingerprint: str | None, dim: int, folder: Path, max_seq_length: int | None = None
    ) -> None:
        """Refuse to pair this index with a different model: its vectors would be meaningless.

        ``max_seq_length`` is not part of the fingerprint (that covers the weights, the pooling
        and the normalisation), yet a model folder saved again with another one embeds every
        text longer than the shorter of the two differently: queries and new documents would no
        longer match the stored vectors. So it is compared too, when the caller gives it."""
        if dim != self.dim:
            raise IndexMismatchError(
                f"{folder}: index dim is {self.dim} but the model produces {dim}-d vectors; "
                "rebuild the index with this model or serve it with the model that built it"
            )
        if model_fingerprint is not None and model_fingerprint != self.model_fingerprint:
            raise IndexMismatchError(
                f"{folder}: index was built by model {self.model_fingerprint[:12]} "
                f"({self.model_dir}) but the loaded model is {model_fingerprint[:12]}; "
                "rebuild the index or pass the matching --model"
            )
        if max_seq_length is not None and max_seq_length != self.max_seq_length:
            raise IndexMismatchError(
                f"{folder}: index was built with max_seq_length {self.max_seq_length} but the loaded "
                f"model truncates at {max_seq_length} tokens, so longer texts would embed differently; "
                "set max_seq_length back in the model folder's sentence_bert_config.json or rebuild the index"
            )


def next_generation(folder: Path, replacing: bool = False) -> int:
    """The generation the next publish into ``folder`` gets: the newest one (the manifest's, or
    a later online write's in the write log) plus one, or 1 for a folder with no index yet. The
    one rule every writer (build, compaction, online writes, ``index add``) uses, so that
    generations only grow whatever wrote last.

    An unreadable manifest is an error for a writer that updates the folder in place (it must
    never step back to 1). A writer ``replacing`` the whole folder (a build) starts again at 1
    over it: that is how a broken index is repaired, and readers tell publications apart by
    creation time as well."""
    if not (folder / MANIFEST).exists():
        return 1
    try:
        manifest = Manifest.read(folder)
        newest = manifest.generation
        if (folder / DOCS_FILE).is_file():
            store = DocStore(folder / DOCS_FILE, readonly=True)
            try:
                newest = store.latest(manifest.generation, manifest.count)[0]
            finally:
                store.close()
        return newest + 1
    except IndexFormatError:
        if replacing:
            return 1
        raise
