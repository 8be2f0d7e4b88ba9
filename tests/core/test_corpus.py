"""Corpus readers: formats, exact file:line errors, skipping bad rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.corpus import detect_format, read_corpus
from core.errors import DataError
from core.index.doc_store import Document


def lines_of(path: Path, **kwargs) -> list[tuple[int, Document]]:
    return [(row.line, row.doc) for row in read_corpus(path, **kwargs)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = [
    json.dumps({"id": "a", "text": "alpha text", "metadata": {"k": 1}}),
    json.dumps({"id": 7, "text": "integer id"}),
    json.dumps({"id": "c", "text": "null metadata", "metadata": None}),
]


def test_jsonl_reads_documents_in_order(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", "\n".join(GOOD) + "\n")
    assert lines_of(path) == [
        (1, Document("a", "alpha text", {"k": 1})),
        (2, Document("7", "integer id", {})),
        (3, Document("c", "null metadata", {})),
    ]


def test_jsonl_blank_lines_are_ignored_but_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", "\n" + GOOD[0] + "\n   \n\n" + GOOD[1] + "\n\n")
    assert [(line, doc.id) for line, doc in lines_of(path)] == [(2, "a"), (5, "7")]


def test_jsonl_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(GOOD).encode() + b"\r\n")
    assert [doc.id for _, doc in lines_of(path)] == ["a", "7", "c"]


def test_csv_reads_id_text_and_metadata_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.csv", 'id,text,lang\n1,"hello, world",en\n\n2,"line one\nline two",fr\n3,third,de\n'
    )
    assert lines_of(path) == [
        (2, Document("1", "hello, world", {"lang": "en"})),
        (4, Document("2", "line one\nline two", {"lang": "fr"})),
        (6, Document("3", "third", {"lang": "de"})),
    ]


def test_tsv_reads(tmp_path: Path) -> None:
    path = write(tmp_path / "c.tsv", "text\tid\nfirst doc\tx1\nsecond doc\tx2\n")
    assert lines_of(path) == [(2, Document("x1", "first doc", {})), (3, Document("x2", "second doc", {}))]


def test_format_override_and_detection(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.txt", GOOD[0] + "\n")
    assert [doc.id for _, doc in lines_of(path, fmt="jsonl")] == ["a"]
    assert detect_format(Path("x.JSONL")) == "jsonl"
    assert detect_format(Path("x.ndjson")) == "jsonl"
    assert detect_format(Path("x.tsv")) == "tsv"
    assert detect_format(Path("x.csv"), "auto") == "csv"


def test_unknown_extension_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.txt", GOOD[0] + "\n")
    with pytest.raises(DataError) as info:
        list(read_corpus(path))
    assert "corpus.txt" in info.value.message
    assert "extension" in info.value.message
    with pytest.raises(DataError, match="unknown corpus format 'xml'"):
        list(read_corpus(path, fmt="xml"))


def test_missing_corpus_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        list(read_corpus(tmp_path / "absent.jsonl"))


BAD_ROWS = [
    ('{"id": "x", "text": "broken"', "invalid JSON"),
    ('{"text": "no id here"}', "'id'"),
    ('{"id": "x"}', "'text'"),
    ('{"id": "x", "text": ""}', "'text'"),
    ('{"id": "x", "text": "   "}', "'text'"),
    ('{"id": "", "text": "empty id"}', "'id' is empty"),
    ('{"id": true, "text": "bool id"}', "'id'"),
    ('{"id": "x", "text": "t", "metadata": [1]}', "metadata"),
    ('["not", "an", "object"]', "expected a JSON object"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_ROWS)
def test_bad_jsonl_row_names_file_and_line(tmp_path: Path, bad: str, reason: str) -> None:
    path = write(tmp_path / "bad.jsonl", "\n".join([GOOD[0], "", GOOD[1], bad, GOOD[2]]) + "\n")
    with pytest.raises(DataError) as info:
        list(read_corpus(path))
    err = info.value
    assert err.line == 4
    assert "bad.jsonl:4:" in err.message
    assert reason in err.message
    assert err.path == str(path)


def test_skip_bad_lines_records_each_with_its_line(tmp_path: Path) -> None:
    rows = [GOOD[0], BAD_ROWS[0][0], "", GOOD[1], BAD_ROWS[1][0], BAD_ROWS[3][0], GOOD[2]]
    path = write(tmp_path / "bad.jsonl", "\n".join(rows) + "\n")
    skipped: list[DataError] = []
    got = lines_of(path, skip_bad_lines=True, skipped=skipped)
    assert [(line, doc.id) for line, doc in got] == [(1, "a"), (4, "7"), (7, "c")]
    assert [e.line for e in skipped] == [2, 5, 6]
    assert all(e.message.startswith(f"{path}:{e.line}: ") for e in skipped)


def test_skip_bad_lines_without_a_list_still_skips(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", "\n".join([BAD_ROWS[0][0], GOOD[0]]) + "\n")
    assert [doc.id for _, doc in lines_of(path, skip_bad_lines=True)] == ["a"]


def test_csv_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", 'id,text\n1,ok\n2,"multi\nline"\n3,too,many\n4,\n5,fine\n')
    with pytest.raises(DataError) as info:
        list(read_corpus(path))
    assert "bad.csv:5:" in info.value.message
    assert "expected 2 fields, got 3" in info.value.message

    skipped: list[DataError] = []
    got = lines_of(path, skip_bad_lines=True, skipped=skipped)
    assert [(line, doc.id) for line, doc in got] == [(2, "1"), (3, "2"), (7, "5")]
    assert [e.line for e in skipped] == [5, 6]
    assert "'text'" in skipped[1].message


def test_csv_header_must_have_id_and_text(tmp_path: Path) -> None:
    path = write(tmp_path / "h.csv", "key,body\n1,hello\n")
    with pytest.raises(DataError) as info:
        list(read_corpus(path))
    assert "h.csv:1:" in info.value.message
    assert "'id' and 'text'" in info.value.message


def test_empty_csv_yields_nothing(tmp_path: Path) -> None:
    assert lines_of(write(tmp_path / "e.csv", "")) == []


@pytest.mark.parametrize("kind", ["jsonl", "csv"])
def test_invalid_utf8_names_the_right_line(tmp_path: Path, kind: str) -> None:
    """A bad byte on line 4 must be reported at :4, not wherever the decoder's read-ahead was."""
    path = tmp_path / f"enc.{kind}"
    if kind == "jsonl":
        rows = [json.dumps({"id": str(i), "text": f"row {i}"}).encode() for i in range(1, 6)]
        rows[3] = b'{"id": "4", "text": "bad \xff byte"}'
    else:
        rows = [b"id,text"] + [f"{i},row {i}".encode() for i in range(1, 5)]
        rows[3] = b"3,bad \xff byte"
    path.write_bytes(b"\n".join(rows) + b"\n")
    with pytest.raises(DataError) as info:
        list(read_corpus(path))
    assert info.value.line == 4
    assert f"enc.{kind}:4:" in info.value.message


