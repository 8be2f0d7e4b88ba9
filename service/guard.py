"""The outermost guard: whatever fails inside the app, the client gets an HTTP answer in the one
error shape, and the connection is not dropped.

Starlette's own last resort (``ServerErrorMiddleware``) re-raises after answering, and skips the
answer when the failure came from its exception handler or after a middleware swallowed the
start; uvicorn then resets the connection. This middleware sits inside it, outside every other
middleware: an exception that reaches it is logged with its traceback and answered with a 500
``internal_error`` (no detail: tracebacks and paths stay in the log). A failure after the
response has started cannot be answered again; the client sees the stream end, and the log
says why.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                return  # half an answer is out; nothing valid can follow it
            response = error_response(500, "internal_error", "internal error; see the server log")
            await response(scope, receive, send)
