"""``create_app(settings)``: the FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.engine import SearchEngine
from service.errors import install_error_handlers
from service.limits import BodyLimitMiddleware
from service.routes import embed, health, search
from service.settings import MAX_K, Settings

log = logging.getLogger(__name__)

DESCRIPTION = f"""
Semantic search over a FAISS index built by `semsearch index build`.

Every error answers `{{"error": {{"code", "message"}}}}`: 413 for bodies, lists or texts over the
limits, 422 for invalid input (empty query, `k` outside 1..{MAX_K}, unknown fields), 503 until the
model and the index are loaded.
"""


def create_app(settings: Settings | None = None, engine: SearchEngine | None = None) -> FastAPI:
    """Build the app. With no ``engine``, the lifespan loads one from ``settings``."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.engine is None:
            # Off the loop: loading weights and the index takes seconds.
            app.state.engine = await asyncio.to_thread(SearchEngine.load, settings)
        log.info("ready: %d documents from %s", app.state.engine.index.count, app.state.engine.index.path)
        try:
            yield
        finally:
            current: SearchEngine | None = app.state.engine
            app.state.engine = None
            if current is not None:
                current.close()

    app = FastAPI(title="semsearch", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for module in (health, search, embed):
        app.include_router(module.router)
    return app
