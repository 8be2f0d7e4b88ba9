"""Line-by-line reading of user text files, decoding each line on its own.

Text-mode files decode ahead in blocks, so one bad byte is reported on the wrong line and ends
the whole read. Decoding per line names the right line and lets ``--skip-bad-lines`` go on.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from core.errors import DataError

_BOM = b"\xef\xbb\xbf"


def iter_lines(path: Path, keepends: bool = False) -> Iterator[tuple[int, str | DataError]]:
    """Yield ``(line_number, text)``; a line that is not UTF-8 yields a :class:`DataError` instead.
    A leading byte-order mark is dropped; without ``keepends`` line endings (LF or CRLF) are too."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, DataError(path, number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            yield number, text if keepends else text.rstrip("\r\n")


def iter_csv_rows(path: Path, delimiter: str) -> Iterator[tuple[int, list[str] | DataError]]:
    """Yield ``(first_line_of_row, cells)`` for every row, the header included; an undecodable
    line or a malformed row yields a :class:`DataError` in its place. Blank rows are skipped.

    A tab ``delimiter`` reads TSV: no quoting at all, one row per line, and a quote mark is a
    character (``"I'm delighted," he said`` stays as it is; MRPC and the STS files are full of
    such fields). Any other delimiter reads CSV, whose quoted fields may hold the delimiter and
    span lines; line numbers stay right across them."""
    csv.field_size_limit(sys.maxsize)
    bad: list[DataError] = []

    def lines() -> Iterator[str]:
        for _, text in iter_lines(path, keepends=True):
            if isinstance(text, DataError):
                bad.append(text)
                yield "\n"  # a blank row in its place keeps csv's line count aligned with the file
            else:
                yield text

    if delimiter == "\t":
        reader = csv.reader(lines(), delimiter=delimiter, quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines(), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL)
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, DataError(path, start, f"unreadable row ({exc})")
            continue
        if bad:
            err = bad.pop(0)
            yield err.line or start, err
            continue
        if any(cell.strip() for cell in row):
            yield start, row
