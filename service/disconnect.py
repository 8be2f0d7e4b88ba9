"""Cancel a request's work when its client goes away.

Uvicorn does not cancel a handler whose client disconnected: a queued model call would still run
for nobody. This middleware is the only reader of the ASGI ``receive`` channel: it forwards the
request body to the app through a queue and keeps listening; an ``http.disconnect`` before the
answer is complete cancels the app's task, so its queued model work is dropped unrun (see
:class:`service.micro_batcher.MicroBatcher`). One reader means the app's own body reads and the
watcher never race for a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
CLIENT_GONE = "semsearch.client_gone"  # set in the scope when this middleware cancels the app


class CancelOnDisconnectMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One message read ahead at most: a streamed body is still pulled at the app's pace, so
        # the body limit (inside) stops it before it is buffered here.
        inbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        answered = False
        gone = False

        async def app_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        app_task = asyncio.ensure_future(self.app(scope, inbox.get, app_send))

        async def listen() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not answered and not app_task.done():
                        gone = True
                        scope[CLIENT_GONE] = True  # for the guard inside: no one to answer
                        app_task.cancel()
                    await inbox.put(message)
                    return
                await inbox.put(message)

        listener = asyncio.ensure_future(listen())
        try:
            await app_task
        except asyncio.CancelledError:
            if not gone:  # the server itself is cancelling us: pass it on
                raise
            log.debug("client left %s %s before its answer: work dropped", scope["method"], scope["path"])
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
