"""``build_index``: corpus -> published index folder, with the tiny encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.encoder import Encoder
from core.errors import DataError
from core.index.folder import IndexFolder
from indexer.build import CONFIG_FILE, BuildConfig, build_index


def cfg_for(model_dir: Path, corpus: Path, output: Path, **kw: Any) -> BuildConfig:
    return BuildConfig(model=str(model_dir), corpus=str(corpus), output=str(output), progress=False, **kw)


def debris(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir: Path, tiny_corpus: Path, tiny_encoder: Encoder):
    out = tmp_path_factory.mktemp("build") / "idx"
    cfg = cfg_for(tiny_model_dir, tiny_corpus, out, batch_size=8, chunk_size=16)
    return cfg, build_index(cfg, encoder=tiny_encoder), out


def test_build_writes_a_complete_index(built, tiny_encoder: Encoder) -> None:
    cfg, report, out = built
    assert report.documents == 50
    assert report.skipped == []
    assert report.manifest.count == 50
    assert report.manifest.dim == 32
    assert report.manifest.normalized is True
    assert report.manifest.max_seq_length == 16
    assert report.manifest.model_fingerprint == tiny_encoder.fingerprint
    assert report.manifest.model_dir == str(Path(cfg.model).resolve())
    assert report.docs_per_s > 0
    assert debris(out.parent) == []

    written = json.loads((out / CONFIG_FILE).read_text())
    assert written["corpus"] == cfg.corpus
    assert written["output"] == cfg.output
    assert written["chunk_size"] == 16
    assert written["batch_size"] == 8


def test_built_index_finds_each_document_by_its_own_text(built, tiny_encoder: Encoder, tiny_docs) -> None:
    _, _, out = built
    folder = IndexFolder.open(out)
    try:
        assert folder.count == 50
        assert folder.manifest.count == 50
        sample = tiny_docs[::7]
        queries = tiny_encoder.encode([d["text"] for d in sample])
        results = folder.search(queries, 3)
        assert [r[0].id for r in results] == [d["id"] for d in sample]
        assert all(r[0].score == pytest.approx(1.0, abs=1e-4) for r in results)
        first = folder.get(sample[0]["id"])
        assert first is not None
        assert first.metadata == sample[0]["metadata"]
    finally:
        folder.close()


def test_build_normalises_when_the_encoder_does_not(
    tmp_path: Path, tiny_encoder: Encoder, tiny_corpus
) -> None:
    plain = tmp_path / "plain"
    tiny_encoder.net[0].auto_model.save_pretrained(str(plain))
    tiny_encoder.tokenizer.save_pretrained(str(plain))
    encoder = Encoder.load(plain, device="cpu")
    assert encoder.normalize is False
    out = tmp_path / "idx"
    build_index(cfg_for(plain, tiny_corpus, out), encoder=encoder)
    folder = IndexFolder.open(out)
    try:
        stored = folder.vectors.index.reconstruct_n(0, folder.count)
        np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    finally:
        folder.close()


@pytest.mark.parametrize("chunk_size", [4096, 3])
def test_duplicate_id_fails_and_publishes_nothing(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer, chunk_size: int
) -> None:
    docs = [*tiny_docs[:6], {"id": tiny_docs[1]["id"], "text": "the cat", "metadata": {}}, *tiny_docs[6:9]]
    corpus = jsonl_writer(tmp_path / "dup.jsonl", docs)
    out = tmp_path / "idx"
    with pytest.raises(DataError) as info:
        build_index(cfg_for(tiny_model_dir, corpus, out, chunk_size=chunk_size), encoder=tiny_encoder)
    assert repr(tiny_docs[1]["id"]) in info.value.message
    assert "duplicate id" in info.value.message
    assert info.value.line == 7
    assert "dup.jsonl:7" in info.value.message
    assert not out.exists()
    assert debris(tmp_path) == []


def test_failed_build_leaves_previous_index_untouched(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    out = tmp_path / "idx"
    good = jsonl_writer(tmp_path / "good.jsonl", tiny_docs[:5])
    build_index(cfg_for(tiny_model_dir, good, out), encoder=tiny_encoder)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    bad = jsonl_writer(tmp_path / "bad.jsonl", [*tiny_docs[:20], tiny_docs[0]])
    with pytest.raises(DataError, match="duplicate id"):
        build_index(cfg_for(tiny_model_dir, bad, out), encoder=tiny_encoder)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert debris(tmp_path) == []
    folder = IndexFolder.open(out)
    assert folder.count == 5
    folder.close()


def test_rebuild_replaces_the_index(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    out = tmp_path / "idx"
    build_index(cfg_for(tiny_model_dir, jsonl_writer(tmp_path / "a.jsonl", tiny_docs[:5]), out), tiny_encoder)
    report = build_index(
        cfg_for(tiny_model_dir, jsonl_writer(tmp_path / "b.jsonl", tiny_docs[10:22]), out), tiny_encoder
    )
    assert report.manifest.count == 12
    folder = IndexFolder.open(out)
    try:
        assert folder.count == 12
        assert folder.get(tiny_docs[0]["id"]) is None
        assert folder.get(tiny_docs[10]["id"]) is not None
    finally:
        folder.close()
    assert debris(tmp_path) == []


def test_skip_bad_lines_counts(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs
) -> None:
    lines = [json.dumps(d) for d in tiny_docs[:10]]
    lines.insert(3, '{"id": "broken", "text": ')  # line 4
    lines.insert(7, '{"id": "notext"}')  # line 8
    corpus = tmp_path / "mixed.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    out = tmp_path / "idx"

    with pytest.raises(DataError) as info:
        build_index(cfg_for(tiny_model_dir, corpus, out), encoder=tiny_encoder)
    assert "mixed.jsonl:4" in info.value.message
    assert not out.exists()

    report = build_index(cfg_for(tiny_model_dir, corpus, out, skip_bad_lines=True), encoder=tiny_encoder)
    assert report.documents == 10
    assert report.manifest.count == 10
    assert [e.line for e in report.skipped] == [4, 8]
    assert json.loads((out / CONFIG_FILE).read_text())["skip_bad_lines"] is True


def test_empty_corpus_is_an_error(tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder) -> None:
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text("\n\n")
    out = tmp_path / "idx"
    with pytest.raises(DataError, match="no documents"):
        build_index(cfg_for(tiny_model_dir, corpus, out), encoder=tiny_encoder)
    assert not out.exists()
    assert debris(tmp_path) == []


def test_build_loads_the_model_when_no_encoder_is_given(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_docs, jsonl_writer
) -> None:
    corpus = jsonl_writer(tmp_path / "c.jsonl", tiny_docs[:4])
    report = build_index(cfg_for(tiny_model_dir, corpus, tmp_path / "idx", device="cpu"))
    assert report.manifest.model_fingerprint == tiny_encoder.fingerprint
    assert report.documents == 4


def test_training_sample_is_the_seeded_rows_in_corpus_order(tmp_path: Path) -> None:
    from indexer.build import SHARDS, _Work

    rng = np.random.default_rng(0)
    shards = [rng.standard_normal((n, 8)).astype(np.float32) for n in (5, 7, 3)]
    work = _Work.__new__(_Work)  # only the shard files and the progress record matter here
    work.path = tmp_path
    (tmp_path / SHARDS).mkdir()
    work.state = {"rows_done": 15, "shards": []}
    for i, arr in enumerate(shards):
        np.save(tmp_path / SHARDS / f"s{i}.npy", arr)
        work.state["shards"].append({"file": f"s{i}.npy", "rows": len(arr)})
    every = np.vstack(shards)
    picks = np.sort(np.random.default_rng(42).choice(15, size=6, replace=False))
    sample = work.sample(6, seed=42)
    assert sample.dtype == np.float32 and sample.flags.c_contiguous
    np.testing.assert_array_equal(sample, every[picks])
    np.testing.assert_array_equal(work.sample(100, seed=1), every)  # capped at the corpus


def test_chunk_size_defaults_to_the_engines_own() -> None:
    from core.errors import InvalidInputError
    from indexer.build import CHUNK_SIZES, BuildConfig

    assert BuildConfig("m", "c", "o").chunk_size == CHUNK_SIZES["local"] == 4096
    assert BuildConfig("m", "c", "o", engine="ray").chunk_size == CHUNK_SIZES["ray"] == 50_000
    assert BuildConfig("m", "c", "o", engine="ray", chunk_size=300).chunk_size == 300  # asked for: kept
    with pytest.raises(InvalidInputError, match="engine"):
        BuildConfig("m", "c", "o", engine="spark")