def test_invalid_utf8_skipping_keeps_the_good_rows(tmp_path: Path) -> None:
    path = tmp_path / "enc.jsonl"
    rows = [json.dumps({"id": str(i), "text": f"row {i}"}).encode() for i in range(1, 6)]
    rows[3] = b'{"id": "4", "text": "bad \xff byte"}'
    path.write_bytes(b"\n".join(rows) + b"\n")
    skipped: list[DataError] = []
    got = lines_of(path, skip_bad_lines=True, skipped=skipped)
    # Lines 1-3 precede the bad byte and are valid; they must not be lost.
    assert [doc.id for _, doc in got][:3] == ["1", "2", "3"]
    assert [e.line for e in skipped] == [4]


def test_smart_all_files_are_a_corpus(tmp_path: Path) -> None:
    path = tmp_path / "MED.ALL"
    path.write_text(".I 1\r\n.W\r\nfirst doc\r\ntext\r\n.I 7\r\n.T\r\ntitle\r\n.W\r\nbody\r\n")
    rows = list(read_corpus(path))
    assert [(r.line, r.doc.id, r.doc.text) for r in rows] == [
        (1, "1", "first doc text"),
        (5, "7", "title body"),
    ]
    bad = tmp_path / "BAD.ALL"
    bad.write_text("stray text\n.I 1\n.W\nx\n")
    with pytest.raises(DataError, match=r"BAD\.ALL:1"):
        list(read_corpus(bad))
