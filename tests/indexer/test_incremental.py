"""add / delete / upsert / stats / compact on published indexes, and their consistency."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.encoder import Encoder
from core.errors import IndexMismatchError
from core.index.doc_store import Document
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.mutable import MutableIndex
from core.index.writer import IndexWriter
from indexer.build import BuildConfig, build_index
from indexer.update import add_corpus, compact, delete_ids, read_ids, stats
from semsearch.cli import main


def _build(
    tmp: Path, model: Path, encoder: Encoder, docs: list[dict[str, Any]], jsonl_writer, **kw: Any
) -> Path:
    corpus = jsonl_writer(tmp / "base.jsonl", docs)
    out = tmp / "idx"
    build_index(
        BuildConfig(model=str(model), corpus=str(corpus), output=str(out), progress=False, **kw), encoder
    )
    return out


def _search_ids(index: Path, encoder: Encoder, text: str, k: int = 5) -> list[str]:
    folder = IndexFolder.open(index)
    try:
        return [h.id for h in folder.search(encoder.encode([text]), k)[0]]
    finally:
        folder.close()


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_add_upsert_delete_compact(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer, index_type: str
) -> None:
    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:30], jsonl_writer, index_type=index_type)
    gen0 = Manifest.read(out).generation
    new = [*tiny_docs[30:35], {"id": tiny_docs[0]["id"], "text": tiny_docs[40]["text"], "metadata": {"v": 2}}]
    report = add_corpus(out, jsonl_writer(tmp_path / "more.jsonl", new), str(tiny_model_dir), device="cpu")
    assert (report.added, report.replaced, report.generation) == (5, 1, gen0 + 1)
    info = stats(out)
    assert info["documents"] == 35 and info["generation"] == gen0 + 1
    # the replaced document's old vector stays in the base (skipped by search) until compaction,
    # whatever the type: a write never rewrites the base
    assert info["tombstones"] == 1 and info["delta_vectors"] == 6 and info["base_generation"] == gen0
    # the replaced document answers with its new text, and its old text no longer finds it first
    assert _search_ids(out, tiny_encoder, tiny_docs[40]["text"])[0] == tiny_docs[0]["id"]
    folder = IndexFolder.open(out)
    assert folder.get(tiny_docs[0]["id"]) == Document(tiny_docs[0]["id"], tiny_docs[40]["text"], {"v": 2})
    folder.close()
    assert _search_ids(out, tiny_encoder, tiny_docs[31]["text"])[0] == tiny_docs[31]["id"]

    gone = [tiny_docs[5]["id"], tiny_docs[31]["id"]]
    result = delete_ids(out, [*gone, "no-such-id"])
    assert result.deleted == 2 and result.missing == ["no-such-id"]
    for doc in (tiny_docs[5], tiny_docs[31]):
        hits = _search_ids(out, tiny_encoder, doc["text"], k=34)
        assert doc["id"] not in hits
        assert len(hits) == 33  # k hits still come back although tombstones sit in the way (HNSW)
    before = stats(out)
    assert before["tombstones"] == 2  # doc 31 was in the log: a replay loads only live vectors
    (manifest,) = compact(out)
    after = stats(out)
    assert after["tombstones"] == 0 and after["documents"] == 33 == manifest.count
    # compaction folds generation G into a base of generation G: no new content, a new base
    assert after["vectors"] == 33 and after["generation"] == before["generation"] == manifest.generation
    assert after["delta_segments"] == 0 and after["base_generation"] == before["generation"]
    assert _search_ids(out, tiny_encoder, tiny_docs[12]["text"])[0] == tiny_docs[12]["id"]


def test_add_with_another_model_is_refused(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer, minilm_dir: Path
) -> None:
    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:10], jsonl_writer)
    with pytest.raises(IndexMismatchError, match="dim"):
        add_corpus(out, jsonl_writer(tmp_path / "m.jsonl", tiny_docs[10:12]), str(minilm_dir), device="cpu")
    assert stats(out)["documents"] == 10


def test_add_with_another_max_seq_length_is_refused(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:10], jsonl_writer)
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    config = other / "sentence_bert_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "max_seq_length": 8}))
    with pytest.raises(IndexMismatchError, match="max_seq_length"):
        add_corpus(out, jsonl_writer(tmp_path / "m.jsonl", tiny_docs[10:12]), str(other), device="cpu")
    assert stats(out)["documents"] == 10


def test_failed_add_publishes_nothing(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:10], jsonl_writer)
    before = stats(out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in tiny_docs[10:20]) + "{not json\n")
    with pytest.raises(Exception, match=r"bad\.jsonl:11"):
        add_corpus(out, bad, str(tiny_model_dir), device="cpu", chunk_size=3)
    after = stats(out)
    assert (after["documents"], after["generation"]) == (before["documents"], before["generation"])
    # and the rows of the failed add were rolled back: the next add starts from a clean store
    add_corpus(out, jsonl_writer(tmp_path / "ok.jsonl", tiny_docs[10:12]), str(tiny_model_dir), device="cpu")
    assert stats(out)["documents"] == 12


def test_cli_add_delete_stats_compact(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer, capsys
) -> None:
    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:10], jsonl_writer)
    more = jsonl_writer(tmp_path / "more.jsonl", tiny_docs[10:13])
    assert (
        main(["index", "add", "--index", str(out), "--corpus", str(more), "--model", str(tiny_model_dir)])
        == 0
    )
    assert "added 3, replaced 0" in capsys.readouterr().out
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{tiny_docs[0]['id']}\n{tiny_docs[1]['id']}\n")
    assert read_ids([str(ids)]) == [tiny_docs[0]["id"], tiny_docs[1]["id"]]
    assert main(["index", "delete", "--index", str(out), "--ids", str(ids)]) == 0
    assert "deleted 2" in capsys.readouterr().out
    assert main(["index", "stats", "--index", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 11 and info["dim"] == 32 and info["size_bytes"] > 0
    assert info["model_fingerprint"] == tiny_encoder.fingerprint
    assert main(["index", "compact", "--index", str(out)]) == 0
    assert "compacted to 11 documents" in capsys.readouterr().out


# ------------------------------------------------------------------ property: store == vectors

DIM = 8
OPS = st.lists(
    st.tuples(st.sampled_from(["upsert", "delete"]), st.lists(st.integers(0, 14), min_size=1, max_size=5)),
    min_size=1,
    max_size=8,
)


def _vec(key: int, version: int) -> np.ndarray:
    v = np.random.default_rng(key * 1000 + version).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("factory", ["IDMap2,Flat", "IDMap2,HNSW32"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_updates_keep_store_and_index_consistent(tmp_path_factory, factory: str, ops) -> None:
    out = tmp_path_factory.mktemp("prop") / "idx"
    manifest = Manifest(model_fingerprint="x" * 64, dim=DIM, normalized=True, count=0, max_seq_length=8)
    with IndexWriter(out, manifest, factory) as writer:
        writer.add([Document("k0", "text 0 v0")], _vec(0, 0)[None, :])
        writer.commit()
    model: dict[str, int] = {"k0": 0}  # id -> version
    version = 0
    for op, keys in ops:
        with MutableIndex(out) as index:
            if op == "upsert":
                version += 1
                uniq = list(dict.fromkeys(keys))
                docs = [Document(f"k{k}", f"text {k} v{version}") for k in uniq]
                index.upsert(docs, np.vstack([_vec(k, version) for k in uniq]))
                model.update({f"k{k}": version for k in uniq})
            else:
                index.delete([f"k{k}" for k in keys])
                for k in keys:
                    model.pop(f"k{k}", None)
        folder = IndexFolder.open(out)
        try:
            assert folder.count == len(model)
            for doc_id, ver in model.items():
                key = int(doc_id[1:])
                assert folder.get(doc_id) == Document(doc_id, f"text {key} v{ver}")
                hits = folder.search(_vec(key, ver)[None, :], len(model))[0]
                assert hits[0].id == doc_id  # exact vector: first hit
                assert {h.id for h in hits} == set(model)  # every live doc, nothing deleted
        finally:
            folder.close()


def test_open_reader_keeps_its_own_documents_across_a_swap(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    import threading

    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:10], jsonl_writer)
    reader = IndexFolder.open(out)
    try:
        # rebuild the folder with other documents while the reader is open
        corpus = jsonl_writer(tmp_path / "other.jsonl", tiny_docs[20:30])
        build_index(
            BuildConfig(model=str(tiny_model_dir), corpus=str(corpus), output=str(out), progress=False),
            tiny_encoder,
        )
        query = tiny_encoder.encode([tiny_docs[3]["text"]])
        seen: list[str] = []
        # first use of the store from another thread (as the service's encoder thread does)
        t = threading.Thread(target=lambda: seen.extend(h.id for h in reader.search(query, 3)[0]))
        t.start()
        t.join()
        assert seen[0] == tiny_docs[3]["id"]  # the old folder's document, not whatever the new iid 3 is
    finally:
        reader.close()
    assert _search_ids(out, tiny_encoder, tiny_docs[23]["text"])[0] == tiny_docs[23]["id"]


def test_update_with_a_reader_open_and_noop_delete(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    out = _build(tmp_path, tiny_model_dir, tiny_encoder, tiny_docs[:10], jsonl_writer)
    reader = IndexFolder.open(out)
    try:
        reader.search(tiny_encoder.encode(["the cat"]), 2)
        result = delete_ids(out, [tiny_docs[0]["id"]])  # closes cleanly although a reader holds the file
        assert result.deleted == 1
        gen = stats(out)["generation"]
        assert delete_ids(out, ["no-such-id"]).missing == ["no-such-id"]
        assert stats(out)["generation"] == gen  # nothing changed: no new generation
        assert reader.get(tiny_docs[0]["id"]) is not None  # the reader still sees its generation
    finally:
        reader.close()


def test_hnsw_tombstones_are_skipped_inside_faiss_without_over_fetch(tmp_path: Path) -> None:
    """HNSW keeps deleted vectors until compact; searches (plain, filtered, hybrid) skip them
    through an id selector and ask FAISS for k, not k + tombstones."""
    out = tmp_path / "idx"
    manifest = Manifest(model_fingerprint="x" * 64, dim=DIM, normalized=True, count=0, max_seq_length=8)
    with IndexWriter(out, manifest, "IDMap2,HNSW32") as writer:
        docs = [Document(f"k{i}", f"word{i} common", {"even": i % 2 == 0}) for i in range(40)]
        writer.add(docs, np.vstack([_vec(i, 0) for i in range(40)]))
        writer.commit()
    with MutableIndex(out) as index:
        index.delete([f"k{i}" for i in range(30)])  # 30 tombstones, 10 live
    folder = IndexFolder.open(out)
    asked: list[int] = []
    real = folder.vectors.search

    def spy(queries: np.ndarray, k: int, params: Any = None, exclude: Any = None) -> Any:
        asked.append(k)
        return real(queries, k, params, exclude)

    folder.vectors.search = spy  # type: ignore[method-assign]
    try:
        assert len(folder.dead) == 30 and folder.segments.base is folder.vectors
        live = {f"k{i}" for i in range(30, 40)}
        hits = folder.search(_vec(3, 0)[None, :], 5)[0]  # the query is a deleted doc's own vector
        assert len(hits) == 5 and {h.id for h in hits} <= live and asked == [5]
        everything = folder.search(_vec(35, 0)[None, :], 10)[0]
        assert {h.id for h in everything} == live and everything[0].id == "k35"
        hybrid = folder.search_hybrid(_vec(3, 0), "word3 common", 4)
        assert len(hybrid) == 4 and {h.id for h in hybrid} <= live
        evens = folder.search(_vec(3, 0)[None, :], 3, where={"even": True})[0]
        assert len(evens) == 3 and all(h.metadata["even"] and h.id in live for h in evens)
    finally:
        folder.close()
