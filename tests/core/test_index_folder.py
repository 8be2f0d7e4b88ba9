"""The index folder: FAISS wrapper, document store, manifest, writer and atomic publish."""

from __future__ import annotations

import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core.errors import IndexFormatError, IndexMismatchError, InvalidInputError
from core.index.doc_store import DOCS_FILE, DocStore, Document
from core.index.folder import INDEX_FILE, IndexFolder
from core.index.manifest import FORMAT_VERSION, MANIFEST, Manifest
from core.index.vectors import VectorIndex
from core.index.writer import IndexWriter

DIM = 8


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_docs(n: int, prefix: str = "doc") -> list[Document]:
    return [Document(f"{prefix}-{i}", f"text number {i}", {"i": i}) for i in range(n)]


def new_manifest(fp: str = "f" * 64) -> Manifest:
    return Manifest(model_fingerprint=fp, dim=DIM, normalized=True, count=0, max_seq_length=16)


def publish_index(output: Path, n: int, prefix: str = "doc", seed: int = 0) -> np.ndarray:
    vectors = unit_vectors(n, seed)
    with IndexWriter(output, new_manifest()) as writer:
        writer.add(make_docs(n, prefix), vectors)
        writer.commit()
    return vectors


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name)


# ------------------------------------------------------------------ VectorIndex


def test_vector_index_add_search_delete() -> None:
    vectors = unit_vectors(20)
    index = VectorIndex.create(DIM)
    index.add(np.arange(100, 120), vectors)
    assert index.count == 20
    assert index.dim == DIM

    scores, ids = index.search(vectors[[3, 7]], 5)
    assert ids.shape == (2, 5)
    assert ids[:, 0].tolist() == [103, 107]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must be sorted descending"

    assert index.delete(np.array([103, 999])) == 1
    assert index.count == 19
    _, ids = index.search(vectors[[3]], 19)
    assert 103 not in ids[0].tolist()


def test_vector_index_k_is_clamped_to_count() -> None:
    index = VectorIndex.create(DIM)
    index.add(np.arange(3), unit_vectors(3))
    _, ids = index.search(unit_vectors(1, seed=5), 50)
    assert sorted(ids[0].tolist()) == [0, 1, 2]


def test_vector_index_rejects_bad_shapes() -> None:
    index = VectorIndex.create(DIM)
    with pytest.raises(InvalidInputError):
        index.add(np.arange(2), np.zeros((2, DIM + 1), dtype=np.float32))
    with pytest.raises(InvalidInputError):
        index.add(np.arange(3), unit_vectors(2))
    with pytest.raises(InvalidInputError):
        index.search(np.zeros(DIM, dtype=np.float32), 1)


def test_vector_index_save_load(tmp_path: Path) -> None:
    vectors = unit_vectors(10)
    index = VectorIndex.create(DIM)
    index.add(np.arange(10) * 2, vectors)
    index.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.count == 10
    s1, i1 = index.search(vectors, 4)
    s2, i2 = loaded.search(vectors, 4)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)
    assert i2[:, 0].tolist() == (np.arange(10) * 2).tolist()


def test_vector_index_load_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="missing"):
        VectorIndex.load(tmp_path / "absent.faiss")
    (tmp_path / "junk.faiss").write_bytes(b"definitely not faiss")
    with pytest.raises(IndexFormatError, match="not a readable FAISS index"):
        VectorIndex.load(tmp_path / "junk.faiss")


# ------------------------------------------------------------------ DocStore


def test_doc_store_round_trip(tmp_path: Path) -> None:
    store = DocStore(tmp_path / DOCS_FILE)
    store.add_many([(5, Document("a", "alpha", {"lang": "é"})), (9, Document("b", "beta"))])
    assert store.count() == 2
    assert store.get_many([9, 5, 77]) == {5: Document("a", "alpha", {"lang": "é"}), 9: Document("b", "beta")}
    assert store.get("b") == Document("b", "beta", {})
    assert store.get("zzz") is None
    assert store.existing(["a", "x", "b"]) == {"a", "b"}
    with pytest.raises(sqlite3.IntegrityError):
        store.add_many([(6, Document("a", "duplicate id"))])
    store.seal()
    store.close()
    assert not (tmp_path / f"{DOCS_FILE}-wal").exists()
    ro = DocStore(tmp_path / DOCS_FILE, readonly=True)
    assert ro.count() == 2
    ro.close()
    # sealed: reading leaves no -wal/-shm files behind in a published folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [DOCS_FILE]


