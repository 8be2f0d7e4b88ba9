"""``semsearch serve``: load the engine first (so a bad index or model fails with a clear message
and a non-zero exit, before any port is bound), then run uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from core.encoder import Encoder
from core.index.sharded_folder import open_for_search
from service.app import create_app
from service.engine import SearchEngine
from service.settings import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, encoder: Encoder | None = None) -> None:
    """Serve until interrupted. ``encoder``: an already loaded model to reuse (the demo has one)."""
    if encoder is None or settings.index_dir is None:
        engine = SearchEngine.load(settings)
    else:
        engine = SearchEngine(encoder, open_for_search(settings.index_dir), settings)
    log.info(
        "model %s (%s, dim %d) on %s; index %s (%d documents)",
        engine.encoder.source,
        (engine.encoder.fingerprint or "")[:12],
        engine.encoder.dim,
        engine.encoder.device,
        engine.index_path,
        engine.index.current.count,
    )
    app = create_app(settings, engine)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # SIGTERM (`docker stop`): stop accepting, let requests in flight finish within this.
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
