"""The bundled demo corpus made from the running Python's documentation."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from indexer.demo_corpus import MIN_CHARS, iter_demo_documents, split_passages, write_demo_corpus


@pytest.fixture(scope="module")
def demo_docs() -> list[dict[str, Any]]:
    return list(iter_demo_documents())


def test_split_passages_respects_max_words() -> None:
    text = "\n\n".join(
        [
            "one two three",
            " ".join(f"w{i}" for i in range(25)),  # longer than max: must be cut
            "four five",
            "six   seven\teight nine",
        ]
    )
    passages = split_passages(text, max_words=10)
    assert all(len(p.split()) <= 10 for p in passages)
    # Nothing lost, nothing reordered.
    assert " ".join(" ".join(p.split()) for p in passages).split() == text.split()
    assert passages[0] == "one two three"
    assert passages[1] == " ".join(f"w{i}" for i in range(10))


def test_split_passages_groups_short_paragraphs() -> None:
    passages = split_passages("a b\n\nc d\n\n\n\ne f g h i j k", max_words=6)
    assert passages == ["a b\n\nc d", "e f g h i j", "k"]


def test_split_passages_property_random() -> None:
    rng = random.Random(3)
    for _ in range(200):
        max_words = rng.randint(1, 12)
        paragraphs = [
            " ".join(f"t{rng.randint(0, 99)}" for _ in range(rng.randint(1, 30)))
            for _ in range(rng.randint(1, 6))
        ]
        text = "\n\n".join(paragraphs)
        passages = split_passages(text, max_words=max_words)
        assert all(1 <= len(p.split()) <= max_words for p in passages), (max_words, passages)
        assert " ".join(passages).split() == text.split()


def test_split_passages_empty() -> None:
    assert split_passages("") == []
    assert split_passages("\n\n  \n\n") == []


def test_demo_documents(demo_docs: list[dict[str, Any]]) -> None:
    ids = [d["id"] for d in demo_docs]
    assert len(ids) > 1000
    assert len(set(ids)) == len(ids)
    assert any(i.startswith("builtins.open") for i in ids)
    assert any(i.startswith("topic:") for i in ids)
    for doc in demo_docs:
        assert set(doc) == {"id", "text", "metadata"}
        assert doc["metadata"]["source"] in {"language-reference", "builtins", "stdlib"}
        assert len(doc["text"]) >= MIN_CHARS
    sources = {d["metadata"]["source"] for d in demo_docs}
    assert sources == {"language-reference", "builtins", "stdlib"}
    opened = next(d for d in demo_docs if d["id"] == "builtins.open#0")
    assert opened["text"].startswith("builtins.open: ")


def test_write_demo_corpus(
    tmp_path: Path, demo_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import indexer.demo_corpus as demo

    sample = demo_docs[:40]  # the generator itself is covered above; this checks the writer
    monkeypatch.setattr(demo, "iter_demo_documents", lambda: iter(sample))
    path = tmp_path / "sub" / "demo.jsonl"
    n = write_demo_corpus(path)
    assert n == 40
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == sample
    assert not path.with_suffix(".tmp").exists()
