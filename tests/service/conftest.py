"""Service fixtures: one tiny index built per session, copied for the tests that write to it."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from core.cross_encoder import CrossEncoder
from service.app import create_app
from service.settings import Settings
from tests.loopback import free_port


@pytest.fixture
def fresh_index(tiny_index: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny index, for tests that update it."""
    out = tmp_path / "idx"
    shutil.copytree(tiny_index, out)
    return out


@pytest.fixture
def make_client(tiny_model_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """``make_client(index_dir, **settings)``: a started TestClient; closed at teardown."""
    opened: list[TestClient] = []

    def make(index_dir: Path, **overrides: Any) -> TestClient:
        values: dict[str, Any] = {
            "index_dir": index_dir,
            "model_dir": tiny_model_dir,
            "device": "cpu",
            "reload_interval_s": 0,
        }
        values.update(overrides)
        client = TestClient(create_app(Settings(**values)))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


class ThreadedServer:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start within 60 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("ce") / "nli"
    CrossEncoder.new(tiny_model_dir, "single_label", ["contradiction", "entailment", "neutral"], "cpu").save(
        out
    )
    return out
