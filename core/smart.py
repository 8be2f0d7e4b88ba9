"""The SMART tagged-text format of the classic IR collections (ADI, MEDLINE, CISI, ...).

Records start with ``.I <id>``; fields start with ``.T`` (title), ``.W`` (text), ``.A``, ``.B``...
Files use CRLF endings. Used for documents (``*.ALL``) and queries (``*.QRY``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.errors import DataError
from core.textfile import iter_lines

TEXT_FIELDS = ("T", "W")


def read_smart(path: str | Path, fields: tuple[str, ...] = TEXT_FIELDS) -> Iterator[tuple[str, str]]:
    """Yield ``(id, text)``: the named fields of each record joined, whitespace collapsed."""
    for _, rec_id, text in read_smart_records(path, fields):
        yield rec_id, text


def read_smart_records(
    path: str | Path, fields: tuple[str, ...] = TEXT_FIELDS
) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line of its .I, id, text)`` per record."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    rec_id: str | None = None
    start = 0
    field: str | None = None
    parts: list[str] = []
    for line_no, line in iter_lines(path):
        if isinstance(line, DataError):
            raise line
        if line.startswith(".I"):
            if rec_id is not None:
                yield start, rec_id, " ".join(" ".join(parts).split())
            rec_id, start = line[2:].strip(), line_no
            if not rec_id:
                raise DataError(path, line_no, "a .I line without an id")
            field, parts = None, []
        elif len(line) >= 2 and line[0] == "." and line[1].isalpha() and line[2:].strip() == "":
            field = line[1]
        elif rec_id is None:
            if line.strip():
                raise DataError(path, line_no, "text before the first .I record")
        elif field in fields:
            parts.append(line)
    if rec_id is not None:
        yield start, rec_id, " ".join(" ".join(parts).split())
