"""The storage engine: write log, delta segments, deleted ids, compaction, replay, recovery."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import IndexFormatError
from core.index.compaction import CompactionPolicy, prepare
from core.index.doc_store import DOCS_FILE, Document
from core.index.folder import IndexFolder, StaleSnapshot
from core.index.manifest import Manifest
from core.index.mutable import MutableIndex
from core.index.segments import MAX_DELTAS
from core.index.vectors import plan_index
from core.index.wal_check import check_wal
from core.index.writer_lock import HeldTemp, sweep_files
from tests.core.helpers import build_planned, unit_vectors

DIM = 16
N = 400
TYPES = ["flat", "hnsw", "ivf", "ivfpq", "sq8", "binary"]


def _unit(n: int, seed: int) -> np.ndarray:
    return unit_vectors(n, DIM, seed)


def _build(out: Path, index_type: str, n: int = N) -> np.ndarray:
    vectors = _unit(n, 0)
    build_planned(out, index_type, [Document(f"d{i}", f"text {i}", {"i": i}) for i in range(n)], vectors)
    return vectors


def _ids(folder: IndexFolder, query: np.ndarray, k: int) -> list[str]:
    return [h.id for h in folder.search(query[None, :], k, params={"nprobe": 10_000, "ef_search": 512})[0]]


def _exact(live: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    names = list(live)
    scores = np.stack([live[n] for n in names]) @ query
    return [names[i] for i in np.argsort(-scores)[:k]]


@pytest.mark.parametrize("index_type", TYPES)
def test_every_type_searches_base_deltas_and_deletes_as_one_live_set(tmp_path: Path, index_type: str) -> None:
    """Upserts land in deltas, deletes and replacements are skipped inside FAISS, for every
    type; compaction folds them into a base of the same type, and the live set is the same."""
    out = tmp_path / "idx"
    base = _build(out, index_type)
    live = {f"d{i}": base[i] for i in range(N)}
    new = _unit(60, 1)
    with MutableIndex(out) as index:
        for start in range(0, 60, 20):  # three writes: three generations, up to three deltas
            docs = [Document(f"n{i}", f"new {i}") for i in range(start, start + 20)]
            index.upsert(docs, new[start : start + 20])
            live.update({f"n{i}": new[i] for i in range(start, start + 20)})
        index.delete([f"d{i}" for i in range(0, N, 4)] + ["n3", "nope"])
        replaced = _unit(1, 2)[0]
        index.upsert([Document("d1", "replaced")], replaced[None, :])
    for i in range(0, N, 4):
        live.pop(f"d{i}")
    live.pop("n3")
    live["d1"] = replaced
    folder = IndexFolder.open(out)
    try:
        assert folder.count == len(live) and folder.generation == Manifest.read(out).generation + 5
        assert folder.segments.deltas and folder.vectors.count == N  # the base was not rewritten
        dead = {"d0", "d4", "n3"}
        for q in range(5):
            query = live["d1"] if q == 0 else _unit(1, 10 + q)[0]
            got = _ids(folder, query, 20)
            assert len(got) == 20 and not dead & set(got)
            if index_type in ("flat", "binary") or q == 0:
                assert got[0] == _exact(live, query, 1)[0] or index_type == "binary"
            # filters and hybrid see exactly the same live set
            filtered = folder.search(query[None, :], 50, where={"i": {"in": [0, 1, 2, 4, 5]}})[0]
            assert {h.id for h in filtered} == {"d2", "d5"}  # d1's replacement has no metadata
            hybrid = folder.search_hybrid(query, "new text", 30)
            assert len(hybrid) == 30 and not dead & {h.id for h in hybrid}
        assert folder.get("d1") == Document("d1", "replaced") and folder.get("d4") is None
    finally:
        folder.close()
    with MutableIndex(out) as index:
        manifest = index.compact(full=True)
    folder = IndexFolder.open(out)
    try:
        assert manifest.count == folder.count == len(live) and folder.vectors.count == len(live)
        assert not folder.segments.deltas and len(folder.dead) == 0
        assert folder.vectors.factory == plan_index(index_type, N, DIM).factory
        got = _ids(folder, live["d1"], 20)
        assert got[0] == "d1" or index_type == "binary"
        assert not {"d0", "d4", "n3"} & set(got)
    finally:
        folder.close()


def test_a_reader_replays_the_log_tail_and_reopens_after_a_compaction(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(out, "flat")
    reader = IndexFolder.open(out)
    assert reader.advance() is reader  # nothing new
    with MutableIndex(out) as index:
        index.upsert([Document("late", "late")], _unit(1, 3))
        index.delete(["d7"])
    moved = reader.advance()
    assert moved.generation == reader.generation + 2 and moved.count == N
    assert moved.get("late") is not None and moved.get("d7") is None
    assert reader.get("late") is None and reader.get("d7") is not None  # the old snapshot stands
    assert moved.vectors is reader.vectors  # the base is shared, not copied
    with MutableIndex(out) as index:
        index.compact(full=True)
    with pytest.raises(StaleSnapshot):
        moved.advance()
    again = IndexFolder.open(out)
    assert again.count == N and again.get("late") is not None and again.get("d7") is None
    for f in (reader, moved, again):
        f.close()


def test_writes_during_a_compaction_are_kept_and_become_the_new_deltas(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(out, "hnsw")
    with MutableIndex(out) as index:
        index.upsert([Document("a", "a")], _unit(1, 4))
    snapshot = IndexFolder.open(out)
    new = prepare(snapshot, full=False)  # step 1: no lock held
    with MutableIndex(out) as index:  # meanwhile, writes go on
        index.upsert([Document("b", "b")], _unit(1, 5))
        index.delete(["d3", "a"])
    with MutableIndex(out) as index:
        manifest = index.install_base(new)  # step 2, under the lock
    assert manifest is not None and manifest.generation == snapshot.generation
    folder = IndexFolder.open(out)
    try:
        assert folder.get("b") is not None and folder.get("a") is None and folder.get("d3") is None
        assert folder.count == N  # +a +b -d3 -a
        assert [h.id for h in folder.search(_unit(1, 5), 1)[0]] == ["b"]
        assert len(folder.segments.deltas) == 1 and folder.segments.deltas[0].count == 1
        hits = {h.id for h in folder.search(_unit(1, 4), N, params={"ef_search": 2048})[0]}
        assert "a" not in hits and "d3" not in hits and len(hits) == N
    finally:
        folder.close()
        snapshot.close()
    # a compaction prepared from a base that is no longer published is dropped, not installed
    stale = IndexFolder.open(out)
    new2 = prepare(stale, full=True)
    with MutableIndex(out) as index:
        index.compact(full=True)
    with MutableIndex(out) as index:
        assert index.install_base(new2) is None
    assert not new2.temp.path.exists()
    stale.close()


def test_deltas_stay_few_however_many_writes(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(out, "flat", 100)
    reader = IndexFolder.open(out)
    vectors = _unit(300, 6)
    with MutableIndex(out) as index:
        for i in range(300):
            index.upsert([Document(f"w{i}", "w")], vectors[i : i + 1])
            if i % 3 == 0:
                index.delete([f"w{i}"])
            reader = reader.advance()
            assert len(reader.segments.deltas) <= MAX_DELTAS
    assert reader.count == 100 + 200
    assert reader.segments.delta_count() <= 300
    assert [h.id for h in reader.search(vectors[7:8], 1)[0]] == ["w7"]
    assert reader.search(vectors[6:7], 1)[0][0].id != "w6"  # deleted
    reader.close()


def test_a_compaction_killed_after_its_manifest_is_finished_at_the_next_open(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(out, "flat")
    with MutableIndex(out) as index:
        index.upsert([Document("x", "x")], _unit(1, 7))
    snapshot = IndexFolder.open(out)
    new = prepare(snapshot, full=True)
    snapshot.close()
    with MutableIndex(out) as index:
        real = index.store.fold
        index.store.fold = lambda *a, **k: (_ for _ in ()).throw(OSError("killed"))  # type: ignore[method-assign]
        with pytest.raises(OSError):
            index.install_base(new)
        index.store.fold = real  # type: ignore[method-assign]
    db = sqlite3.connect(out / DOCS_FILE)
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 1  # not folded yet
    db.close()
    folder = IndexFolder.open(out)  # readers are right meanwhile: the base holds x
    assert folder.count == N + 1 and not folder.segments.deltas and folder.get("x") is not None
    folder.close()
    with MutableIndex(out):
        pass  # recovery folds
    db = sqlite3.connect(out / DOCS_FILE)
    assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 0
    db.close()


def test_debris_is_swept_but_a_held_temp_is_not(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(out, "flat", 50)
    held = HeldTemp(out, "compact-g9")
    (out / ".compact-g8.dead.tmp").write_bytes(b"left by a killed compaction")
    (out / "index.g5.faiss").write_bytes(b"renamed, never published")
    removed = sweep_files(out, {Manifest.read(out).index_file})
    assert sorted(removed) == [".compact-g8.dead.tmp", "index.g5.faiss"]
    assert held.path.exists()
    held.release()
    with MutableIndex(out):
        pass
    assert not held.path.exists()


def _wal_with_writes(tmp_path: Path) -> tuple[Path, bytes]:
    """A crash image: a copy of the folder taken while a writer that committed several write
    transactions is still open (so they are in docs.sqlite-wal, not yet checkpointed), as a
    kill -9 leaves it; and those WAL bytes."""
    out = tmp_path / "idx"
    _build(out, "flat", 20)
    crash = tmp_path / "crash"
    with MutableIndex(out, seal=False) as index:
        index.store._rows("PRAGMA wal_autocheckpoint=0")
        for i in range(6):
            index.upsert([Document(f"w{i}", "x" * 3000)], _unit(1, 20 + i))
        shutil.copytree(out, crash, ignore=shutil.ignore_patterns("*-shm"))
    return crash, (crash / (DOCS_FILE + "-wal")).read_bytes()


def test_a_torn_wal_tail_is_dropped_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out, data = _wal_with_writes(tmp_path)
    wal = out / (DOCS_FILE + "-wal")
    good = check_wal_bytes(wal, data)
    wal.write_bytes(data[: len(data) - 3000])  # the last transaction half on disk
    with caplog.at_level(logging.WARNING):
        kept = check_wal(out / DOCS_FILE)
    assert 0 < kept < good and "torn transaction" in caplog.text
    folder = IndexFolder.open(out)  # the five whole transactions are there, the torn one is not
    assert folder.get("w4") is not None and folder.get("w5") is None and folder.count == 25
    folder.close()


def test_a_corrupt_wal_record_in_the_middle_is_an_error_at_open(tmp_path: Path) -> None:
    out, data = _wal_with_writes(tmp_path)
    broken = bytearray(data)
    broken[32 + 24 + 100] ^= 0xFF  # the first frame's page
    (out / (DOCS_FILE + "-wal")).write_bytes(bytes(broken))
    with pytest.raises(IndexFormatError, match="damaged and committed transactions follow"):
        MutableIndex(out)
    with pytest.raises(IndexFormatError, match="damaged"):
        IndexFolder.open(out)  # a reader too, before SQLite would drop them


def check_wal_bytes(wal: Path, data: bytes) -> int:
    wal.write_bytes(data)
    return check_wal(wal.with_name(DOCS_FILE))


def test_policy_is_due_by_delta_and_deleted_ratio(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    _build(out, "flat", 100)
    policy = CompactionPolicy(delta_ratio=0.1, deleted_ratio=0.2, min_vectors=1)
    with MutableIndex(out) as index:
        index.upsert([Document(f"a{i}", "a") for i in range(9)], _unit(9, 8))
        folder = index.snapshot()
        assert not policy.due(folder)
        folder.close()
        index.upsert([Document("a9", "a")], _unit(1, 9))
        folder = index.snapshot()
        assert policy.due(folder)
        folder.close()
        assert index.compact(full=False, policy=policy).generation == index.generation
        folder = index.snapshot()
        assert not folder.segments.deltas and not policy.due(folder)
        folder.close()
        index.delete([f"d{i}" for i in range(25)])
        folder = index.snapshot()
        assert policy.due(folder) and policy.full(folder)
        folder.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "del", "compact"]), st.lists(st.integers(0, 30), min_size=1, max_size=6)
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_sequence_of_writes_reads_back_exactly(tmp_path_factory: pytest.TempPathFactory, ops) -> None:
    """Whatever mix of upserts, deletes and compactions, a fresh reader sees exactly the model's
    live set, each document's own vector is its own nearest, and the counts agree."""
    out = tmp_path_factory.mktemp("prop") / "idx"
    _build(out, "flat", 10)
    model = {f"d{i}": _unit(N, 0)[i] for i in range(10)}
    rng = np.random.default_rng(1)
    with MutableIndex(out) as index:
        for op, keys in ops:
            names = [f"k{k}" for k in dict.fromkeys(keys)]
            if op == "put":
                vecs = rng.standard_normal((len(names), DIM)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                index.upsert([Document(n, n) for n in names], vecs)
                model.update(zip(names, vecs, strict=True))
            elif op == "del":
                index.delete(names)
                for n in names:
                    model.pop(n, None)
            else:
                index.compact(full=True)
    folder = IndexFolder.open(out)
    try:
        assert folder.count == len(model)
        everything = folder.search(_unit(1, 99), len(model) + 5)[0]
        assert sorted(h.id for h in everything) == sorted(model)
        for name, vec in list(model.items())[:5]:
            assert folder.search(vec[None, :], 1)[0][0].id == name
    finally:
        folder.close()


def test_the_wal_shrinks_back_after_one_big_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.index.doc_store as doc_store

    limit = 256 << 10
    monkeypatch.setattr(doc_store, "WAL_SIZE_LIMIT", limit)
    out = tmp_path / "idx"
    _build(out, "flat")
    wal = out / (DOCS_FILE + "-wal")
    big = 20_000  # about 2.5 MB of rows and vectors in one transaction, ten times the limit
    with MutableIndex(out) as index:
        index.upsert([Document(f"big{i}", f"bulk text {i} " * 4) for i in range(big)], _unit(big, 5))
        assert wal.stat().st_size > 4 * limit
        db = sqlite3.connect(out / DOCS_FILE)
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # what autocheckpoint does once no reader holds it
        db.close()
        index.upsert([Document("small", "small")], _unit(1, 6))  # restarts the log: truncated here
        assert wal.stat().st_size <= limit
    reader = IndexFolder.open(out)
    assert reader.count == N + big + 1 and reader.get("big19999") is not None
    reader.close()