def test_doc_store_readonly_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="missing"):
        DocStore(tmp_path / "none.sqlite", readonly=True)
    (tmp_path / "bad.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexFormatError):
        DocStore(tmp_path / "bad.sqlite", readonly=True)


# ------------------------------------------------------------------ IndexWriter / IndexFolder


def test_writer_commit_then_open_and_search(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    vectors = unit_vectors(12)
    with IndexWriter(out, new_manifest()) as writer:
        writer.add(make_docs(5), vectors[:5])
        writer.add(make_docs(12)[5:], vectors[5:])
        manifest = writer.commit()
    assert manifest.count == 12
    assert {p.name for p in out.iterdir()} >= {INDEX_FILE, DOCS_FILE, MANIFEST}
    assert leftovers(tmp_path) == []

    folder = IndexFolder.open(out)
    try:
        assert folder.count == 12
        assert folder.manifest.dim == DIM
        assert folder.manifest.files[INDEX_FILE]["bytes"] == (out / INDEX_FILE).stat().st_size
        hits = folder.search(vectors[[4, 9]], 3)
        assert [h[0].id for h in hits] == ["doc-4", "doc-9"]
        assert hits[0][0].text == "text number 4"
        assert hits[0][0].metadata == {"i": 4}
        assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
        assert len(hits[1]) == 3
        assert folder.get("doc-7") == Document("doc-7", "text number 7", {"i": 7})
    finally:
        folder.close()


def test_writer_rejects_mismatched_lengths(tmp_path: Path) -> None:
    with IndexWriter(tmp_path / "idx", new_manifest()) as writer:
        with pytest.raises(InvalidInputError):
            writer.add(make_docs(3), unit_vectors(2))
        writer.abort()
    assert not (tmp_path / "idx").exists()
    assert leftovers(tmp_path) == []


def test_open_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="not found"):
        IndexFolder.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match=r"manifest\.json"):
        IndexFolder.open(tmp_path / "empty")


def test_truncated_faiss_file_is_a_format_error(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    publish_index(out, 10)
    data = (out / INDEX_FILE).read_bytes()
    (out / INDEX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError) as info:
        IndexFolder.open(out)
    assert "truncated or corrupt" in info.value.message


def test_truncated_faiss_file_without_checksum_is_a_format_error(tmp_path: Path) -> None:
    """An index whose manifest carries no file checksums still fails cleanly inside FAISS."""
    out = tmp_path / "idx"
    publish_index(out, 10)
    raw = json.loads((out / MANIFEST).read_text())
    raw["files"] = {}
    (out / MANIFEST).write_text(json.dumps(raw))
    data = (out / INDEX_FILE).read_bytes()
    (out / INDEX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="not a readable FAISS index"):
        IndexFolder.open(out)


def test_missing_faiss_file(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    publish_index(out, 4)
    (out / INDEX_FILE).unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        IndexFolder.open(out)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ("wrong_version", "format_version 99"),
        ("no_version", "format_version None"),
        ("missing_dim", "missing field(s) dim"),
    ],
)
def test_bad_manifest_is_a_format_error(tmp_path: Path, content: str, needle: str) -> None:
    out = tmp_path / "idx"
    publish_index(out, 4)
    raw = json.loads((out / MANIFEST).read_text())
    if content == "wrong_version":
        raw["format_version"] = 99
        content = json.dumps(raw)
    elif content == "no_version":
        del raw["format_version"]
        content = json.dumps(raw)
    elif content == "missing_dim":
        del raw["dim"]
        content = json.dumps(raw)
    (out / MANIFEST).write_text(content)
    with pytest.raises(IndexFormatError) as info:
        IndexFolder.open(out)
    assert needle in info.value.message


