"""What a document store accepts: the one check every writer (index build, ``index add``, the
service's ``PUT /documents``) runs before a document is stored.

The rule is "anything accepted can be read back, searched and filtered": every later reader
(SQLite's JSON functions for filters, ``json.loads``, the service's response serialiser) must
handle what is stored. So a document is refused here, with a reason, when it holds:

- metadata nested deeper than ``max_depth`` (pydantic's serialiser stops at 255 levels and
  SQLite's JSON parser at 1,000; a stored document past either poisoned every read of it);
- an integer outside 64 bits (SQLite's JSON functions read it as a lossy float, so a filter on
  it can never match, and the filter grammar only takes 64-bit integers) or a non-finite number;
- a string with a lone UTF-16 surrogate (no UTF-8 encoder, tokenizer or SQLite takes one);
- an id of "." or "..", or longer than 512 characters (no document URL can address it);
- an object key that is not a string, or a value that is not JSON.

The walk is iterative: a hostile depth cannot exhaust Python's stack on the way to refusing it.
"""

from __future__ import annotations

import json
import math
from typing import Any

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
DEFAULT_MAX_DEPTH = 32
MAX_ID_CHARS = 512  # what GET/DELETE /documents/{id} take: a longer id could never be read back
# The ceiling a setting may raise ``max_depth`` to: a hit adds 3 levels (response, hits list, hit)
# above its metadata, and pydantic's serialiser refuses past 255.
MAX_DEPTH_CEILING = 128


def _surrogate_free(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def metadata_problem(metadata: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> str | None:
    """Why ``metadata`` cannot be stored, or None when it can. Depth 1 is the top-level object."""
    if not isinstance(metadata, dict):
        return f"metadata must be a JSON object, got {type(metadata).__name__}"
    stack: list[tuple[Any, int, str]] = [(metadata, 1, "metadata")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                return f"{where} is nested {depth} levels deep; the limit is {max_depth}"
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{where} has a key that is not a string ({key!r})"
                if not _surrogate_free(key):
                    return f"{where} has a key with a lone UTF-16 surrogate"
                stack.append((item, depth + 1, f"{where}.{key}" if len(where) < 200 else where))
        elif isinstance(value, list):
            if depth > max_depth:
                return f"{where} is nested {depth} levels deep; the limit is {max_depth}"
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                return f"{where} is an integer outside 64 bits"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"{where} is not a finite number"
        elif isinstance(value, str):
            if not _surrogate_free(value):
                return f"{where} holds a lone UTF-16 surrogate"
        else:
            return f"{where} is a {type(value).__name__}, not a JSON value"
    return None


def text_problem(value: str, what: str) -> str | None:
    """Why an id or a text cannot be stored (empty, or not encodable as UTF-8), or None."""
    if not value.strip():
        return f"{what} is empty"
    if not _surrogate_free(value):
        return f"{what} holds a lone UTF-16 surrogate"
    return None


def id_problem(value: str) -> str | None:
    """Why a document id cannot be stored, or None. Besides :func:`text_problem`'s rules, "." and
    ".." are refused: URL clients resolve them as path segments, so ``GET /documents/..`` could
    never reach such a document."""
    if value in (".", ".."):
        return f"id {value!r} is not addressable in a URL path"
    if len(value) > MAX_ID_CHARS:
        return f"id has {len(value)} characters; the limit is {MAX_ID_CHARS}"
    return text_problem(value, "id")


def metadata_json(metadata: dict[str, Any]) -> str:
    """The stored form (what :class:`DocStore` writes and measures)."""
    return json.dumps(metadata, ensure_ascii=False, allow_nan=False)
