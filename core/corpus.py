"""Streaming corpus readers: JSONL (``{"id", "text", "metadata"}``), CSV and TSV (``id,text`` columns).

Rows are yielded one at a time with their line number so that memory stays flat and every
error can name the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.index.doc_rules import id_problem, metadata_problem, text_problem
from core.index.doc_store import Document
from core.smart import read_smart_records
from core.textfile import iter_csv_rows, iter_lines

FORMATS = ("jsonl", "csv", "tsv", "smart")
_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".all": "smart",  # the classic IR collections' SMART files (MED.ALL, ADI.ALL)
}


@dataclass
class CorpusRow:
    line: int
    doc: Document


class SeenIds:
    """The ids of a corpus read so far, each with its line: a repeat is a DataError naming both
    lines. The one duplicate rule of `index build` and `index add`."""

    def __init__(self, corpus: str) -> None:
        self.corpus = corpus
        self.lines: dict[str, int] = {}

    def add(self, row: CorpusRow) -> None:
        first = self.lines.get(row.doc.id)
        if first is not None:
            raise DataError(
                self.corpus, row.line, f"duplicate id {row.doc.id!r} (first seen on line {first})"
            )
        self.lines[row.doc.id] = row.line


def detect_format(path: Path, fmt: str | None = None) -> str:
    if fmt and fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(path, None, f"unknown corpus format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in _EXTENSIONS:
            return _EXTENSIONS[suffix]
    raise DataError(
        path, None, "cannot tell the corpus format from the extension; use .jsonl, .csv, .tsv or .ALL (SMART)"
    )


def _doc_from(obj: Any, path: Path, line: int) -> Document:
    if not isinstance(obj, dict):
        raise DataError(path, line, f"expected a JSON object, got {type(obj).__name__}")
    doc_id = obj.get("id")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise DataError(path, line, "missing or invalid 'id' (a non-empty string or an integer)")
    doc_id = str(doc_id)
    if not doc_id.strip():
        raise DataError(path, line, "'id' is empty")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, f"document {doc_id!r}: missing or empty 'text'")
    metadata = obj.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise DataError(path, line, f"document {doc_id!r}: 'metadata' must be a JSON object")
    # The store's own rules (core.index.doc_rules): what is stored must read back and filter.
    problem = id_problem(doc_id) or text_problem(text, "'text'") or metadata_problem(metadata)
    if problem:
        raise DataError(path, line, f"document {doc_id!r}: {problem}")
    return Document(doc_id, text, metadata)


def _read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    for line_no, raw in iter_lines(path):
        if isinstance(raw, DataError):
            yield line_no, raw
            continue
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            obj = DataError(path, line_no, f"invalid JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            obj = DataError(path, line_no, "invalid JSON (nested too deeply)")
        except ValueError as exc:  # an integer past Python's digit limit
            obj = DataError(path, line_no, f"invalid JSON ({exc})")
        yield line_no, obj


def _read_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, Any]]:
    rows = iter_csv_rows(path, delimiter)
    first = next(rows, None)
    if first is None:
        return
    if isinstance(first[1], DataError):
        raise first[1]
    cols = [c.strip() for c in first[1]]
    if "id" not in cols or "text" not in cols:
        raise DataError(path, first[0], f"header must have 'id' and 'text' columns, got {cols}")
    for start, row in rows:
        if isinstance(row, DataError):
            yield start, row
        elif len(row) != len(cols):
            yield start, DataError(path, start, f"expected {len(cols)} fields, got {len(row)}")
        else:
            record = dict(zip(cols, row, strict=True))
            meta = {k: v for k, v in record.items() if k not in ("id", "text")}
            yield start, {"id": record["id"], "text": record["text"], "metadata": meta}


def read_corpus(
    path: str | Path,
    fmt: str | None = None,
    skip_bad_lines: bool = False,
    skipped: list[DataError] | None = None,
) -> Iterator[CorpusRow]:
    """Yield documents in file order. Bad rows raise :class:`DataError` unless ``skip_bad_lines``;
    skipped rows are appended to ``skipped`` so the caller can count and report them. The row
    readers yield a row's error in place of the row, so that skipping can go on past it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "corpus file not found")
    kind = detect_format(path, fmt)
    if kind == "smart":
        rows: Iterator[tuple[int, Any]] = (
            (line, {"id": rec_id, "text": text}) for line, rec_id, text in read_smart_records(path)
        )
    elif kind == "jsonl":
        rows = _read_jsonl(path)
    else:
        rows = _read_delimited(path, "," if kind == "csv" else "\t")
    while True:
        try:
            item = next(rows, None)
        except DataError as err:
            # A header error ends the stream: there is nothing to read rows against.
            if not skip_bad_lines:
                raise
            if skipped is not None:
                skipped.append(err)
            return
        if item is None:
            return
        line, obj = item
        try:
            if isinstance(obj, DataError):
                raise obj
            yield CorpusRow(line, _doc_from(obj, path, line))
        except DataError as err:
            if not skip_bad_lines:
                raise
            if skipped is not None:
                skipped.append(err)
