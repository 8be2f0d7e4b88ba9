"""The int8 (``sq8``) and binary (sign bits + float rescoring) index types of issue 7."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.encoder import Encoder
from core.errors import IndexFormatError, InvalidInputError
from core.index import vectors
from core.index.doc_store import Document
from core.index.folder import INDEX_FILE, IndexFolder
from core.index.manifest import MANIFEST, Manifest
from core.index.vectors import (
    BINARY_FACTORY,
    DEFAULT_RESCORE_MULTIPLIER,
    FLAT_FACTORY,
    INDEX_TYPES,
    SQ8_FACTORY,
    VectorIndex,
    binary_codes,
    plan_index,
)
from core.index.writer import IndexWriter
from indexer.update import stats
from semsearch.cli import build_parser, main

DIM = 64
QUANTISED = ["sq8", "binary"]


def unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def built(index_type: str, data: np.ndarray, ids: np.ndarray | None = None) -> VectorIndex:
    plan = plan_index(index_type, len(data), data.shape[1])
    index = VectorIndex.create(data.shape[1], plan.factory)
    if plan.train_size:
        assert not index.is_trained
        index.train(data[: plan.train_size])
    index.add(np.arange(len(data)) if ids is None else ids, data)
    return index


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def flat_truth(data: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    flat = VectorIndex.create(data.shape[1])
    flat.add(np.arange(len(data)), data)
    return flat.search(queries, k)[1]


# ------------------------------------------------------------------ plans


def test_plans_are_explicit_choices_only() -> None:
    assert {"sq8", "binary"} <= set(INDEX_TYPES)
    sq8 = plan_index("sq8", 1_000_000, 384)
    assert (sq8.index_type, sq8.factory) == ("sq8", SQ8_FACTORY)
    assert 0 < sq8.train_size < 1_000_000
    assert plan_index("sq8", 10, 384).train_size == 10
    binary = plan_index("binary", 5, 384)
    assert (binary.index_type, binary.factory, binary.train_size) == ("binary", BINARY_FACTORY, 0)
    assert binary.search_params == {"rescore_multiplier": DEFAULT_RESCORE_MULTIPLIER}
    for n, budget in ((10, None), (10**6, None), (10**7, 2**20)):
        assert plan_index("auto", n, 384, budget).index_type not in QUANTISED
    with pytest.raises(InvalidInputError, match="divisible by 8"):
        plan_index("binary", 100, 36)


def test_cli_offers_every_index_type() -> None:
    for index_type in INDEX_TYPES:
        args = build_parser().parse_args(
            ["index", "build", "--corpus", "c", "--output", "o", "--index-type", index_type]
        )
        assert args.index_type == index_type


# ------------------------------------------------------------------ search quality


def test_sq8_recall_against_flat() -> None:
    data, queries = unit(3000), unit(100, seed=1)
    index = built("sq8", data)
    _, found = index.search(queries, 10)
    assert recall_at_10(found, flat_truth(data, queries)) >= 0.9
    # the stored vectors decode close to the originals: 8 bits over each dimension's range
    assert np.abs(index.reconstruct(np.arange(50)) - data[:50]).max() < 0.02


def test_binary_rescoring_beats_hamming_alone() -> None:
    data = unit(2000)
    queries = unit(200, seed=1)
    truth = flat_truth(data, queries)
    index = built("binary", data)
    # multiplier 1 keeps the Hamming top k (only reordered): the recall of Hamming alone
    recalls = {
        m: recall_at_10(index.search(queries, 10, {"rescore_multiplier": m})[1], truth) for m in (1, 4, 10)
    }
    assert recalls[4] >= recalls[1] + 0.05, recalls
    assert recalls[10] >= recalls[4] - 0.01, recalls
    assert (
        index.search(queries, 10)[1].tolist()
        == index.search(queries, 10, {"rescore_multiplier": 4})[1].tolist()
    )
    # near-duplicates are still found first
    near = data[:100] + 0.05 * unit(100, seed=2)
    _, top = index.search(near, 1)
    assert float((top[:, 0] == np.arange(100)).mean()) >= 0.95


def test_binary_scores_are_rescored_cosines() -> None:
    data = unit(300)
    index = built("binary", data, ids=np.arange(300) + 1000)
    q = unit(3, seed=4)
    scores, ids = index.search(q, 20)
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must be sorted descending"
    assert np.all(np.abs(scores) <= 1 + 1e-5)
    signs = index.reconstruct(ids[0])  # +-1/sqrt(dim): unit vectors, scored as the search does
    np.testing.assert_allclose(np.linalg.norm(signs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(signs @ q[0], scores[0], atol=1e-5)
    np.testing.assert_array_equal(np.sign(signs), np.where(data[ids[0] - 1000] > 0, 1, -1))
    assert binary_codes(data).shape == (300, DIM // 8)
    # identical vector: the sign vector's cosine with it, which tracks its own cosine (~0.8 here)
    self_score = index.search(data[:1], 1)[0][0, 0]
    assert 0.6 < self_score <= 1.0


def test_binary_rescoring_in_blocks_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    index, queries = built("binary", unit(500)), unit(7, seed=6)
    whole = index.search(queries, 10, {"rescore_multiplier": 30})
    monkeypatch.setattr(vectors, "RESCORE_BLOCK_FLOATS", DIM * 64)  # 64 candidates a pass: < 1 query's
    parts = index.search(queries, 10, {"rescore_multiplier": 30})
    np.testing.assert_array_equal(whole[1], parts[1])
    np.testing.assert_allclose(whole[0], parts[0], atol=1e-6)


def test_binary_search_edge_cases() -> None:
    empty = VectorIndex.create(DIM, BINARY_FACTORY)
    _, ids = empty.search(unit(2), 5)
    assert ids.tolist() == [[-1], [-1]]
    index = built("binary", unit(5))
    _, ids = index.search(unit(1, seed=3), 50)  # k clamped to the count; all of them come back
    assert sorted(ids[0].tolist()) == [0, 1, 2, 3, 4]
    for bad in (0, 0.5, "x", float("nan")):
        with pytest.raises(InvalidInputError, match="rescore_multiplier"):
            index.search(unit(1), 2, {"rescore_multiplier": bad})
    with pytest.raises(InvalidInputError, match="divisible by 8"):
        VectorIndex.create(12, BINARY_FACTORY)
    with pytest.raises(InvalidInputError):
        index.add(np.arange(2), np.zeros((2, DIM + 8), dtype=np.float32))


def test_sq8_trained_on_one_vector_still_separates() -> None:
    index = VectorIndex.create(DIM, SQ8_FACTORY)
    index.train(unit(1))
    data = unit(20, seed=5)
    index.add(np.arange(20), data)
    _, ids = index.search(data[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ the VectorIndex interface


@pytest.mark.parametrize("index_type", QUANTISED)
def test_delete_clone_save_load(tmp_path: Path, index_type: str) -> None:
    data = unit(200)
    index = built(index_type, data, ids=np.arange(200) * 3)
    assert index.supports_remove and index.is_trained and index.dim == DIM
    copy = index.clone()
    assert index.delete(np.array([0, 3, 999_999])) == 2 and index.count == 198
    assert copy.count == 200  # the clone is independent
    _, ids = index.search(data[:2], 5)
    assert 0 not in ids and 3 not in ids
    assert copy.search(data[:1], 1)[1][0, 0] == 0

    path = tmp_path / "v.faiss"
    index.save(path)
    factory = SQ8_FACTORY if index_type == "sq8" else BINARY_FACTORY
    for loaded in (VectorIndex.load(path, factory), VectorIndex.load(path)):  # header tells without one
        assert loaded.binary == (index_type == "binary") and loaded.count == 198
        s1, i1 = index.search(data[5:9], 7)
        s2, i2 = loaded.search(data[5:9], 7)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2, atol=1e-6)
        np.testing.assert_allclose(loaded.reconstruct(i2[0]), index.reconstruct(i1[0]), atol=1e-6)
    other = FLAT_FACTORY if index_type == "binary" else BINARY_FACTORY
    with pytest.raises(IndexFormatError, match="FAISS index, but"):
        VectorIndex.load(path, other)
    raw = path.read_bytes()
    for cut in (2, 10, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:cut])
        with pytest.raises(IndexFormatError):
            VectorIndex.load(path, factory)


@pytest.mark.parametrize("index_type", QUANTISED)
def test_folder_open_filter_and_corrupt_file(tmp_path: Path, index_type: str) -> None:
    n, data = 120, unit(120)
    plan = plan_index(index_type, n, DIM)
    manifest = Manifest(
        model_fingerprint="f" * 64,
        dim=DIM,
        normalized=True,
        count=0,
        max_seq_length=16,
        index_type=index_type,
        search_params=plan.search_params or {},
    )
    out = tmp_path / "idx"
    with IndexWriter(out, manifest, plan.factory) as writer:
        if plan.train_size:
            writer.vectors.train(data)
        docs = [Document(f"d{i}", f"text {i}", {"even": i % 2 == 0}) for i in range(n)]
        writer.add(docs, data)
        writer.commit()
    folder = IndexFolder.open(out)
    try:
        assert folder.vectors.factory == plan.factory
        assert folder.search(data[7:8], 3)[0][0].id == "d7"
        hits = folder.search(data[7:8], 5, where={"even": False})[0]  # scored exactly (reconstruct)
        assert hits[0].id == "d7" and len(hits) == 5
        assert all(int(h.id[1:]) % 2 == 1 for h in hits)
        plain = folder.search(data[7:8], 5, params={"rescore_multiplier": 10})[0]
        assert plain[0].id == "d7"
    finally:
        folder.close()
    # a truncated file behind a manifest without checksums fails cleanly, never inside FAISS
    raw = json.loads((out / MANIFEST).read_text())
    raw["files"] = {}
    (out / MANIFEST).write_text(json.dumps(raw))
    blob = (out / INDEX_FILE).read_bytes()
    (out / INDEX_FILE).write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IndexFormatError, match="not a readable FAISS index"):
        IndexFolder.open(out)


# ------------------------------------------------------------------ CLI round trip


@pytest.mark.parametrize("index_type", QUANTISED)
def test_cli_build_add_delete_stats_compact(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_encoder: Encoder,
    tiny_docs,
    jsonl_writer,
    capsys,
    index_type: str,
) -> None:
    out = tmp_path / "idx"
    base = jsonl_writer(tmp_path / "base.jsonl", tiny_docs[:30])
    model = ["--model", str(tiny_model_dir), "--device", "cpu"]
    build = ["index", "build", "--corpus", str(base), "--output", str(out), "--index-type", index_type]
    assert main([*build, *model, "--no-progress"]) == 0
    assert f"({index_type} " in capsys.readouterr().out

    def best(text: str, k: int = 50) -> set[str]:
        """The ids tied for the best score. The tiny model's vectors are so alike (cosine ~0.99)
        that several share all 32 sign bits; a document's own sign vector always scores best."""
        folder = IndexFolder.open(out)
        try:
            hits = folder.search(tiny_encoder.encode([text]), k)[0]
            return {h.id for h in hits if h.score >= hits[0].score - 1e-6}
        finally:
            folder.close()

    def found(doc: dict) -> bool:
        return doc["id"] in best(doc["text"])

    assert found(tiny_docs[4])
    more = jsonl_writer(tmp_path / "more.jsonl", tiny_docs[30:35])
    assert main(["index", "add", "--index", str(out), "--corpus", str(more), *model]) == 0
    assert "added 5, replaced 0" in capsys.readouterr().out
    assert found(tiny_docs[32])
    assert main(["index", "delete", "--index", str(out), "--ids", tiny_docs[4]["id"], "nope"]) == 0
    assert "deleted 1" in capsys.readouterr().out
    folder = IndexFolder.open(out)
    hits = folder.search(tiny_encoder.encode([tiny_docs[4]["text"]]), 50)[0]
    folder.close()
    assert len(hits) == 34 and tiny_docs[4]["id"] not in {h.id for h in hits}
    assert main(["index", "stats", "--index", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # the deleted base vector is skipped until compaction; the 5 added ones sit in a delta
    assert (info["index_type"], info["documents"], info["vectors"], info["tombstones"]) == (
        index_type,
        34,
        35,
        1,
    )
    assert info["delta_vectors"] == 5
    if index_type == "binary":
        assert info["search_params"] == {"rescore_multiplier": DEFAULT_RESCORE_MULTIPLIER}
    assert main(["index", "compact", "--index", str(out)]) == 0
    assert "compacted to 34 documents" in capsys.readouterr().out
    after = stats(out)
    assert (after["index_type"], after["documents"], after["vectors"]) == (index_type, 34, 34)
    assert (after["tombstones"], after["delta_segments"]) == (0, 0)
    assert found(tiny_docs[12]) and found(tiny_docs[33])
