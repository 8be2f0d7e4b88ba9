"""Pseudo-query relevance pairs from an unlabelled corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import DataError, InvalidInputError
from semsearch.cli import main
from training.pseudo_queries import PseudoQueryConfig, make_pairs, sentences

TOPICS = {
    "bread": "bread and soup from the oven . the garlic and onion go in the pasta . cheese and butter melt .",
    "stars": "stars and planets in the galaxy . the moon is in orbit around the sun . a comet and a star .",
    "code": "python code with a bug . the compiler finds the variable in the loop . the server runs code .",
    "sport": "the team scores a goal . the player and the coach are at the stadium . the match ends .",
    "music": "the band plays a song . guitar piano and drum make the melody . a violin at the concert .",
}


def _corpus(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in TOPICS.items()))
    return path


def test_sentences_split_on_spaced_and_plain_stops() -> None:
    assert sentences("first one . second one. third? x") == ["first one .", "second one.", "third?", "x"]


def test_each_query_has_its_positive_and_negatives_from_other_documents(tmp_path: Path) -> None:
    cfg = PseudoQueryConfig(
        corpus=[str(_corpus(tmp_path))], output=str(tmp_path / "p.jsonl"), hard_negatives=2, skip=0, pool=4
    )
    pairs = make_pairs(cfg)
    assert pairs.documents == 5 and pairs.queries == 10  # a title-like first sentence + 1 cloze each
    by_query: dict[str, list[dict]] = {}
    for row in pairs.train:
        by_query.setdefault(row["sentence1"], []).append(row)
    assert len(by_query) == 10
    for query, rows in by_query.items():
        assert [r["label"] for r in rows] == [1, 0, 0, 0]  # 1 positive, 2 hard + 1 random negative
        source = next(k for k, v in TOPICS.items() if query in v)
        positive = rows[0]["sentence2"]
        assert query not in positive  # the query sentence is cut out of its positive
        assert set(positive.split()) <= set(TOPICS[source].split())
        for negative in rows[1:]:
            assert not set(negative["sentence2"].split()) - set(" ".join(TOPICS.values()).split())
            assert negative["sentence2"] not in TOPICS[source]
    assert make_pairs(cfg).train == pairs.train  # seeded


def test_smart_titles_are_queries_and_dev_documents_are_held_out(tmp_path: Path) -> None:
    smart = tmp_path / "C.ALL"
    records = "".join(
        f".I {i}\r\n.T\r\n{name} title words here\r\n.W\r\n{text}\r\n"
        for i, (name, text) in enumerate(TOPICS.items())
    )
    smart.write_text(records)
    cfg = PseudoQueryConfig(
        corpus=[str(smart)],
        output=str(tmp_path / "t.jsonl"),
        dev_output=str(tmp_path / "d.jsonl"),
        dev_fraction=0.4,
        extra_queries=0,
        skip=0,
        pool=3,
    )
    pairs = make_pairs(cfg)
    queries = {r["sentence1"] for r in pairs.train} | {r["sentence1"] for r in pairs.dev}
    assert queries == {f"{name} title words here" for name in TOPICS}
    dev_queries = {r["sentence1"] for r in pairs.dev}
    assert len(dev_queries) == 2 and not dev_queries & {r["sentence1"] for r in pairs.train}


def test_cli_writes_pairs_that_the_trainer_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.data import read_pairs

    out, dev = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    code = main(
        [
            "train",
            "pseudo-queries",
            "--corpus",
            str(_corpus(tmp_path)),
            "--output",
            str(out),
            "--dev-output",
            str(dev),
            "--dev-fraction",
            "0.2",
            "--skip",
            "0",
            "--pool",
            "3",
        ]
    )
    assert code == 0 and "5 documents" in capsys.readouterr().out
    rows = read_pairs(out) + read_pairs(dev)
    assert {r.label for r in rows} == {"0", "1"} and len(rows) == 10 * 5


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        make_pairs(PseudoQueryConfig(corpus=[str(tmp_path / "nope.jsonl")], output="x"))
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "a", "text": "only one document here ."}) + "\n")
    with pytest.raises(InvalidInputError, match="at least 2"):
        make_pairs(PseudoQueryConfig(corpus=[str(one)], output="x"))
    with pytest.raises(InvalidInputError, match="dev"):
        make_pairs(PseudoQueryConfig(corpus=[str(one)], output="x", dev_fraction=0.2))
