"""API keys: ``Authorization: Bearer <key>`` on every route but the public ones, checked in
constant time. Keys are compared as SHA-256 digests with :func:`hmac.compare_digest`, against
EVERY configured key (no early exit), so timing reveals neither a key nor which key matched."""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.error_responses import error_response

PUBLIC_PATHS = frozenset({"/health", "/ready", "/"})
ROLE_WRITE = "write"
ROLE_READ = "read"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def role_of(scope: Scope) -> str:
    """The caller's role, set by :class:`AuthMiddleware`; with auth off everybody may write."""
    return str(scope.get("state", {}).get("role", ROLE_WRITE))


class AuthMiddleware:
    def __init__(self, app: ASGIApp, write_keys: list[str], read_keys: list[str]) -> None:
        self.app = app
        self.keys = [(_digest(k), ROLE_WRITE) for k in write_keys] + [
            (_digest(k), ROLE_READ) for k in read_keys
        ]

    def check(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = _digest(token.strip())
        role = None
        for digest, key_role in self.keys:
            if hmac.compare_digest(given, digest) and role is None:
                role = key_role
        return role

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        role = self.check(header)
        if role is None:
            message = "missing or unknown API key: send Authorization: Bearer <key>"
            response = error_response(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["role"] = role
        await self.app(scope, receive, send)
