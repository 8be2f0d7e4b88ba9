"""The outermost guard's answers: a request the server cancels at the end of its shutdown grace
period gets a 503 in the one error shape, not uvicorn's plain-text 500."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from service.disconnect import CancelOnDisconnectMiddleware
from service.guard import GuardMiddleware

SCOPE = {"type": "http", "method": "PUT", "path": "/documents", "headers": []}


def _run(app: Any, leave: bool) -> list[dict[str, Any]]:
    """Start a request, then either the server cancels it (``leave`` False) or its client
    disconnects (True); returns what the app sent."""
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        gone = asyncio.Event()
        first = True

        async def receive() -> dict[str, Any]:
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        task = asyncio.ensure_future(app(dict(SCOPE), receive, send))
        await asyncio.sleep(0.05)
        if leave:
            gone.set()
            await asyncio.wait_for(task, 5)
            return
        task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")  # as uvicorn does
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    return sent


async def _slow(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await asyncio.sleep(30)


def test_a_request_cut_by_the_shutdown_gets_a_503_in_the_error_shape() -> None:
    sent = _run(CancelOnDisconnectMiddleware(GuardMiddleware(_slow)), leave=False)
    start, body = sent[0], sent[1]
    assert start["status"] == 503
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["retry-after"] == "1" and headers["content-type"] == "application/json"
    error = json.loads(body["body"])["error"]
    assert error["code"] == "not_ready" and "shutting down" in error["message"]


def test_a_client_that_left_is_not_answered() -> None:
    assert _run(CancelOnDisconnectMiddleware(GuardMiddleware(_slow)), leave=True) == []
