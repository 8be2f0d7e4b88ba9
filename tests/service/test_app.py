"""The HTTP service with the tiny model: bounds, validation, and the one error shape."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.encoder import Encoder
from core.errors import IndexFormatError, IndexMismatchError
from service.app import create_app
from service.settings import Settings
from tests.service.helpers import assert_error_shape

LONG_QUERY = " ".join(["the cat sees the dog and the bird"] * 6)


@pytest.fixture(scope="module")
def settings(tiny_index: Path, tiny_model_dir: Path) -> Settings:
    return Settings(
        index_dir=tiny_index,
        model_dir=tiny_model_dir,
        device="cpu",
        max_body_bytes=2048,
        max_texts_per_request=4,
        max_text_chars=500,
    )


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c


# ------------------------------------------------------------------ happy paths


def test_health_and_ready(client: TestClient, tiny_encoder: Encoder) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    resp = client.get("/ready")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ready"
    assert body["documents"] == 50
    assert body["dim"] == 32
    assert body["model_fingerprint"] == tiny_encoder.fingerprint
    assert body["device"] == "cpu"


def test_search_finds_exact_document(client: TestClient, tiny_docs) -> None:
    doc = tiny_docs[23]
    resp = client.post("/search", json={"query": doc["text"], "k": 5})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"hits", "took_ms", "truncated"}
    assert len(body["hits"]) == 5
    top = body["hits"][0]
    assert top["id"] == doc["id"]
    assert top["text"] == doc["text"]
    assert top["metadata"] == doc["metadata"]
    assert top["score"] == pytest.approx(1.0, abs=1e-4)
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert body["truncated"] is False
    assert body["took_ms"] >= 0


def test_search_default_k_and_k_above_count(client: TestClient) -> None:
    assert len(client.post("/search", json={"query": "the cat"}).json()["hits"]) == 10
    assert len(client.post("/search", json={"query": "the cat", "k": 1000}).json()["hits"]) == 50


def test_truncation_is_reported(client: TestClient) -> None:
    long = client.post("/search", json={"query": LONG_QUERY, "k": 1})
    assert long.status_code == 200
    assert long.json()["truncated"] is True
    short = client.post("/search", json={"query": "the red cat", "k": 1})
    assert short.json()["truncated"] is False


def test_embed(client: TestClient, tiny_encoder: Encoder) -> None:
    texts = ["the cat", LONG_QUERY]
    resp = client.post("/embed", json={"texts": texts})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["dim"] == 32
    assert body["truncated"] == [False, True]
    assert len(body["embeddings"]) == 2
    expected = tiny_encoder.encode(texts)
    assert body["embeddings"][0] == pytest.approx(expected[0].tolist(), abs=1e-5)
    assert body["embeddings"][1] == pytest.approx(expected[1].tolist(), abs=1e-5)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"query": ""}, "empty"),
        ({"query": "   \t\n "}, "empty"),
        ({"query": "cat", "k": 0}, "k"),
        ({"query": "cat", "k": 1001}, "k"),
        ({"query": "cat", "k": -5}, "k"),
        ({"query": "cat", "k": "abc"}, "k"),
        ({"query": "cat", "k": 2.5}, "k"),
        ({"k": 3}, "query"),
        ({"query": 123}, "query"),
        ({"query": "cat", "colour": "red"}, "colour"),
    ],
)
def test_search_bad_input_is_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    err = assert_error_shape(client.post("/search", json=body), 422, "validation_error")
    assert needle in err["message"]


def test_empty_query_message_explains_why(client: TestClient) -> None:
    err = assert_error_shape(client.post("/search", json={"query": "  "}), 422)
    assert "query" in err["message"]
    assert "empty" in err["message"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"query": "cat",}', b"[1, 2]", b'"cat"'])
def test_search_invalid_json_is_422(client: TestClient, raw: bytes) -> None:
    resp = client.post("/search", content=raw, headers={"content-type": "application/json"})
    assert_error_shape(resp, 422)


def test_unknown_route_is_404_in_error_shape(client: TestClient) -> None:
    err = assert_error_shape(client.get("/no/such/route"), 404, "not_found")
    assert err["message"]


def test_wrong_method_is_405_in_error_shape(client: TestClient) -> None:
    assert_error_shape(client.get("/search"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"texts": []}, "texts"),
        ({"texts": ["ok", "  "]}, "texts[1]"),
        ({"texts": [""]}, "texts[0]"),
        ({"texts": "not a list"}, "texts"),
        ({}, "texts"),
        ({"texts": ["ok"], "normalize": False}, "normalize"),
    ],
)
def test_embed_bad_input_is_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    err = assert_error_shape(client.post("/embed", json=body), 422)
    assert needle in err["message"]


def test_embed_too_many_texts_is_413(client: TestClient) -> None:
    err = assert_error_shape(client.post("/embed", json={"texts": ["cat"] * 5}), 413, "payload_too_large")
    assert "5" in err["message"] and "4" in err["message"]
    assert client.post("/embed", json={"texts": ["cat"] * 4}).status_code == 200


def test_too_long_text_is_413(client: TestClient) -> None:
    text = "cat " * 150  # 600 characters > max_text_chars=500, body still < 2048 bytes
    assert_error_shape(client.post("/embed", json={"texts": [text]}), 413, "payload_too_large")
    assert_error_shape(client.post("/search", json={"query": text}), 413, "payload_too_large")


def test_body_over_limit_is_413(client: TestClient) -> None:
    body = json.dumps({"query": "cat " * 600}).encode()
    assert len(body) > 2048
    resp = client.post("/search", content=body, headers={"content-type": "application/json"})
    err = assert_error_shape(resp, 413, "payload_too_large")
    assert "2048" in err["message"]


def test_chunked_body_over_limit_is_413(client: TestClient) -> None:
    """A body without Content-Length is counted as it arrives and refused the same way."""
    payload = json.dumps({"query": "cat " * 600}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 500):
            yield payload[i : i + 500]

    resp = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert_error_shape(resp, 413, "payload_too_large")


# ------------------------------------------------------------------ lifecycle


def test_ready_before_lifespan_is_503(settings: Settings) -> None:
    app = create_app(settings)
    c = TestClient(app)  # not entered: the lifespan has not loaded anything
    err = assert_error_shape(c.get("/ready"), 503, "not_ready")
    assert "not loaded" in err["message"]
    assert_error_shape(c.post("/search", json={"query": "cat"}), 503, "not_ready")
    assert c.get("/health").status_code == 200


@pytest.mark.slow
def test_index_from_another_model_refuses_to_start(tiny_index: Path, minilm_dir: Path) -> None:
    app = create_app(Settings(index_dir=tiny_index, model_dir=minilm_dir, device="cpu"))
    with pytest.raises(IndexMismatchError) as info, TestClient(app):
        pass
    assert "384" in info.value.message and "32" in info.value.message


def test_same_dim_different_weights_refuses_to_start(
    tiny_index: Path, tiny_model_dir: Path, tmp_path
) -> None:
    """A same-sized model with other weights is caught by the fingerprint, not the dim."""
    import torch

    other = Encoder.load(tiny_model_dir, device="cpu")
    with torch.no_grad():
        other.net[0].auto_model.embeddings.word_embeddings.weight.mul_(2.0)
    other.save(tmp_path / "other")
    app = create_app(Settings(index_dir=tiny_index, model_dir=tmp_path / "other", device="cpu"))
    with pytest.raises(IndexMismatchError, match="rebuild"), TestClient(app):
        pass


def _resaved_with_max_seq_length(model_dir: Path, out: Path, max_seq_length: int) -> Path:
    """The same weights (same fingerprint), saved again with another max_seq_length."""
    shutil.copytree(model_dir, out)
    config = out / "sentence_bert_config.json"
    raw = json.loads(config.read_text())
    raw["max_seq_length"] = max_seq_length
    config.write_text(json.dumps(raw))
    assert Encoder.load(out, device="cpu").fingerprint == Encoder.load(model_dir, device="cpu").fingerprint
    return out


def test_same_weights_other_max_seq_length_refuses_to_start(
    tiny_index: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Not in the fingerprint, yet it changes every long text's vector: the model check compares it."""
    other = _resaved_with_max_seq_length(tiny_model_dir, tmp_path / "other", 8)
    app = create_app(Settings(index_dir=tiny_index, model_dir=other, device="cpu"))
    with pytest.raises(IndexMismatchError, match="truncates at 8 tokens"), TestClient(app):
        pass


def test_missing_index_refuses_to_start(tmp_path: Path, tiny_model_dir: Path) -> None:
    app = create_app(Settings(index_dir=tmp_path / "nothing", model_dir=tiny_model_dir, device="cpu"))
    with pytest.raises(IndexFormatError, match="not found"), TestClient(app):
        pass


def test_model_dir_defaults_to_the_one_recorded_in_the_index(tiny_index: Path, tiny_encoder: Encoder) -> None:
    with TestClient(create_app(Settings(index_dir=tiny_index, device="cpu"))) as c:
        assert c.get("/ready").json()["model_fingerprint"] == tiny_encoder.fingerprint


def test_openapi_schema_is_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/search", "/embed", "/health", "/ready"} <= set(schema["paths"])
