"""Issue 17's findings, one test each: what a write accepts reads back, every failure answers in
the error shape, labels and answers are bounded, admission counts work and has a deadline, a
gone client's work is dropped, status codes, no server paths, and the auth-off warning."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from core.index.folder import IndexFolder
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ThreadedServer
from tests.service.helpers import assert_error_shape

MakeClient = Callable[..., TestClient]


def _deep(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    cur = top
    for _ in range(depth - 1):
        cur["a"] = {}
        cur = cur["a"]
    return top


def _settings(index: Path, model: Path, **kw: Any) -> Settings:
    return Settings(index_dir=index, model_dir=model, device="cpu", reload_interval_s=0, **kw)


# ------------------------------------------------------------------ 1. a write cannot poison reads
def test_deep_metadata_is_refused_before_it_is_stored(make_client: MakeClient, fresh_index: Path) -> None:
    client = make_client(fresh_index)
    put = client.put(
        "/documents", json={"documents": [{"id": "deep", "text": "x y", "metadata": _deep(300)}]}
    )
    assert "nested" in assert_error_shape(put, 422)["message"]
    assert client.get("/documents/deep").status_code == 404
    assert client.post("/search", json={"query": "x y", "k": 50}).status_code == 200


def test_metadata_at_the_depth_limit_reads_back_searches_and_filters(
    make_client: MakeClient, fresh_index: Path
) -> None:
    client = make_client(fresh_index, max_metadata_depth=40)
    meta = {"probe": "deep-one", "tree": _deep(39)}  # 40 levels with the top object
    put = client.put("/documents", json={"documents": [{"id": "deep", "text": "a b", "metadata": meta}]})
    assert put.status_code == 200, put.text
    assert client.get("/documents/deep").json()["metadata"] == meta
    hits = client.post("/search", json={"query": "a b", "k": 60}).json()["hits"]
    assert "deep" in [h["id"] for h in hits]
    found = client.post("/search", json={"query": "a b", "filter": {"probe": "deep-one"}}).json()["hits"]
    assert [h["id"] for h in found] == ["deep"]
    too_deep = {"tree": _deep(40)}
    put = client.put("/documents", json={"documents": [{"id": "d2", "text": "a b", "metadata": too_deep}]})
    assert_error_shape(put, 422)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_metadata_integers_past_64_bits_are_refused(
    make_client: MakeClient, fresh_index: Path, value: int
) -> None:
    client = make_client(fresh_index)
    raw = f'{{"documents": [{{"id": "big", "text": "t", "metadata": {{"n": {value}}}}}]}}'
    put = client.put("/documents", content=raw, headers={"content-type": "application/json"})
    assert "64 bits" in assert_error_shape(put, 422)["message"]
    assert client.get("/documents/big").status_code == 404


# ------------------------------------------------------------------ 2. no request goes unanswered
def _poison(index: Path, doc_id: str) -> None:
    """A row no write path accepts any more (as an older version could store): 300 levels."""
    with sqlite3.connect(index / "docs.sqlite") as db:
        db.execute("UPDATE docs SET metadata = ? WHERE id = ?", (json.dumps(_deep(300)), doc_id))
    db.close()


def test_a_failure_while_serialising_is_answered_in_the_error_shape(
    fresh_index: Path, tiny_model_dir: Path
) -> None:
    _poison(fresh_index, "cooking-0")
    with (
        ThreadedServer(_settings(fresh_index, tiny_model_dir)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        err = assert_error_shape(http.get("/documents/cooking-0"), 500, "internal_error")
        assert str(fresh_index) not in err["message"]
        # Before the guard, this search dropped the connection with no HTTP answer at all.
        assert_error_shape(http.post("/search", json={"query": "cooking", "k": 50}), 500)
        assert http.get("/health").status_code == 200
        assert http.post("/search", json={"query": "cooking", "k": 1, "include": []}).status_code == 200


# ------------------------------------------------------------------ 3. bounded metric labels
def test_made_up_methods_do_not_grow_the_metrics(make_client: MakeClient, tiny_index: Path) -> None:
    client = make_client(tiny_index)
    for i in range(10):
        client.request(f"BREW{i}", f"/nope/{i}")
        client.request(f"BREW{i}", "/search")
    client.get("/metrics")
    before = len(client.get("/metrics").content)
    for i in range(10, 300):
        client.request(f"BREW{i}", f"/nope/{i}")
        client.request(f"BREW{i}", "/search")
    text = client.get("/metrics").text
    assert "BREW" not in text and 'method="other"' in text
    assert len(text) - before < 300  # only counts and sums grew a digit or two: no new series


# ------------------------------------------------------------------ 4. bounded answers, include
def test_include_leaves_out_text_and_metadata(make_client: MakeClient, tiny_index: Path) -> None:
    client = make_client(tiny_index)
    bare = client.post("/search", json={"query": "cooking", "k": 3, "include": []}).json()["hits"]
    assert len(bare) == 3 and all(set(h) == {"id", "score"} for h in bare)
    meta = client.post("/search", json={"query": "cooking", "k": 3, "include": ["metadata"]}).json()["hits"]
    assert all(set(h) == {"id", "score", "metadata"} for h in meta)
    full = client.post("/search", json={"query": "cooking", "k": 3}).json()["hits"]
    assert [h["id"] for h in full] == [h["id"] for h in bare]
    assert all({"text", "metadata"} <= set(h) for h in full)
    batch = client.post("/search/batch", json={"queries": ["a", "b"], "k": 2, "include": []}).json()
    assert all(set(h) == {"id", "score"} for r in batch["results"] for h in r["hits"])
    bad = client.post("/search", json={"query": "q", "include": ["vectors"]})
    assert_error_shape(bad, 422)


def test_hits_per_request_are_bounded(make_client: MakeClient, tiny_index: Path) -> None:
    client = make_client(tiny_index, max_hits_per_request=100)
    resp = client.post("/search/batch", json={"queries": ["q"] * 11, "k": 10})
    assert "SEMSEARCH_MAX_HITS_PER_REQUEST" in assert_error_shape(resp, 413)["message"]
    assert client.post("/search/batch", json={"queries": ["q"] * 10, "k": 10}).status_code == 200
    small = make_client(tiny_index, max_hits_per_request=5)
    assert_error_shape(small.post("/search", json={"query": "q", "k": 6}), 413)


def test_answer_bytes_are_bounded(make_client: MakeClient, tiny_index: Path) -> None:
    client = make_client(tiny_index, max_response_bytes=1024)
    resp = client.post("/search", json={"query": "cooking", "k": 50})
    assert '"include": []' in assert_error_shape(resp, 413)["message"]
    ok = client.post("/search", json={"query": "cooking", "k": 50, "include": []})
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 50
    batch = client.post("/search/batch", json={"queries": ["a", "b"], "k": 50})
    assert_error_shape(batch, 413)


# ------------------------------------------------------------------ 5. admission, deadline, cancel
def _block_model(server: ThreadedServer) -> tuple[threading.Event, list[str]]:
    """Hold the encoder's worker on a gate; record every text it is asked to embed."""
    engine = server.server.config.app.state.engine
    gate, seen = threading.Event(), []
    real = engine.batcher._run

    def gated(texts: list[str]) -> Any:
        seen.extend(texts)
        gate.wait(10)
        return real(texts)

    engine.batcher._run = gated
    return gate, seen


