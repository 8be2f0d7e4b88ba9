"""``index build --shards N`` and add / delete / compact / stats on a sharded index folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import indexer.sharded as sharded
from core.encoder import Encoder
from core.errors import DataError, IndexFormatError
from core.index.folder import IndexFolder
from core.index.sharding import ShardedManifest, shard_of
from indexer.build import BuildConfig, build_index
from indexer.sharded import build_sharded
from indexer.update import add_corpus, compact, delete_ids, stats
from semsearch.cli import main


def _cfg(model: Path, corpus: Path, out: Path, **kw: Any) -> BuildConfig:
    return BuildConfig(
        model=str(model), corpus=str(corpus), output=str(out), progress=False, precision="fp32", **kw
    )


def _ids(folder: Path) -> set[str]:
    index = IndexFolder.open(folder)
    try:
        return {doc.id for batch in index.store.iter_live() for _iid, doc in batch}
    finally:
        index.close()


def _record_builds(monkeypatch: pytest.MonkeyPatch, dies_on: int | None = None) -> list[int]:
    """Which shards build_sharded builds; the first build of shard ``dies_on`` is interrupted
    (as a kill would stop it)."""
    real_build = sharded.build_index
    built: list[int] = []
    armed = [dies_on]

    def recording(cfg: BuildConfig, *args: Any) -> Any:
        if armed and cfg.only_shard == armed[0]:
            armed.clear()
            raise KeyboardInterrupt
        built.append(cfg.only_shard)
        return real_build(cfg, *args)

    monkeypatch.setattr(sharded, "build_index", recording)
    return built


def _merged_search(index: Path, query: np.ndarray, k: int) -> list[tuple[str, float]]:
    """What a fan-out does: every shard's top k, merged by score."""
    hits = []
    for path in ShardedManifest.read(index).shard_paths(index):
        folder = IndexFolder.open(path)
        try:
            hits.extend((h.id, h.score) for h in folder.search(query, k)[0])
        finally:
            folder.close()
    return sorted(hits, key=lambda h: -h[1])[:k]


def test_build_puts_each_document_in_its_shard_and_search_matches_one_index(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_corpus: Path,
    tiny_docs: list[dict[str, Any]],
    tiny_encoder: Encoder,
) -> None:
    out = tmp_path / "sharded"
    report = build_sharded(_cfg(tiny_model_dir, tiny_corpus, out, shards=3), tiny_encoder)
    assert report.documents == 50
    top = ShardedManifest.read(out)
    assert top.shards == 3 and top.model_fingerprint == tiny_encoder.fingerprint and top.generation == 1
    for i, path in enumerate(top.shard_paths(out)):
        assert _ids(path) == {d["id"] for d in tiny_docs if shard_of(d["id"], 3) == i}
    info = stats(out)
    assert info["shards"] == 3 and info["documents"] == 50
    assert sum(s["documents"] for s in info["shard_stats"].values()) == 50
    # Flat shards merged by score give exactly what one flat index of the corpus gives.
    single = tmp_path / "single"
    build_index(_cfg(tiny_model_dir, tiny_corpus, single), tiny_encoder)
    one = IndexFolder.open(single)
    try:
        for doc in tiny_docs[::7]:
            q = tiny_encoder.encode([doc["text"]])
            expected = [(h.id, h.score) for h in one.search(q, 10)[0]]
            got = _merged_search(out, q, 10)
            assert [i for i, _ in got] == [i for i, _ in expected]
            np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-5)
    finally:
        one.close()
    # Readers of one index folder say what a sharded one is rather than failing inside it.
    with pytest.raises(IndexFormatError, match="a sharded index of 3 shards"):
        IndexFolder.open(out)


