"""Assertions shared by the service tests."""

from __future__ import annotations

from typing import Any


def assert_error_shape(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape, ``{"error": {"code", "message"}}``, with this status (and code)."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    err: dict[str, Any] = body["error"]
    return err
