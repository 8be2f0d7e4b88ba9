"""/v1/embeddings through the official ``openai`` client, against a real uvicorn server.

The client asks for ``encoding_format="base64"`` when the caller gives none and decodes the
little-endian float32 itself, so both encodings are exercised through its own code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.settings import Settings
from tests.service.conftest import ThreadedServer

openai = pytest.importorskip("openai", reason="the openai client is a dev extra (pip install -e .[dev])")

TEXTS = ["the red cat sees the dog", "the blue planet and the moon in the sky ."]


def server_settings(index: Path, model: Path, **overrides: Any) -> Settings:
    return Settings(index_dir=index, model_dir=model, device="cpu", reload_interval_s=0, **overrides)


def openai_client(server: ThreadedServer, api_key: str = "unused") -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=30)


def embed(server: ThreadedServer, texts: list[str], key: str | None = None) -> np.ndarray:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    resp = httpx.post(server.url + "/embed", json={"texts": texts}, headers=headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return np.array(resp.json()["embeddings"], dtype=np.float64)


@pytest.fixture(scope="module")
def server(tiny_index: Path, tiny_model_dir: Path) -> Iterator[ThreadedServer]:
    with ThreadedServer(server_settings(tiny_index, tiny_model_dir)) as s:
        yield s


def test_default_request_is_base64_and_decodes_to_the_embed_vectors(server: ThreadedServer) -> None:
    client = openai_client(server)
    raw = client.embeddings.with_raw_response.create(model="tiny", input=TEXTS)
    sent = json.loads(raw.http_request.content)
    assert sent["encoding_format"] == "base64"  # the client's default, decoded by the client
    assert raw.http_response.status_code == 200
    result = raw.parse()
    assert result.object == "list"
    assert result.model == "tiny"
    assert [d.index for d in result.data] == [0, 1]
    assert all(d.object == "embedding" for d in result.data)
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens
    vectors = np.array([d.embedding for d in result.data], dtype=np.float64)
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(vectors, embed(server, TEXTS), atol=1e-6)


def test_plain_create_with_two_texts(server: ThreadedServer) -> None:
    result = openai_client(server).embeddings.create(model="tiny", input=["a", "b"])
    vectors = np.array([d.embedding for d in result.data], dtype=np.float64)
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(vectors, embed(server, ["a", "b"]), atol=1e-6)


def test_single_string_input(server: ThreadedServer) -> None:
    result = openai_client(server).embeddings.create(model="tiny", input=TEXTS[0])
    assert len(result.data) == 1 and result.data[0].index == 0
    np.testing.assert_allclose(np.array(result.data[0].embedding), embed(server, TEXTS[:1])[0], atol=1e-6)
    assert result.usage.prompt_tokens > 0


def test_float_encoding_format(server: ThreadedServer) -> None:
    client = openai_client(server)
    as_float = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float")
    as_base64 = client.embeddings.create(model="tiny", input=TEXTS)
    assert all(isinstance(d.embedding, list) for d in as_float.data)
    floats = np.array([d.embedding for d in as_float.data], dtype=np.float64)
    np.testing.assert_allclose(floats, np.array([d.embedding for d in as_base64.data]), atol=1e-6)
    np.testing.assert_allclose(floats, embed(server, TEXTS), atol=1e-6)
    same_dim = client.embeddings.create(model="tiny", input=TEXTS, encoding_format="float", dimensions=32)
    assert same_dim.data[0].embedding == as_float.data[0].embedding


def test_server_refusals_surface_as_openai_errors(server: ThreadedServer) -> None:
    client = openai_client(server)
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.embeddings.create(model="tiny", input=TEXTS, dimensions=16)
    assert info.value.status_code == 422
    assert "dimensions" in str(info.value.message)
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model="tiny", input=[[1, 2, 3]])  # token arrays are not accepted


def test_api_keys(tiny_index: Path, tiny_model_dir: Path) -> None:
    with ThreadedServer(server_settings(tiny_index, tiny_model_dir, api_keys="k1")) as server:
        result = openai_client(server, api_key="k1").embeddings.create(model="tiny", input=TEXTS)
        vectors = np.array([d.embedding for d in result.data], dtype=np.float64)
        np.testing.assert_allclose(vectors, embed(server, TEXTS, key="k1"), atol=1e-6)

        with pytest.raises(openai.AuthenticationError) as info:
            openai_client(server, api_key="k2").embeddings.create(model="tiny", input=TEXTS)
        assert info.value.status_code == 401
        assert info.value.body == {"code": "unauthorized", "message": info.value.body["message"]}
        assert "API key" in info.value.body["message"]
