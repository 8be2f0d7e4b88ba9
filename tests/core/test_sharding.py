"""The shard routing rule and the top-level manifest of a sharded index folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import IndexFormatError, InvalidInputError
from core.index.manifest import Manifest
from core.index.sharding import ShardedManifest, check_shard_count, is_sharded, shard_of


def test_routing_is_a_fixed_function_of_the_id() -> None:
    # Pinned values: the rule is part of the format, so a change here would misroute every write
    # into an index built before it. (BLAKE2b-64 of the UTF-8 id, big-endian, mod N.)
    assert [shard_of(i, 4) for i in ("a", "b", "doc-1", "文档", "")] == [3, 1, 1, 0, 0]
    assert [shard_of(i, 1000) for i in ("a", "doc-1", "文档")] == [343, 249, 4]
    import hashlib

    for doc_id in ("a", "doc-1", "文档"):
        expected = int.from_bytes(hashlib.blake2b(doc_id.encode(), digest_size=8).digest(), "big") % 7
        assert shard_of(doc_id, 7) == expected
    assert shard_of("anything", 1) == 0


def test_routing_spreads_ids_evenly() -> None:
    counts = [0] * 4
    for i in range(8000):
        counts[shard_of(f"doc-{i}", 4)] += 1
    assert min(counts) > 1800 and max(counts) < 2200, counts


@given(st.text(max_size=40), st.integers(1, 64))
def test_every_id_routes_to_one_existing_shard(doc_id: str, shards: int) -> None:
    assert 0 <= shard_of(doc_id, shards) < shards


def test_shard_count_is_bounded() -> None:
    assert check_shard_count(3) == 3
    for bad in (0, -1, 257):
        with pytest.raises(InvalidInputError, match="--shards"):
            check_shard_count(bad)


def test_manifest_round_trip_and_the_ordinary_reader_refuses_it(tmp_path: Path) -> None:
    top = ShardedManifest(
        shards=3, model_fingerprint="f" * 64, model_dir="/m", dim=32, max_seq_length=64, precision="fp32"
    )
    top.write(tmp_path)
    again = ShardedManifest.read(tmp_path)
    assert again == top and again.shard_dirs == ["shard-000", "shard-001", "shard-002"]
    assert is_sharded(tmp_path) and not is_sharded(tmp_path / "missing")
    with pytest.raises(IndexFormatError, match="a sharded index of 3 shards"):
        Manifest.read(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"routing": "crc32-mod"}, "routing"),
        ({"format_version": 99}, "format_version"),
        ({"shard_dirs": ["shard-000"]}, "3 shards but 1 folders"),
        ({"shards": "three"}, "shards"),
    ],
)
def test_a_damaged_top_manifest_is_a_clear_error(tmp_path: Path, change: dict, message: str) -> None:
    ShardedManifest(
        shards=3, model_fingerprint="f", model_dir=None, dim=8, max_seq_length=8, precision="fp32"
    ).write(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw.update(change)
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IndexFormatError, match=message):
        ShardedManifest.read(tmp_path)
