"""A sharded index folder: N ordinary index folders under one top-level ``manifest.json``.

Layout::

    out/
      manifest.json      {"kind": "sharded", "shards": N, "routing": ROUTING, model, generation...}
      shard-000/         an ordinary index folder (manifest.json, index.faiss, docs.sqlite)
      shard-001/
      ...

Every shard is a complete index of its own: the same format, crash safety, write log and
``index stats``. A document lives in exactly one shard, :func:`shard_of` its id: a stable hash
(BLAKE2b of the UTF-8 id, 64 bits, mod N), the same in every process, on every machine and in
every Python (``hash()`` is salted per process, so it cannot be the rule).

Writes that span shards (a corpus upserted by ``index add``, a list of ids deleted) are made
durable shard by shard, in shard order, and acknowledged only once every shard involved has
committed. Each shard's part is atomic (one generation of that shard), the whole is not: a reader
in between sees the shards that have committed and not yet the others, and a writer killed in
between leaves those shards' parts published and the rest not. An upsert or a delete is
idempotent, so running it again completes it. The top-level manifest is written last, and only
by a build: in-place writes change shard folders only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.durable import replace_file
from core.errors import IndexFormatError, InvalidInputError
from core.index.manifest import FORMAT_VERSION, MANIFEST, SHARDED_KIND, read_raw_manifest, utc_now

SHARDED = SHARDED_KIND
ROUTING = "blake2b64-mod"  # int(BLAKE2b-64(id as UTF-8), big-endian) % shards
MAX_SHARDS = 256


def shard_of(doc_id: str, shards: int) -> int:
    """The shard that holds ``doc_id`` in an index of ``shards`` shards (routing rule ROUTING)."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def group_by_shard(ids: Sequence[str], route: Callable[[str], int], shards: int) -> list[list[int]]:
    """The positions of ``ids`` that each shard holds (``route``: id -> shard), in order: how every
    writer splits a batch that spans shards."""
    groups: list[list[int]] = [[] for _ in range(shards)]
    for i, doc_id in enumerate(ids):
        groups[route(doc_id)].append(i)
    return groups


def shard_dir_name(i: int) -> str:
    return f"shard-{i:03d}"


def check_shard_count(shards: int) -> int:
    if not 1 <= shards <= MAX_SHARDS:
        raise InvalidInputError(f"--shards must be between 1 and {MAX_SHARDS}, got {shards}")
    return shards


@dataclass
class ShardedManifest:
    shards: int
    model_fingerprint: str
    model_dir: str | None
    dim: int
    max_seq_length: int
    precision: str
    precision_quality: dict[str, Any] = field(default_factory=dict)
    routing: str = ROUTING
    shard_dirs: list[str] = field(default_factory=list)
    generation: int = 1  # the build's: each rebuild of the folder is the next one
    created_at: str = field(default_factory=utc_now)
    kind: str = SHARDED
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.shard_dirs:
            self.shard_dirs = [shard_dir_name(i) for i in range(self.shards)]

    def shard_paths(self, folder: Path) -> list[Path]:
        return [folder / name for name in self.shard_dirs]

    def route(self, doc_id: str) -> int:
        return shard_of(doc_id, self.shards)

    def write(self, folder: Path) -> None:
        tmp = folder / f".{MANIFEST}.tmp"
        tmp.write_text(
            json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        replace_file(tmp, folder / MANIFEST)

    @classmethod
    def read(cls, folder: Path) -> ShardedManifest:
        raw = read_raw_manifest(folder)
        if raw.get("kind") != SHARDED:
            raise IndexFormatError(f"{folder}: not a sharded index")
        path = folder / MANIFEST
        if raw.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(f"{path}: format_version {raw.get('format_version')!r} is not supported")
        if raw.get("routing") != ROUTING:
            raise IndexFormatError(f"{path}: routing {raw.get('routing')!r} is not one this build knows")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            manifest = cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:
            raise IndexFormatError(f"{path}: {exc}") from exc
        if manifest.shards != len(manifest.shard_dirs) or not 1 <= manifest.shards <= MAX_SHARDS:
            raise IndexFormatError(f"{path}: {manifest.shards} shards but {len(manifest.shard_dirs)} folders")
        return manifest


def is_sharded(folder: str | Path) -> bool:
    """Whether ``folder`` holds a sharded index (False for an unsharded one, or none at all)."""
    try:
        return read_raw_manifest(Path(folder)).get("kind") == SHARDED
    except IndexFormatError:
        return False


def shard_paths(folder: str | Path) -> list[Path]:
    """The shard folders of a sharded index."""
    path = Path(folder)
    return ShardedManifest.read(path).shard_paths(path)


def read_layout(folder: str | Path) -> ShardedManifest | None:
    """A sharded folder's top-level manifest; None for an ordinary index folder (one shard)."""
    return ShardedManifest.read(Path(folder)) if is_sharded(folder) else None


def serving_paths(folder: str | Path) -> list[Path]:
    """The folders a service opens: every shard's, or the folder itself when it is not sharded."""
    return shard_paths(folder) if is_sharded(folder) else [Path(folder)]