def test_writes_route_to_their_shard(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_corpus: Path,
    tiny_docs: list[dict[str, Any]],
    tiny_encoder: Encoder,
    jsonl_writer,
) -> None:
    out = tmp_path / "sharded"
    build_sharded(_cfg(tiny_model_dir, tiny_corpus, out, shards=2), tiny_encoder)
    new = [{"id": f"new-{i}", "text": tiny_docs[i]["text"] + " again"} for i in range(6)]
    changed = [{"id": tiny_docs[0]["id"], "text": "the red guitar in the park ."}]
    report = add_corpus(out, jsonl_writer(tmp_path / "more.jsonl", new + changed), device="cpu")
    assert (report.added, report.replaced) == (6, 1)
    paths = ShardedManifest.read(out).shard_paths(out)
    for doc in [*new, *changed]:
        home = shard_of(doc["id"], 2)
        assert doc["id"] in _ids(paths[home]) and doc["id"] not in _ids(paths[1 - home])
    result = delete_ids(out, ["new-0", "new-1", tiny_docs[3]["id"], "no-such-id"])
    assert result.deleted == 3 and result.missing == ["no-such-id"]
    assert stats(out)["documents"] == 50 + 6 - 3
    manifests = compact(out)
    assert len(manifests) == 2 and sum(m.count for m in manifests) == 53
    assert stats(out)["tombstones"] == 0


