"""FastAPI dependencies, as ``Annotated`` aliases the routes use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from core.errors import NotReadyError
from service.engine import SearchEngine


def get_engine(request: Request) -> SearchEngine:
    engine: SearchEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("the model and index are not loaded yet")
    return engine


EngineDep = Annotated[SearchEngine, Depends(get_engine)]