def test_waiting_past_the_deadline_is_503_with_retry_after(fresh_index: Path, tiny_model_dir: Path) -> None:
    settings = _settings(fresh_index, tiny_model_dir, queue_timeout_s=0.3)
    with ThreadedServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        gate, seen = _block_model(server)
        first = threading.Thread(target=lambda: http.post("/embed", json={"texts": ["first"]}))
        first.start()
        time.sleep(0.1)
        late = http.post("/embed", json={"texts": ["late"]})
        gate.set()
        first.join(10)
        assert_error_shape(late, 503, "deadline_exceeded")
        assert int(late.headers["Retry-After"]) >= 1
        assert "late" not in seen  # dropped unrun
        assert http.post("/embed", json={"texts": ["after"]}).status_code == 200


def test_a_client_that_goes_away_has_its_queued_work_dropped(fresh_index: Path, tiny_model_dir: Path) -> None:
    with (
        ThreadedServer(_settings(fresh_index, tiny_model_dir)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        gate, seen = _block_model(server)
        engine = server.server.config.app.state.engine
        first = threading.Thread(target=lambda: http.post("/embed", json={"texts": ["first"]}))
        first.start()
        time.sleep(0.1)
        body = json.dumps({"texts": ["gone"]}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as raw:
            raw.sendall(
                b"POST /embed HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            deadline = time.monotonic() + 5
            while engine.batcher.waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
        deadline = time.monotonic() + 5  # the socket is closed: the server sees the disconnect
        while engine.batcher.dropped < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        first.join(10)
        assert engine.batcher.dropped == 1 and "gone" not in seen
        assert http.post("/embed", json={"texts": ["after"]}).status_code == 200
        assert 'status="499"' in http.get("/metrics").text


def test_requests_in_progress_are_bounded(fresh_index: Path, tiny_model_dir: Path) -> None:
    settings = _settings(fresh_index, tiny_model_dir, max_concurrent_requests=2)
    with ThreadedServer(settings) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        gate, _ = _block_model(server)
        held = [
            threading.Thread(target=lambda i=i: http.post("/embed", json={"texts": [f"t{i}"]}))
            for i in range(2)
        ]
        for t in held:
            t.start()
        time.sleep(0.2)
        refused = http.post("/embed", json={"texts": ["third"]})
        probes = [http.get("/health").status_code, http.get("/metrics").status_code]
        gate.set()
        for t in held:
            t.join(10)
        assert "SEMSEARCH_MAX_CONCURRENT_REQUESTS" in assert_error_shape(refused, 429)["message"]
        assert refused.headers["Retry-After"] == "1" and probes == [200, 200]
        assert http.post("/embed", json={"texts": ["later"]}).status_code == 200


# ------------------------------------------------------------------ 7. status codes, no paths
def test_a_corrupt_generation_on_reload_is_503_without_server_paths(
    make_client: MakeClient, fresh_index: Path
) -> None:
    client = make_client(fresh_index)
    manifest = json.loads((fresh_index / "manifest.json").read_text())
    (fresh_index / manifest["index_file"]).write_bytes(b"not a faiss file")
    manifest["generation"] += 1
    manifest["created_at"] = "2099-01-01T00:00:00Z"
    (fresh_index / "manifest.json").write_text(json.dumps(manifest))
    resp = client.post("/admin/reload")
    err = assert_error_shape(resp, 503, "index_format")
    assert str(fresh_index) not in err["message"] and "/tmp" not in err["message"]
    assert client.post("/search", json={"query": "cooking", "k": 2}).status_code == 200  # old one serves


def test_server_paths_are_cut_to_their_last_component() -> None:
    from service.error_responses import public_message

    msg = "/srv/data/my-index/index.faiss: size/checksum do not match; see /tmp/x/"
    assert public_message(msg) == "index.faiss: size/checksum do not match; see x"
    assert public_message("no such id 'a/b'") == "no such id 'a/b'"


# ------------------------------------------------------------------ 8. huge integers
def test_an_integer_of_5000_digits_is_422(make_client: MakeClient, tiny_index: Path) -> None:
    client = make_client(tiny_index)
    raw = '{"query": "x", "k": ' + "1" * 5000 + "}"
    resp = client.post("/search", content=raw, headers={"content-type": "application/json"})
    assert "digits" in assert_error_shape(resp, 422, "validation_error")["message"]


# ------------------------------------------------------------------ 10. auth off, said aloud
def test_no_keys_on_a_public_address_warns_and_ready_says_auth_off(
    tiny_index: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="service.app"):
        app = create_app(_settings(tiny_index, tiny_model_dir, host="0.0.0.0"))
    assert any("auth is OFF" in r.getMessage() for r in caplog.records)
    with TestClient(app) as client:
        assert client.get("/ready").json()["auth"] == "off"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="service.app"):
        create_app(_settings(tiny_index, tiny_model_dir, host="127.0.0.1"))
        keyed = create_app(_settings(tiny_index, tiny_model_dir, host="0.0.0.0", api_keys="k1"))
    assert not any("auth is OFF" in r.getMessage() for r in caplog.records)
    with TestClient(keyed) as client:
        assert client.get("/ready").json()["auth"] == "on"


def test_loopback_detection() -> None:
    from service.app import is_loopback

    assert all(is_loopback(h) for h in ["127.0.0.1", "localhost", "::1", "[::1]", "127.5.0.1"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "::", "10.0.0.1", "example.org"])


def test_manifest_generation_unchanged_by_refused_writes(make_client: MakeClient, fresh_index: Path) -> None:
    client = make_client(fresh_index)
    before = client.get("/ready").json()["generation"]
    client.put("/documents", json={"documents": [{"id": "x", "text": "t", "metadata": _deep(100)}]})
    assert client.get("/ready").json()["generation"] == before
    reader = IndexFolder.open(fresh_index)  # nothing reached the write log either
    assert reader.generation == before
    reader.close()


@pytest.mark.parametrize("doc_id", ["a/b", "ends-with/", "/leading", "a//b", "50%", "q?x#y", "sp ace "])
def test_ids_with_url_characters_read_back_and_delete(
    make_client: MakeClient, fresh_index: Path, doc_id: str
) -> None:
    """Found by the write-then-read property test: an id holding "/" was stored, then 404 forever."""
    from urllib.parse import quote

    client = make_client(fresh_index)
    put = client.put("/documents", json={"documents": [{"id": doc_id, "text": "an odd id"}]})
    assert put.status_code == 200, put.text
    path = "/documents/" + quote(doc_id, safe="")
    assert client.get(path).json()["id"] == doc_id
    assert client.delete(path).status_code == 200
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("doc_id", [".", ".."])
def test_dot_ids_are_refused(make_client: MakeClient, fresh_index: Path, doc_id: str) -> None:
    client = make_client(fresh_index)
    put = client.put("/documents", json={"documents": [{"id": doc_id, "text": "t"}]})
    assert "not addressable" in assert_error_shape(put, 422)["message"]


def test_the_disconnect_watcher_reads_at_most_one_message_ahead() -> None:
    """A streamed body is pulled at the app's pace: an app that stops after its first chunk (as the
    body limit does) leaves the rest unread, instead of the watcher buffering all of it."""
    import asyncio

    from service.disconnect import CancelOnDisconnectMiddleware

    pulled = {"n": 0}

    async def receive() -> dict[str, Any]:
        pulled["n"] += 1
        await asyncio.sleep(0)
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # one chunk, then answer without reading on
        await send({"type": "http.response.start", "status": 413, "headers": []})
        for _ in range(50):
            await asyncio.sleep(0)  # time for a greedy reader to run ahead
        await send({"type": "http.response.body", "body": b""})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/search"}
    asyncio.run(CancelOnDisconnectMiddleware(app)(scope, receive, send))
    assert sent[0]["status"] == 413 and pulled["n"] <= 3, pulled


def test_the_disconnect_watcher_cancels_the_handler_of_a_gone_client() -> None:
    import asyncio

    from service.disconnect import CancelOnDisconnectMiddleware

    messages = [{"type": "http.request", "body": b"{}", "more_body": False}, {"type": "http.disconnect"}]
    state = {"cancelled": False}

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            await asyncio.sleep(10)  # a model call waiting in the queue
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent to a gone client")

    scope = {"type": "http", "method": "POST", "path": "/embed"}
    asyncio.run(asyncio.wait_for(CancelOnDisconnectMiddleware(app)(scope, receive, send), 5))
    assert state["cancelled"]


def test_online_writes_store_unit_vectors_with_a_model_that_does_not_normalise(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path
) -> None:
    """The manifest says the vectors are unit vectors; the build normalised them, and so must the
    service's upsert path, whatever the model folder's last module is."""
    import numpy as np

    from core.encoder import Encoder
    from core.index.folder import IndexFolder
    from indexer.build import BuildConfig, build_index

    raw_model = tmp_path / "no-normalize"
    encoder = Encoder.load(tiny_model_dir, "cpu")
    encoder.normalize = False
    encoder.save(raw_model)
    assert not (raw_model / "2_Normalize").exists()
    index = tmp_path / "idx"
    build_index(BuildConfig(model=str(raw_model), corpus=str(tiny_corpus), output=str(index), progress=False))
    with TestClient(create_app(_settings(index, raw_model))) as client:
        put = client.put("/documents", json={"documents": [{"id": "online", "text": "a new cooking text"}]})
        assert put.status_code == 200, put.text
        hit = client.post("/search", json={"query": "a new cooking text", "k": 1}).json()["hits"][0]
    assert hit["id"] == "online" and abs(hit["score"] - 1.0) < 1e-3  # cosine of a text with itself
    folder = IndexFolder.open(index)
    try:
        iid = folder.store.live_iids(["online"])["online"]
        norm = float(np.linalg.norm(folder.segments.reconstruct(np.array([iid]))))
    finally:
        folder.close()
    assert abs(norm - 1.0) < 1e-5, norm


def test_an_older_index_holding_nan_metadata_still_answers(
    make_client: MakeClient, fresh_index: Path
) -> None:
    """Builds before the store's rules could store NaN (json.dumps' default): searches returning
    such a document answer 200 (NaN as null), not 500."""
    with sqlite3.connect(fresh_index / "docs.sqlite") as db:
        db.execute("UPDATE docs SET metadata = ? WHERE id = ?", ('{"x": NaN}', "cooking-0"))
    db.close()
    client = make_client(fresh_index)
    resp = client.post("/search", json={"query": "cooking", "k": 50})
    assert resp.status_code == 200, resp.text
    assert {"x": None} in [h["metadata"] for h in resp.json()["hits"]]
