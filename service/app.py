"""``create_app(settings)``: the FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core import model_thread
from service.auth import AuthMiddleware
from service.disconnect import CancelOnDisconnectMiddleware
from service.engine import SearchEngine
from service.error_responses import install_error_handlers
from service.guard import GuardMiddleware
from service.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware
from service.metrics import Metrics, MetricsMiddleware
from service.routes import admin, documents, embed, health, page, rerank, search
from service.settings import MAX_K, Settings

log = logging.getLogger(__name__)

DESCRIPTION = f"""
Semantic search over a FAISS index built by `semsearch index build`, with online document
updates, hot reload of new index generations, and an OpenAI-compatible embeddings route.

Every error answers `{{"error": {{"code", "message"}}}}`: 401 without a valid API key (when keys
are configured), 403 for writes with a read-only key or in read-only mode, 404 for unknown ids
and routes, 413 for bodies, lists or texts over the limits, 422 for invalid input (empty query,
`k` outside 1..{MAX_K}, unknown fields), 409 for writes an `--on-disk` index cannot take in
place, 429 when too many requests are in progress or the model queue is full (with
`Retry-After`), 503 until the model and the index are loaded, while a reload swaps, for an index
generation that cannot be opened, and for a request that waited past its deadline (with
`Retry-After`), 507 when the disk is full.
"""


async def _poll_reload(app: FastAPI, interval_s: float) -> None:
    """Swap to a generation the indexer published, checked every ``interval_s``."""
    while True:
        await asyncio.sleep(interval_s)
        engine: SearchEngine | None = app.state.engine
        if engine is None:
            continue
        try:
            await engine.reload()
        except Exception as exc:  # keep serving the old generation; say why in the log
            log.error(
                "reload of %s failed, still serving generation %d: %s",
                engine.index_path,
                engine.index.current.generation,
                exc,
            )


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine ("localhost", 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable


def create_app(settings: Settings | None = None, engine: SearchEngine | None = None) -> FastAPI:
    """Build the app. With no ``engine``, the lifespan loads one from ``settings``."""
    settings = settings or Settings()
    metrics = engine.metrics if engine is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Searches and reads run on threads that keep off the model thread's OpenMP team.
        asyncio.get_running_loop().set_default_executor(model_thread.worker_pool())
        if app.state.engine is None:
            # Off the loop: loading weights and the index takes seconds.
            app.state.engine = await asyncio.to_thread(SearchEngine.load, settings, metrics)
        current = app.state.engine.index.current
        log.info("ready: %d documents from %s", current.count, current.path)
        app.state.engine.warm_bm25()
        poller = None
        if settings.reload_interval_s > 0:
            poller = asyncio.create_task(_poll_reload(app, settings.reload_interval_s))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            loaded: SearchEngine | None = app.state.engine
            app.state.engine = None
            if loaded is not None:
                loaded.close()

    app = FastAPI(title="semsearch", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    install_error_handlers(app)
    # Added innermost first: a request meets the disconnect watcher, the guard, metrics, CORS,
    # auth, the concurrency limit, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(ConcurrencyLimitMiddleware, max_requests=settings.max_concurrent_requests)
    write_keys, read_keys = settings.keys()
    app.state.auth = bool(write_keys or read_keys)
    if app.state.auth:
        app.add_middleware(AuthMiddleware, write_keys=write_keys, read_keys=read_keys)
    elif not is_loopback(settings.host):
        log.warning(
            "auth is OFF and the service listens on %s, reachable from other hosts: anyone who can "
            "reach it may search, write and reload. Set SEMSEARCH_API_KEYS (or "
            "SEMSEARCH_API_KEYS_FILE), or bind 127.0.0.1",
            settings.host,
        )
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics, root=app)
    app.add_middleware(GuardMiddleware)
    app.add_middleware(CancelOnDisconnectMiddleware)
    for module in (health, search, embed, documents, admin, rerank, page):
        app.include_router(module.router)
    return app
