"""The service's background compaction (service.live_index): it is installed even while writes
keep arriving, only one is built at a time, and nothing written meanwhile is lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from core.index.compaction import CompactionPolicy
from core.index.doc_store import Document
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.writer import IndexWriter
from service.live_index import LiveIndex

DIM = 16


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_compaction_is_installed_under_a_steady_stream_of_writes(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "idx"
    manifest = Manifest(model_fingerprint="f" * 64, dim=DIM, normalized=True, count=0, max_seq_length=16)
    with IndexWriter(out, manifest) as writer:
        writer.add([Document(f"d{i}", "base") for i in range(200)], _unit(200, 0))
        writer.commit()
    policy = CompactionPolicy(delta_ratio=0.1, deleted_ratio=0.2, min_vectors=20)
    live = LiveIndex(IndexFolder.open(out), lambda m: None, policy=policy)
    builds: list[int] = []
    real = live._compact

    def counting(snapshot: IndexFolder, full: bool) -> None:
        builds.append(snapshot.generation)
        real(snapshot, full)

    monkeypatch.setattr(live, "_compact", counting)

    async def stream() -> None:
        async def writer(w: int) -> None:
            for i in range(40):  # bounded: 4 writers x 40 writes
                await live.upsert([Document(f"w{w}-{i}", "x")], _unit(1, 1000 * w + i))
                if i % 5 == 4:
                    await live.delete([f"w{w}-{i - 1}"])

        await asyncio.gather(*(writer(w) for w in range(4)))

    asyncio.run(stream())
    ticks = 0
    for _ in range(200):  # a compaction built near the end is installed by the next group
        if not live._compacting():
            break
        asyncio.run(live.upsert([Document(f"tick{ticks}", "x")], _unit(1, 9)))
        ticks += 1
    try:
        assert live.compactions >= 1
        # never two builds of the same base at once: each build started from a newer generation
        assert builds == sorted(set(builds))
        current = live.current
        expected = 200 + 4 * 40 - 4 * 8 + ticks  # base + writes - deletes
        assert current.count == expected
        fresh = IndexFolder.open(out)
        assert fresh.count == expected and fresh.get("w3-39") is not None and fresh.get("w3-38") is None
        assert Manifest.read(out).generation > 1  # a compacted base was published
        fresh.close()
    finally:
        live.close()
