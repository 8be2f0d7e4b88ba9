"""Hot reload: a generation published by the indexer is picked up with no failed request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from core.index.doc_store import Document
from core.index.mutable import MutableIndex
from indexer.build import BuildConfig, build_index
from service.settings import Settings
from tests.service.conftest import ThreadedServer
from tests.service.helpers import assert_error_shape

NEW_TEXT = "the green bird flies over the red house ."


def _publish(index: Path, encoder, doc_id: str) -> None:
    with MutableIndex(index) as mutable:
        mutable.upsert([Document(doc_id, NEW_TEXT, {"via": "cli"})], encoder.encode([NEW_TEXT]))


def test_admin_reload_swaps_to_the_published_generation(fresh_index: Path, make_client, tiny_encoder) -> None:
    client = make_client(fresh_index)
    assert client.post("/admin/reload").json()["reloaded"] is False  # nothing new yet
    gen = client.get("/ready").json()["generation"]
    _publish(fresh_index, tiny_encoder, "cli-1")
    assert client.get("/documents/cli-1").status_code == 404  # still pinned to the old generation
    body = client.post("/admin/reload").json()
    assert body == {"reloaded": True, "generation": gen + 1, "documents": 51}
    assert client.get("/documents/cli-1").json()["metadata"] == {"via": "cli"}


def test_reload_refuses_an_index_of_another_model(
    fresh_index: Path, make_client, minilm_dir: Path, tmp_path: Path, real_corpus: Path
) -> None:
    client = make_client(fresh_index)
    gen = client.get("/ready").json()["generation"]
    other = tmp_path / "other"
    build_index(
        BuildConfig(model=str(minilm_dir), corpus=str(real_corpus), output=str(other), progress=False)
    )
    for name in ("manifest.json", "index.faiss", "docs.sqlite"):  # the folder now holds another model's index
        (fresh_index / name).unlink()
        (other / name).rename(fresh_index / name)
    assert_error_shape(client.post("/admin/reload"), 503, "index_mismatch")
    assert client.get("/ready").json()["generation"] == gen  # still serving the old one
    assert client.post("/search", json={"query": "the cat"}).status_code == 200


def test_searches_during_reloads_never_fail(
    fresh_index: Path, tiny_model_dir: Path, tiny_encoder, tiny_corpus: Path
) -> None:
    """A stream of searches over real HTTP while the indexer publishes in-place updates and a
    whole-folder rebuild, picked up by the poller and by /admin/reload: zero errors."""
    settings = Settings(index_dir=fresh_index, model_dir=tiny_model_dir, device="cpu", reload_interval_s=0.05)
    statuses: list[int] = []
    stop = threading.Event()

    with ThreadedServer(settings) as server:

        def hammer() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                deadline = time.monotonic() + 60
                while not stop.is_set() and time.monotonic() < deadline and len(statuses) < 5000:
                    statuses.append(http.post("/search", json={"query": NEW_TEXT, "k": 3}).status_code)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            gen0 = http.get("/ready").json()["generation"]
            for i in range(4):  # in-place generations, seen by the poller
                _publish(fresh_index, tiny_encoder, f"cli-{i}")
                time.sleep(0.2)
            build_index(  # a whole-folder swap: the rebuild is the next generation
                BuildConfig(
                    model=str(tiny_model_dir),
                    corpus=str(tiny_corpus),
                    output=str(fresh_index),
                    progress=False,
                ),
                encoder=tiny_encoder,
            )
            http.post("/admin/reload")
            deadline = time.monotonic() + 10
            while http.get("/ready").json().get("generation") != gen0 + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            final = http.get("/ready").json()
        stop.set()
        for t in threads:
            t.join(timeout=60)

    assert final["generation"] == gen0 + 5 and final["documents"] == 50  # the rebuild has no cli docs
    assert len(statuses) > 50
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
