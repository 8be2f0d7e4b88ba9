"""FastAPI dependencies, as ``Annotated`` aliases the routes use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from core.errors import ForbiddenError, NotReadyError
from service.auth import ROLE_READ, role_of
from service.engine import SearchEngine


def get_engine(request: Request) -> SearchEngine:
    engine: SearchEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("the model and index are not loaded yet")
    return engine


def get_writer(request: Request, engine: Annotated[SearchEngine, Depends(get_engine)]) -> SearchEngine:
    """The engine, for a caller allowed to write: not a read-only key, not a read-only service."""
    if role_of(request.scope) == ROLE_READ:
        raise ForbiddenError("this API key may search but not write")
    engine.check_writable()
    return engine


EngineDep = Annotated[SearchEngine, Depends(get_engine)]
WriterDep = Annotated[SearchEngine, Depends(get_writer)]