def test_an_interrupted_build_keeps_finished_shards_and_the_old_index(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_corpus: Path,
    tiny_encoder: Encoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "sharded"
    build_sharded(_cfg(tiny_model_dir, tiny_corpus, out, shards=3), tiny_encoder)
    before = (out / "manifest.json").read_text()
    built = _record_builds(monkeypatch, dies_on=2)
    cfg = _cfg(tiny_model_dir, tiny_corpus, out, shards=3, seed=7)  # a rebuild: new settings
    with pytest.raises(KeyboardInterrupt):
        build_sharded(cfg, tiny_encoder)
    assert built == [0, 1]
    assert (out / "manifest.json").read_text() == before  # the published index is untouched
    assert stats(out)["documents"] == 50
    built = _record_builds(monkeypatch)
    report = build_sharded(cfg, tiny_encoder)
    assert built == [2]  # shards 0 and 1 were kept from the interrupted run
    assert report.documents == 50 and ShardedManifest.read(out).generation == 2


def test_more_shards_than_documents_leaves_empty_shards_that_take_writes(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, jsonl_writer
) -> None:
    corpus = jsonl_writer(
        tmp_path / "two.jsonl", [{"id": "a", "text": "the red guitar"}, {"id": "b", "text": "a blue moon"}]
    )
    out = tmp_path / "sharded"
    build_sharded(_cfg(tiny_model_dir, corpus, out, shards=8), tiny_encoder)
    info = stats(out)
    assert info["documents"] == 2 and sorted(s["documents"] for s in info["shard_stats"].values())[-1] >= 1
    empty = next(i for i in range(8) if i not in (shard_of("a", 8), shard_of("b", 8)))
    doc_id = next(f"x{i}" for i in range(1000) if shard_of(f"x{i}", 8) == empty)
    add_corpus(
        out, jsonl_writer(tmp_path / "one.jsonl", [{"id": doc_id, "text": "the green star"}]), device="cpu"
    )
    assert stats(out)["shard_stats"][f"shard-{empty:03d}"]["documents"] == 1


def test_an_empty_corpus_is_an_error_and_publishes_nothing(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder
) -> None:
    corpus = tmp_path / "empty.jsonl"
    corpus.write_text("")
    with pytest.raises(DataError, match="no documents"):
        build_sharded(_cfg(tiny_model_dir, corpus, tmp_path / "out", shards=2), tiny_encoder)
    assert not (tmp_path / "out").exists()


def test_cli_build_stats_add_delete_compact(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path, jsonl_writer, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "idx"
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--precision", "fp32", "--no-progress"]
    assert (
        main(["index", "build", "--corpus", str(tiny_corpus), "--output", str(out), "--shards", "2", *common])
        == 0
    )
    assert "2 shards of" in capsys.readouterr().out
    assert main(["index", "stats", "--index", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shards"] == 2 and info["documents"] == 50
    more = jsonl_writer(tmp_path / "more.jsonl", [{"id": "z1", "text": "the red guitar"}])
    assert main(["index", "add", "--index", str(out), "--corpus", str(more), "--device", "cpu"]) == 0
    assert main(["index", "delete", "--index", str(out), "--ids", "z1", "nope"]) == 0
    assert "deleted 1" in capsys.readouterr().out
    assert main(["index", "compact", "--index", str(out)]) == 0
    assert "compacted 2 shards to 50 documents" in capsys.readouterr().out
    assert (
        main(["index", "build", "--corpus", str(tiny_corpus), "--output", str(out), "--shards", "0", *common])
        == 1
    )
    assert "--shards must be between 1 and 256" in capsys.readouterr().err


def test_fresh_discards_the_finished_shards_of_an_interrupted_build(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_corpus: Path,
    tiny_encoder: Encoder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "sharded"
    built = _record_builds(monkeypatch, dies_on=1)
    with pytest.raises(KeyboardInterrupt):
        build_sharded(_cfg(tiny_model_dir, tiny_corpus, out, shards=2), tiny_encoder)
    assert built == [0] and not out.exists()
    built.clear()
    build_sharded(_cfg(tiny_model_dir, tiny_corpus, out, shards=2, resume=False), tiny_encoder)
    assert built == [0, 1] and stats(out)["documents"] == 50


def test_eval_retrieval_takes_a_sharded_index(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path, tiny_docs: list[dict[str, Any]], capsys
) -> None:
    queries = tmp_path / "q.tsv"
    queries.write_text("".join(f"q{i}\t{d['text']}\n" for i, d in enumerate(tiny_docs[::4])))
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("".join(f"q{i} 0 {d['id']} 1\n" for i, d in enumerate(tiny_docs[::4])))
    reports = {}
    for shards in ("1", "3"):
        index = tmp_path / f"idx{shards}"
        build = ["index", "build", "--model", str(tiny_model_dir), "--corpus", str(tiny_corpus)]
        assert (
            main([*build, "--output", str(index), "--shards", shards, "--precision", "fp32", "--no-progress"])
            == 0
        )
        out = tmp_path / f"eval{shards}.json"
        argv = ["eval", "retrieval", "--index", str(index), "--queries", str(queries), "--qrels", str(qrels)]
        assert main([*argv, "--output", str(out)]) == 0
        reports[shards] = json.loads(out.read_text())["per_query"]
    assert reports["3"] == reports["1"]  # the same rankings, query by query
    argv = [
        "eval",
        "retrieval",
        "--index",
        str(tmp_path / "idx3"),
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
    ]
    assert main([*argv, "--mode", "bm25"]) != 0
    assert "does not take a sharded index" in capsys.readouterr().err


def test_a_resumed_auto_build_keeps_the_precision_it_chose(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_corpus: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "sharded"
    cfg = _cfg(tiny_model_dir, tiny_corpus, out, shards=2)
    cfg.precision = "auto"
    _record_builds(monkeypatch, dies_on=1)
    with pytest.raises(KeyboardInterrupt):
        build_sharded(cfg, Encoder.load(tiny_model_dir, "cpu"))
    state = json.loads((out.parent / f".{out.name}.building-sharded" / sharded.STATE_FILE).read_text())
    measured: list[str] = []
    monkeypatch.setattr(sharded, "sample_texts", lambda rows: measured.append("sampled") or [])
    built = _record_builds(monkeypatch)
    build_sharded(cfg, Encoder.load(tiny_model_dir, "cpu"))
    assert built == [1] and not measured  # shard 0 kept, nothing measured again
    assert ShardedManifest.read(out).precision == state["precision"]
    assert not (out / sharded.STATE_FILE).exists()
