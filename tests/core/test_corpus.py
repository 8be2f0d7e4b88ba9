"""Corpus readers: formats, exact file:line errors, skipping bad rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.corpus import detect_format, read_corpus
from core.errors import DataError
from core.index.doc_store import Document


def lines_of(path: Path, **kwargs: Any) -> list[tuple[int, Document]]:
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


# Real MSR Paraphrase Corpus sentences (msr-para-test.tsv, lines 20, 22 and 34), embedded verbatim:
# fields open with a quote mark, and the last one never closes its quote.
MRPC_QUOTED = [
    "\"I'm delighted that David Chase has decided to give us another chapter in the great 'Sopranos' "
    'saga," HBO chairman and chief executive Chris Albrecht said.',
    '"There\'s no reason for you to keep your skills up," the judge told the convicted crack cocaine '
    "kingpin.",
    "\"We're in the Stanley Cup finals, and it was a little bit embarrassing the way we played in the first "
    "two games.",
]


def test_tsv_quote_marks_are_text_one_row_per_line(tmp_path: Path) -> None:
    """TSV has no quoting: a field that opens with a quote mark keeps it, and an unclosed one does
    not swallow the tabs and lines after it (csv's default quoting did both)."""
    rows = [
        "id\ttext\tsource",
        f"m20\t{MRPC_QUOTED[0]}\tmrpc:20",
        f"m22\t{MRPC_QUOTED[1]}\tmrpc:22",
        f"m34\t{MRPC_QUOTED[2]}\tmrpc:34",
        'q\t"unclosed quote and more text\tmade-up',
        "last\tplain text\tmade-up",
    ]
    path = tmp_path / "quotes.tsv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode())  # CRLF, as the MRPC files are
    assert lines_of(path) == [
        (2, Document("m20", MRPC_QUOTED[0], {"source": "mrpc:20"})),
        (3, Document("m22", MRPC_QUOTED[1], {"source": "mrpc:22"})),
        (4, Document("m34", MRPC_QUOTED[2], {"source": "mrpc:34"})),
        (5, Document("q", '"unclosed quote and more text', {"source": "made-up"})),
        (6, Document("last", "plain text", {"source": "made-up"})),
    ]


def test_csv_still_honours_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'id,text,lang\n1,"He said ""yes, later"", then left",en\n2,plain,fr\n')
    assert lines_of(path) == [
        (2, Document("1", 'He said "yes, later", then left', {"lang": "en"})),
        (3, Document("2", "plain", {"lang": "fr"})),
    ]


def nested(levels: int) -> dict:
    """Metadata ``levels`` objects deep (the top-level object is level 1)."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


STORE_RULE_ROWS = [
    (json.dumps({"id": "x", "text": "t", "metadata": nested(33)}), "nested 33 levels deep; the limit is 32"),
    (json.dumps({"id": "x", "text": "t", "metadata": {"n": 2**63}}), "integer outside 64 bits"),
    (json.dumps({"id": "x", "text": "t", "metadata": {"n": -(2**63) - 1}}), "integer outside 64 bits"),
    ('{"id": "\\ud800", "text": "t"}', "id holds a lone UTF-16 surrogate"),
    (json.dumps({"id": "x" * 513, "text": "t"}), "id has 513 characters; the limit is 512"),
    (json.dumps({"id": "..", "text": "t"}), "not addressable in a URL path"),
    ('{"id": "x", "text": "bad \\udfff"}', "'text' holds a lone UTF-16 surrogate"),
    ('{"id": "x", "text": "t", "metadata": {"k": "\\ud800"}}', "lone UTF-16 surrogate"),
    ('{"id": "x", "text": "t", "metadata": {"\\ud800": 1}}', "key with a lone UTF-16 surrogate"),
    ('{"id": "x", "text": "t", "metadata": {"v": NaN}}', "not a finite number"),
    ('{"id": "x", "text": "t", "metadata": {"v": [-Infinity]}}', "not a finite number"),
    ('{"id": "x", "text": "t", "metadata": {"n": ' + "1" * 5000 + "}}", "invalid JSON (Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "invalid JSON (nested too deeply)"),
]


@pytest.mark.parametrize(("bad", "reason"), STORE_RULE_ROWS)
def test_jsonl_rows_the_store_would_refuse_name_file_and_line(tmp_path: Path, bad: str, reason: str) -> None:
    path = write(tmp_path / "bad.jsonl", "\n".join([GOOD[0], "", GOOD[1], bad, GOOD[2]]) + "\n")
    with pytest.raises(DataError) as info:
        list(read_corpus(path))
    assert info.value.line == 4
    assert info.value.message.startswith(f"{path}:4: ")
    assert reason in info.value.message


def test_jsonl_store_limits_themselves_are_accepted(tmp_path: Path) -> None:
    edge = {"deep": nested(31), "max": 2**63 - 1, "min": -(2**63), "big": "1" * 5000, "f": 1e308}
    path = write(tmp_path / "edge.jsonl", json.dumps({"id": "e", "text": "edge", "metadata": edge}) + "\n")
    assert lines_of(path) == [(1, Document("e", "edge", edge))]


def test_skip_bad_lines_records_store_refusals_and_keeps_good_rows(tmp_path: Path) -> None:
    bad = [row for row, _ in STORE_RULE_ROWS]
    path = write(tmp_path / "bad.jsonl", "\n".join([GOOD[0], *bad, GOOD[1], "", GOOD[2]]) + "\n")
    skipped: list[DataError] = []
    got = lines_of(path, skip_bad_lines=True, skipped=skipped)
    n = len(bad)
    assert [(line, doc.id) for line, doc in got] == [(1, "a"), (n + 2, "7"), (n + 4, "c")]
    assert [e.line for e in skipped] == list(range(2, n + 2))
    for err, (_, reason) in zip(skipped, STORE_RULE_ROWS, strict=True):
        assert err.message.startswith(f"{path}:{err.line}: ") and reason in err.message


def test_seen_ids_names_both_lines_of_a_repeat() -> None:
    from core.corpus import CorpusRow, SeenIds
    from core.errors import DataError
    from core.index.doc_store import Document

    seen = SeenIds("corpus.jsonl")
    seen.add(CorpusRow(3, Document("a", "x")))
    seen.add(CorpusRow(4, Document("b", "y")))
    with pytest.raises(DataError) as info:
        seen.add(CorpusRow(9, Document("a", "z")))
    assert "corpus.jsonl:9" in str(info.value) and "first seen on line 3" in str(info.value)
    assert seen.lines == {"a": 3, "b": 4}
