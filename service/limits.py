"""Request-body size limit, enforced before the body is parsed (ASGI middleware)."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.error_responses import error_response


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(
                413,
                "payload_too_large",
                f"request body is {int(declared)} bytes; the limit is {self.max_bytes}",
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            # Chunked bodies declare no length: count as they arrive. FastAPI re-raises an
            # HTTPException raised while it reads the body, so this becomes a 413, not a 400.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, f"request body exceeds the limit of {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


# Probes and scrapes are never refused: an orchestrator must see a busy service as alive.
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})


class ConcurrencyLimitMiddleware:
    """At most ``max_requests`` HTTP requests in progress; past it, 429 with ``Retry-After`` at
    once (TEI's max_concurrent_requests). Bounds the memory held by accepted requests."""

    def __init__(self, app: ASGIApp, max_requests: int) -> None:
        self.app = app
        self.max_requests = max_requests
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_requests:
            response = error_response(
                429,
                "overloaded",
                f"{self.active} requests are in progress; the limit is {self.max_requests} "
                "(SEMSEARCH_MAX_CONCURRENT_REQUESTS); try again shortly",
                {"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        self.active += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
