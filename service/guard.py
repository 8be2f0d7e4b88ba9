"""The outermost guard: whatever fails inside the app, the client gets an HTTP answer in the one
error shape, and the connection is not dropped.

Starlette's own last resort (``ServerErrorMiddleware``) re-raises after answering, and skips the
answer when the failure came from its exception handler or after a middleware swallowed the
start; uvicorn then resets the connection. This middleware sits inside it, outside every other
middleware: an exception that reaches it is logged with its traceback and answered with a 500
``internal_error`` (no detail: tracebacks and paths stay in the log). A failure after the
response has started cannot be answered again; the client sees the stream end, and the log
says why.

A request still running when the server's shutdown grace period (``shutdown_timeout_s``) ends is
cancelled by uvicorn, which answers a cancelled request with a plain-text 500 of its own. This
guard answers it first, with a 503 in the one shape and ``Retry-After`` (the request was not
finished, so nothing it did may be assumed), and lets the cancellation go on. A write cut this
way may still have been committed (it waited on the group commit): as for any 503, the client
retries it, and the upsert or delete is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.disconnect import CLIENT_GONE
from service.error_responses import error_response

log = logging.getLogger(__name__)


class GuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            # The server's own cancellation (a client that left is cancelled by service.disconnect,
            # which says so in the scope: no one to answer). Answer, then let it go on.
            if not started and not scope.get(CLIENT_GONE):
                log.warning(
                    "%s %s cut by the shutdown's grace period", scope.get("method"), scope.get("path")
                )
                response = error_response(
                    503, "not_ready", "the server is shutting down; retry", headers={"Retry-After": "1"}
                )
                with contextlib.suppress(Exception):  # the connection is gone: nothing to answer
                    await response(scope, receive, send)
            raise
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                return  # half an answer is out; nothing valid can follow it
            response = error_response(500, "internal_error", "internal error; see the server log")
            await response(scope, receive, send)