def test_count_disagreement_is_a_format_error(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    publish_index(out, 4)
    raw = json.loads((out / MANIFEST).read_text())
    raw["count"] = 5
    (out / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(IndexFormatError, match="counts disagree"):
        IndexFolder.open(out)


def test_manifest_write_read_round_trip(tmp_path: Path) -> None:
    m = new_manifest("a" * 64)
    m.count = 3
    m.model_dir = "/models/x"
    m.write(tmp_path)
    assert not (tmp_path / f".{MANIFEST}.tmp").exists()
    back = Manifest.read(tmp_path)
    assert back == m
    assert back.format_version == FORMAT_VERSION
    # Unknown keys (from a newer writer) are ignored rather than crashing.
    raw = json.loads((tmp_path / MANIFEST).read_text())
    raw["future_field"] = 1
    (tmp_path / MANIFEST).write_text(json.dumps(raw))
    assert Manifest.read(tmp_path).count == 3


def test_check_model_mismatches(tmp_path: Path) -> None:
    m = new_manifest("a" * 64)
    m.check_model("a" * 64, DIM, tmp_path)  # matching: no error
    m.check_model(None, DIM, tmp_path)  # no fingerprint to compare: only dim is checked
    with pytest.raises(IndexMismatchError, match="dim"):
        m.check_model("a" * 64, DIM * 2, tmp_path)
    with pytest.raises(IndexMismatchError) as info:
        m.check_model("b" * 64, DIM, tmp_path)
    assert "aaaaaaaaaaaa" in info.value.message
    assert "bbbbbbbbbbbb" in info.value.message
    m.check_model("a" * 64, DIM, tmp_path, max_seq_length=16)  # the manifest's: no error
    with pytest.raises(IndexMismatchError, match="max_seq_length 16 but the loaded model truncates at 8"):
        m.check_model("a" * 64, DIM, tmp_path, max_seq_length=8)


# ------------------------------------------------------------------ atomic publish


def test_failed_writer_leaves_previous_index_untouched(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    publish_index(out, 3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    with pytest.raises(RuntimeError, match="boom"), IndexWriter(out, new_manifest()) as writer:
        writer.add(make_docs(7, "new"), unit_vectors(7, seed=1))
        assert writer.staging.is_dir()
        raise RuntimeError("boom")

    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    folder = IndexFolder.open(out)
    assert folder.count == 3
    assert folder.get("doc-0") is not None
    folder.close()


def test_publish_replaces_existing_index(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    publish_index(out, 3)
    old = IndexFolder.open(out)
    assert old.count == 3
    old.close()

    vectors = publish_index(out, 5, prefix="new", seed=2)
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    folder = IndexFolder.open(out)
    try:
        assert folder.count == 5
        assert folder.manifest.count == 5
        assert folder.get("doc-0") is None
        assert folder.search(vectors[[2]], 1)[0][0].id == "new-2"
    finally:
        folder.close()


def test_publish_fallback_without_renameat2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the exchange syscall is unavailable the two-rename path must also leave no debris."""
    import core.durable as publish_mod

    out = tmp_path / "idx"
    publish_index(out, 3)
    monkeypatch.setattr(publish_mod, "_exchange", lambda a, b: False)
    publish_index(out, 6, prefix="again", seed=3)
    assert leftovers(tmp_path) == []
    folder = IndexFolder.open(out)
    assert folder.count == 6
    folder.close()


def _open_fds(target: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(target)):
                count += 1
        except OSError:
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_close_releases_connections_opened_by_other_threads(tmp_path: Path) -> None:
    """The service opens the index on one thread and searches on another (its model thread),
    then closes it from the event loop: every SQLite connection must be closed, or each index
    reload leaks file descriptors."""
    out = tmp_path / "idx"
    vectors = publish_index(out, 4)
    with ThreadPoolExecutor(max_workers=1) as opener, ThreadPoolExecutor(max_workers=1) as searcher:
        folder = opener.submit(IndexFolder.open, out).result()
        assert searcher.submit(folder.search, vectors[:1], 2).result()[0][0].id == "doc-0"
        assert _open_fds(out / DOCS_FILE) > 0
        folder.close()
        # Both worker threads are still alive here, as the service's threads are.
        assert _open_fds(out / DOCS_FILE) == 0


def test_writer_lock_sweeps_debris_of_killed_writers(tmp_path: Path) -> None:
    from core.index.writer_lock import writer_lock

    out = tmp_path / "idx"
    publish_index(out, 3)
    for name in (".idx.staging-dead0001", ".idx.old-dead0002", ".idx.building", ".other.staging-keep"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    with writer_lock(out):
        pass
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        ".idx.building",
        ".other.staging-keep",
        "idx",
    ]


def test_next_generation_is_the_published_one_plus_one(tmp_path: Path, tiny_index: Path) -> None:
    from core.index.manifest import Manifest, next_generation

    assert next_generation(tmp_path / "nothing-here") == 1
    assert next_generation(tiny_index) == Manifest.read(tiny_index).generation + 1


def test_disk_full_is_recognised_however_it_shows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import errno
    import sqlite3

    from core import durable as publish
    from core.errors import DiskFullError

    assert isinstance(publish.as_disk_full(OSError(errno.ENOSPC, "No space left on device")), DiskFullError)
    assert isinstance(
        publish.as_disk_full(sqlite3.OperationalError("database or disk is full")), DiskFullError
    )
    io = sqlite3.OperationalError("disk I/O error")
    io.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"  # type: ignore[attr-defined]
    assert publish.as_disk_full(io, folder=tmp_path) is None  # an I/O error with space left is not
    monkeypatch.setattr(publish, "_nearly_full", lambda folder: True)
    wrapped = RuntimeError("while opening")
    wrapped.__cause__ = io
    assert isinstance(publish.as_disk_full(wrapped, folder=tmp_path), DiskFullError)
    assert publish.as_disk_full(OSError(errno.EACCES, "Permission denied"), folder=tmp_path) is None
