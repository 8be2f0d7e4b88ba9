"""The one place that maps errors to HTTP status codes and the one error shape:
``{"error": {"code": str, "message": str}}``."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    ConflictError,
    DataError,
    DeadlineError,
    DiskFullError,
    ForbiddenError,
    IndexBusyError,
    IndexFormatError,
    IndexMismatchError,
    InvalidInputError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    SemsearchError,
    UnauthorizedError,
    UnsupportedError,
)

log = logging.getLogger(__name__)

STATUS: dict[type[SemsearchError], int] = {
    InvalidInputError: 422,
    UnsupportedError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    DataError: 422,
    PayloadTooLargeError: 413,
    NotFoundError: 404,
    OverloadedError: 429,
    ConflictError: 409,
    NotReadyError: 503,
    DeadlineError: 503,
    IndexFormatError: 503,  # a corrupt or unreadable generation: the server's state, not the request
    IndexMismatchError: 503,
    IndexBusyError: 503,
    DiskFullError: 507,
}
# Messages of these echo what the client sent (ids, fields) and never a server path: sent as they
# are. Every other message may name server files (index folders, model folders, OS errors): the
# client gets it with each absolute path cut to its last component; the log keeps it whole.
_CLIENT_WORDED = (InvalidInputError, PayloadTooLargeError, NotFoundError, UnauthorizedError, ForbiddenError)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])(?:/[^\s'\":,;()\[\]{}<>|]+)+/?")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    409: "conflict",
    422: "validation_error",
    429: "overloaded",
    503: "not_ready",
    507: "disk_full",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def public_message(message: str) -> str:
    """``message`` with every absolute path cut to its last component (``/srv/idx/index.faiss``
    -> ``index.faiss``): no server path reaches a client."""

    def last(match: re.Match[str]) -> str:
        parts = [p for p in match.group(0).split("/") if p]
        return parts[-1] if parts else "/"

    return _ABSOLUTE_PATH.sub(last, message)


def status_for(exc: SemsearchError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            parts.append(
                f"request body is not valid JSON ({detail})" if detail else "request body is not valid JSON"
            )
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SemsearchError)
    async def _domain(_: Request, exc: SemsearchError) -> JSONResponse:
        status = status_for(exc)
        headers = None
        retry_after = getattr(exc, "retry_after_s", None)  # overloaded, past its deadline
        if isinstance(retry_after, int | float):
            headers = {"Retry-After": str(max(1, round(retry_after)))}
        elif isinstance(exc, IndexBusyError | IndexFormatError | NotReadyError):
            headers = {"Retry-After": "5"}
        elif isinstance(exc, UnauthorizedError):
            headers = {"WWW-Authenticate": "Bearer"}
        if status >= 500 or status == 409:
            log.log(logging.ERROR if status >= 500 else logging.INFO, "%s: %s", exc.code, exc.message)
        message = exc.message if isinstance(exc, _CLIENT_WORDED) else public_message(exc.message)
        return error_response(status, exc.code, message, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Last resort: log the traceback server-side, never send it to the client.
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; see the server log")
