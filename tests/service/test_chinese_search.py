"""Search in Chinese end to end: an encoder given a Chinese vocabulary (train extend-vocab), an
index of Chinese documents built with it, and /search, dense and hybrid, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.build import BuildConfig, build_index
from training.vocab import extend_vocab

# Real LCQMC dev questions as documents.
DOCS = [
    ("q1", "开初婚未育证明怎么弄？"),
    ("q2", "谁知道她是网络美女吗？"),
    ("q3", "人和畜生的区别是什么？"),
    ("q4", "男孩喝女孩的尿的故事"),
    ("q5", "这种图片是用什么软件制作的？"),
]


def test_chinese_documents_are_found_by_meaning_and_by_their_characters(
    tiny_model_dir: Path, tmp_path: Path, make_client
) -> None:
    model = tmp_path / "zh"
    # init random: copies of [UNK] (the default) are all one vector until MLM adaptation moves
    # them, so the untrained tiny model could not tell one new character from another.
    report = extend_vocab(tiny_model_dir, [t for _, t in DOCS], model, init="random")
    assert report.unk_rate_after == 0.0
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in DOCS))
    index = tmp_path / "index"
    build_index(BuildConfig(model=str(model), corpus=str(corpus), output=str(index), progress=False))
    client = make_client(index, model_dir=model)
    for doc_id, text in DOCS:  # a document's own text is its nearest neighbour (score 1)
        hits = client.post("/search", json={"query": text, "k": 1}).json()["hits"]
        assert hits[0]["id"] == doc_id and abs(hits[0]["score"] - 1.0) < 1e-3
    body = {"query": "图片软件", "k": 2, "hybrid": True, "alpha": 0.0}  # BM25 alone orders
    assert client.post("/search", json=body).json()["hits"][0]["id"] == "q5"
    body = {"query": "初婚证明", "k": 5, "hybrid": True}
    assert client.post("/search", json=body).json()["hits"][0]["id"] == "q1"
