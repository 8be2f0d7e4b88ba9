"""``index build --on-disk``: per-shard IVF lists merged into an mmapped ``index.ivfdata``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from core.encoder import Encoder
from core.errors import ConflictError, IndexFormatError, InvalidInputError
from core.index.folder import INDEX_FILE, IndexFolder
from core.index.manifest import Manifest
from core.index.ondisk import IVFDATA_FILE, on_disk_lists, read_on_disk
from core.index.vectors import VectorIndex
from indexer.build import BuildConfig, build_index
from indexer.ondisk_merge import PARTS, merge_on_disk
from indexer.update import add_corpus, compact, delete_ids, stats
from semsearch.cli import EXIT_ERROR, main
from tests.conftest import TINY_ADJECTIVES, TINY_PLACES, TINY_TOPICS, TINY_VERBS, write_jsonl

N_DOCS = 320  # IVF needs at least 4 vectors per list: 4 * round(4 * sqrt(n)) <= n from n = 256


def _docs() -> list[dict[str, Any]]:
    docs = []
    for i in range(N_DOCS):
        t, topic = i % 10, list(TINY_TOPICS)[i % 10]
        nouns = TINY_TOPICS[topic]
        adj, verb = TINY_ADJECTIVES[(i // 10) % 10], TINY_VERBS[(i // 100 + t) % 10]
        first, second = nouns[(i // 10) % 8], nouns[(i // 80 + 3) % 8]
        text = f"the {adj} {first} {verb} the {second} in the {TINY_PLACES[t]} ."
        docs.append({"id": f"d{i}", "text": text, "metadata": {"topic": topic}})
    return docs


def _cfg(model: Path, corpus: Path, out: Path, **kw: Any) -> BuildConfig:
    return BuildConfig(
        model=str(model), corpus=str(corpus), output=str(out), progress=False, chunk_size=64, **kw
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("ondisk-corpus") / "docs.jsonl", _docs())


@pytest.fixture(scope="module")
def builds(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_encoder: Encoder, corpus: Path
) -> tuple[Path, Path]:
    """(in-memory ivf build, on-disk ivf build) of the same corpus and seed. Never written to."""
    root = tmp_path_factory.mktemp("ondisk")
    memory, disk = root / "memory", root / "disk"
    build_index(_cfg(tiny_model_dir, corpus, memory, index_type="ivf"), tiny_encoder)
    build_index(_cfg(tiny_model_dir, corpus, disk, index_type="ivf", on_disk=True), tiny_encoder)
    return memory, disk


def _search(out: Path, queries: np.ndarray, k: int = 10, **params: Any) -> list[list[tuple[str, float]]]:
    folder = IndexFolder.open(out)
    try:
        return [[(h.id, h.score) for h in row] for row in folder.search(queries, k, params)]
    finally:
        folder.close()


def _same(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> None:
    assert [[i for i, _ in row] for row in a] == [[i for i, _ in row] for row in b]
    for row_a, row_b in zip(a, b, strict=True):
        np.testing.assert_allclose([s for _, s in row_a], [s for _, s in row_b], atol=1e-6)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "IVF16,PQ4x8"])
def test_merged_lists_equal_in_memory_adds(tmp_path: Path, factory: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1200, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    trained = VectorIndex.create(32, factory)
    if "PQ" in factory:
        faiss.downcast_index(trained.index).do_polysemous_training = False  # seconds; beside the point
    trained.train(x[:600])
    memory = VectorIndex(faiss.clone_index(trained.index), factory)
    memory.add(np.arange(len(x)), x)
    shards = [(s, x[s : s + 250]) for s in range(0, len(x), 250)]  # uneven: 4 x 250 + 200
    ivfdata = merge_on_disk(trained, shards, tmp_path)
    del trained
    assert ivfdata == tmp_path / IVFDATA_FILE and not (tmp_path / PARTS).exists()
    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    os.rename(tmp_path, moved)  # the name inside index.faiss is resolved in the folder it is read from
    disk = VectorIndex(read_on_disk(moved / INDEX_FILE, moved / IVFDATA_FILE), factory)
    assert disk.count == len(x)
    for nprobe in (4, 16):
        d_mem, i_mem = memory.search(x[::37], 20, {"nprobe": nprobe})
        d_disk, i_disk = disk.search(x[::37], 20, {"nprobe": nprobe})
        np.testing.assert_array_equal(i_disk, i_mem)
        np.testing.assert_array_equal(d_disk, d_mem)
    np.testing.assert_array_equal(
        disk.reconstruct(np.array([0, 999])), memory.reconstruct(np.array([0, 999]))
    )


def test_on_disk_build_matches_the_in_memory_build(builds, tiny_encoder: Encoder) -> None:
    memory, disk = builds
    m_mem, m_disk = Manifest.read(memory), Manifest.read(disk)
    assert (m_mem.on_disk, m_mem.ivfdata_file) == (False, None)
    assert (m_disk.on_disk, m_disk.ivfdata_file) == (True, IVFDATA_FILE)
    assert m_disk.faiss_factory == m_mem.faiss_factory and m_disk.count == m_mem.count == N_DOCS
    assert set(m_disk.files) == {INDEX_FILE, IVFDATA_FILE}
    assert m_disk.files[IVFDATA_FILE]["bytes"] == (disk / IVFDATA_FILE).stat().st_size > 0
    assert sorted(p.name for p in disk.iterdir()) == sorted(
        ["build_config.json", "docs.sqlite", INDEX_FILE, IVFDATA_FILE, "manifest.json"]
    )
    assert json.loads((disk / "build_config.json").read_text())["on_disk"] is True
    info = stats(disk)
    assert info["on_disk_lists"] == IVFDATA_FILE and info["vectors"] == N_DOCS
    assert info["size_bytes"] > m_disk.files[IVFDATA_FILE]["bytes"] + m_disk.files[INDEX_FILE]["bytes"]
    assert stats(memory)["on_disk_lists"] is None

    queries = tiny_encoder.encode([d["text"] for d in _docs()[::9]] + ["a red guitar in the hall"])
    nlist = int(m_disk.faiss_factory.split(",")[0][3:])
    for params in ({}, {"nprobe": 1}, {"nprobe": nlist}):
        _same(_search(disk, queries, **params), _search(memory, queries, **params))
    # filtered and exact-scored searches read single vectors back from the mapped lists
    folder = IndexFolder.open(disk)
    try:
        hits = folder.search(queries[:3], 5, where={"topic": "music"})
        assert all(len(row) == 5 and all(h.metadata["topic"] == "music" for h in row) for row in hits)
    finally:
        folder.close()


def test_a_moved_or_copied_folder_still_searches(builds, tmp_path: Path, tiny_encoder: Encoder) -> None:
    memory, disk = builds
    queries = tiny_encoder.encode(["the old star sees the comet", "a fast ball in the park"])
    expected = _search(memory, queries)
    copy = tmp_path / "a" / "copy"
    shutil.copytree(disk, copy)
    moved = tmp_path / "b" / "renamed"
    moved.parent.mkdir()
    os.rename(copy, moved)
    _same(_search(moved, queries), expected)
    clone = tmp_path / "clone"
    shutil.copytree(moved, clone)
    shutil.rmtree(moved)  # the clone maps its own ivfdata file, not the one it was copied from
    _same(_search(clone, queries), expected)


def test_a_missing_or_truncated_ivfdata_is_a_clean_error(builds, tmp_path: Path, capsys) -> None:
    _, disk = builds
    bad = tmp_path / "bad"
    shutil.copytree(disk, bad)
    size = (bad / IVFDATA_FILE).stat().st_size
    os.truncate(bad / IVFDATA_FILE, size - 128)
    with pytest.raises(IndexFormatError, match="truncated"):
        IndexFolder.open(bad)
    # without the manifest's record the lists' own size still catches it (no SIGBUS on search)
    manifest = Manifest.read(bad)
    del manifest.files[IVFDATA_FILE]
    manifest.write(bad)
    with pytest.raises(IndexFormatError, match="truncated"):
        IndexFolder.open(bad)
    (bad / IVFDATA_FILE).unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        IndexFolder.open(bad)
    assert main(["index", "stats", "--index", str(bad)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert IVFDATA_FILE in err and "missing" in err and "Traceback" not in err


def test_in_place_updates_are_refused_with_a_rebuild_hint(
    builds, tmp_path: Path, tiny_model_dir: Path, jsonl_writer
) -> None:
    _, disk = builds
    target = tmp_path / "idx"
    shutil.copytree(disk, target)
    before = Manifest.read(target)
    more = jsonl_writer(tmp_path / "more.jsonl", [{"id": "new", "text": "the red star", "metadata": {}}])
    for update in (
        lambda: add_corpus(target, more, str(tiny_model_dir), device="cpu"),
        lambda: delete_ids(target, ["d1"]),
        lambda: compact(target),
    ):
        with pytest.raises(ConflictError, match=r"on disk.*rebuild"):
            update()
    after = Manifest.read(target)
    assert (after.generation, after.created_at, after.count) == (before.generation, before.created_at, N_DOCS)
    folder = IndexFolder.open(target)
    try:  # FAISS would abort the process on a write to the read-only mapping: refused first
        assert on_disk_lists(folder.vectors.index) is not None
        with pytest.raises(ConflictError, match="on disk"):
            folder.vectors.add(np.array([9999]), np.zeros((1, 32), dtype=np.float32))
        with pytest.raises(ConflictError, match="on disk"):
            folder.vectors.delete(np.array([1]))
        with pytest.raises(ConflictError, match="on disk"):
            folder.vectors.clone()
        assert folder.search(np.ones((1, 32), dtype=np.float32), 3)[0]
    finally:
        folder.close()


def test_on_disk_needs_ivf_lists(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_corpus
) -> None:
    with pytest.raises(InvalidInputError, match="--on-disk"):
        build_index(_cfg(tiny_model_dir, tiny_corpus, tmp_path / "flat", index_type="flat", on_disk=True))
    assert not any(tmp_path.iterdir())  # refused before anything was embedded
    # auto picks flat for 50 documents: nothing to put on disk, so it is built in memory
    report = build_index(_cfg(tiny_model_dir, tiny_corpus, tmp_path / "auto", on_disk=True), tiny_encoder)
    assert report.manifest.index_type == "flat" and report.manifest.on_disk is False
    assert not (tmp_path / "auto" / IVFDATA_FILE).exists()


def test_cli_builds_on_disk_and_keeps_stdout_clean(
    tmp_path: Path, tiny_model_dir: Path, corpus: Path, capfd
) -> None:
    out = tmp_path / "cli"
    argv = ["index", "build", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output", str(out)]
    flags = ["--index-type", "ivf", "--on-disk", "--chunk-size", "100", "--precision", "fp32"]
    assert main([*argv, *flags, "--device", "cpu", "--no-progress"]) == 0
    printed = capfd.readouterr().out
    assert printed.startswith("indexed 320 documents") and "resizing" not in printed  # FAISS's printf
    assert main(["index", "stats", "--index", str(out), "--json"]) == 0
    info = json.loads(capfd.readouterr().out)  # nothing but the JSON on stdout
    assert info["index_type"] == "ivf" and info["on_disk_lists"] == IVFDATA_FILE
    assert info["documents"] == info["vectors"] == N_DOCS
    assert json.loads((out / "build_config.json").read_text())["on_disk"] is True


def test_the_service_searches_it_and_refuses_document_writes(
    builds, tmp_path: Path, tiny_model_dir: Path
) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    _, disk = builds
    target = tmp_path / "served"
    shutil.copytree(disk, target)
    settings = Settings(index_dir=target, model_dir=tiny_model_dir, device="cpu", reload_interval_s=0)
    with TestClient(create_app(settings)) as client:
        hits = client.post("/search", json={"query": "the red star", "k": 3}).json()["hits"]
        assert len(hits) == 3
        put = client.put("/documents", json={"documents": [{"id": "n", "text": "the sun", "metadata": {}}]})
        # 409: the client's input is fine, the index's state refuses it; no server path is shown
        assert put.status_code == 409 and "rebuild" in put.json()["error"]["message"]
        assert str(target) not in put.json()["error"]["message"]
        assert client.delete("/documents/d1").status_code == 409
        assert [
            h["id"] for h in client.post("/search", json={"query": "the red star", "k": 3}).json()["hits"]
        ] == [h["id"] for h in hits]
    assert Manifest.read(target).generation == Manifest.read(disk).generation
