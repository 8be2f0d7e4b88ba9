"""Request bodies parsed strictly, in one place: invalid UTF-8, nesting deeper than the parser
allows, integers longer than Python converts, and strings with lone UTF-16 surrogates
(``"\\ud800"``, which Python's json accepts but no tokenizer, SQLite or UTF-8 encoder does) are
all invalid JSON, so they answer 422 like any
other malformed body, instead of failing somewhere deep inside with a 500 or a vague 400."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(body: bytes) -> Any:
    """``json.loads`` that raises :class:`json.JSONDecodeError` for everything FastAPI would
    otherwise turn into a bare 400 (or let through)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"body is not valid UTF-8 at byte {exc.start}", "", exc.start) from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("body is nested too deeply", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer literal past Python's digit limit (4,300 by default)
        raise json.JSONDecodeError("a number has more digits than the 4,300 Python reads", text, 0) from None
    match = _ESCAPED_SURROGATE.search(text)
    if match:  # a valid pair is fine; a lone half is not Unicode
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise json.JSONDecodeError(
                "a string holds a lone UTF-16 surrogate", text, match.start()
            ) from None
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Every route of the service uses this class (``APIRouter(route_class=StrictJSONRoute)``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
