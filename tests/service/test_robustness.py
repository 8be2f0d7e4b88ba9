"""Hostile and malformed input over HTTP: every refusal is a 4xx in the one error shape, never a 500.

Plus the valid paths of the routes that test_app.py does not cover: /search/batch, the
OpenAI-compatible /v1/embeddings (float and base64) and /similarity.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.helpers import assert_error_shape

MAX_TEXTS = 8
QUERY = "the red bread makes the soup and the garlic in the kitchen ."
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(tiny_index: Path, tiny_model_dir: Path) -> Iterator[TestClient]:
    """Over the shared index, read-only: nothing a bug lets through can change it."""
    settings = Settings(
        index_dir=tiny_index,
        model_dir=tiny_model_dir,
        device="cpu",
        reload_interval_s=0,
        read_only=True,
        max_texts_per_request=MAX_TEXTS,
    )
    # A bug must show as the 500 a real client would get, not as an exception in the test.
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def writer(
    tiny_index: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """Over a private copy of the index, for the /documents routes."""
    copy = tmp_path_factory.mktemp("robust") / "idx"
    shutil.copytree(tiny_index, copy)
    settings = Settings(
        index_dir=copy,
        model_dir=tiny_model_dir,
        device="cpu",
        reload_interval_s=0,
        max_texts_per_request=MAX_TEXTS,
    )
    # A bug must show as the 500 a real client would get, not as an exception in the test.
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def post_raw(client: TestClient, path: str, raw: str | bytes) -> Any:
    """POST exactly these bytes as application/json (httpx's json= refuses NaN and friends)."""
    body = raw.encode() if isinstance(raw, str) else raw
    return client.post(path, content=body, headers=JSON)


def search_body(**fields: str) -> str:
    """A /search body with a valid query and these fields as raw JSON text (NaN, 1e400, ...)."""
    parts = [f'"query": {json.dumps(QUERY)}'] + [f"{json.dumps(k)}: {v}" for k, v in fields.items()]
    return "{" + ", ".join(parts) + "}"


# ------------------------------------------------------------------ bodies that are not a JSON object

_INVALID_UTF8_BODIES = {
    "latin1": b'{"query": "caf\xe9"}',
    "ff-fe-fd": b'{"query": "\xff\xfe\xfd"}',
    "truncated": b'{"query": "the cat", "k": 3}\xc3',
    "overlong": b'{"query": "\xc0\xaf"}',
}


@pytest.mark.parametrize("raw", list(_INVALID_UTF8_BODIES.values()), ids=list(_INVALID_UTF8_BODIES))
def test_invalid_utf8_body_is_422(client: TestClient, raw: bytes) -> None:
    assert_error_shape(post_raw(client, "/search", raw), 422, "validation_error")


@pytest.mark.parametrize("raw", list(_INVALID_UTF8_BODIES.values()), ids=list(_INVALID_UTF8_BODIES))
@pytest.mark.parametrize("path", ["/search", "/embed", "/v1/embeddings", "/similarity"])
def test_invalid_utf8_body_is_a_4xx_in_the_error_shape(client: TestClient, path: str, raw: bytes) -> None:
    resp = post_raw(client, path, raw)
    assert 400 <= resp.status_code < 500, resp.text
    assert_error_shape(resp, resp.status_code)


_SURROGATES = [
    pytest.param("POST", "/search", b'{"query": "the cat \\ud800"}', id="query-escape"),
    pytest.param("POST", "/search", b'{"query": "the cat \xed\xa0\x80"}', id="query-bytes"),
    pytest.param(
        "POST",
        "/search",
        b'{"query": "the cat", "filter": {"topic": "\\ud800"}}',
        id="filter-equal",
    ),
    pytest.param(
        "POST",
        "/search",
        b'{"query": "the cat", "filter": {"topic": {"in": ["\\udfff"]}}}',
        id="filter-in",
    ),
    pytest.param("POST", "/search/batch", b'{"queries": ["the cat", "\\ud800"]}', id="batch"),
    pytest.param("POST", "/embed", b'{"texts": ["\\ud800"]}', id="embed"),
    pytest.param("POST", "/v1/embeddings", b'{"model": "tiny", "input": "\\ud800"}', id="openai"),
    pytest.param("POST", "/similarity", b'{"pairs": [["\\ud800", "the cat"]]}', id="similarity"),
    pytest.param(
        "PUT",
        "/documents",
        b'{"documents": [{"id": "s1", "text": "the cat \\ud800"}]}',
        id="doc-text",
    ),
    pytest.param(
        "PUT",
        "/documents",
        b'{"documents": [{"id": "s2", "text": "the cat", "metadata": {"\\ud800": 1}}]}',
        id="doc-metadata-key",
    ),
    pytest.param(
        "PUT",
        "/documents",
        b'{"documents": [{"id": "s3", "text": "the cat", "metadata": {"x": "\\ud800"}}]}',
        id="doc-metadata-value",
    ),
    # Refused today: constrained strings (pattern, max_length) go through pydantic-core's UTF-8 check.
    pytest.param("PUT", "/documents", b'{"documents": [{"id": "\\ud800", "text": "the cat"}]}', id="doc-id"),
    pytest.param("POST", "/v1/embeddings", b'{"model": "\\ud800", "input": "the cat"}', id="openai-model"),
    pytest.param("POST", "/search", b'{"query": "the cat", "filter": {"\\ud800": 1}}', id="filter-key"),
    # Outside a string, the bytes are a JSON syntax error.
    pytest.param("POST", "/search", b'\xed\xa0\x80{"query": "cat"}', id="bytes-outside-a-string"),
]


@pytest.mark.parametrize(("method", "path", "raw"), _SURROGATES)
def test_lone_surrogate_is_422(writer: TestClient, method: str, path: str, raw: bytes) -> None:
    resp = writer.request(method, path, content=raw, headers=JSON)
    assert_error_shape(resp, 422, "validation_error")


@pytest.mark.parametrize(
    "raw",
    [
        "query=cat",
        "{'query': 'cat'}",  # Python, not JSON
        '{"query": "cat"',
        '{"query": "cat"}}',
        '{"query": "cat"} trailing',
        "{query: cat}",
        "\x00",
        "nul",
    ],
)
def test_body_that_is_not_json_is_422(client: TestClient, raw: str) -> None:
    err = assert_error_shape(post_raw(client, "/search", raw), 422, "validation_error")
    assert "JSON" in err["message"]


@pytest.mark.parametrize(
    "raw",
    ['["the cat"]', '[{"query": "cat"}]', '"the cat"', "42", "3.5", "true", "null", "[]"],
)
@pytest.mark.parametrize("path", ["/search", "/search/batch", "/embed", "/v1/embeddings", "/similarity"])
def test_json_that_is_not_an_object_is_422(client: TestClient, path: str, raw: str) -> None:
    assert_error_shape(post_raw(client, path, raw), 422, "validation_error")


def test_json_body_with_another_content_type_is_422(client: TestClient) -> None:
    resp = client.post(
        "/search", content=json.dumps({"query": QUERY}), headers={"content-type": "text/plain"}
    )
    assert_error_shape(resp, 422, "validation_error")


# ------------------------------------------------------------------ wrong JSON types, field by field

_WRONG_TYPES: list[tuple[str, Any]] = [
    ("query", None),
    ("query", 123),
    ("query", 1.5),
    ("query", True),
    ("query", ["the cat"]),
    ("query", {"text": "the cat"}),
    ("k", "abc"),
    ("k", 2.5),
    ("k", [5]),
    ("k", {"value": 5}),
    ("filter", "topic=cooking"),
    ("filter", ["topic", "cooking"]),
    ("filter", 3),
    ("filter", True),
    ("filter", {"topic": None}),
    ("filter", {"topic": ["cooking"]}),
    ("filter", {"topic": {}}),
    ("filter", {"topic": {"eq": "cooking"}}),
    ("filter", {"topic": {"in": "cooking"}}),
    ("filter", {"topic": {"in": None}}),
    ("filter", {"topic": {"in": [None]}}),
    ("filter", {"topic": {"in": [["cooking"]]}}),
    ("filter", {"topic": {"in": [{"a": 1}]}}),
    ("rerank", "maybe"),
    ("rerank", 2),
    ("rerank", [True]),
    ("rerank", {"on": True}),
    ("rerank", None),
    ("rerank_k", "abc"),
    ("rerank_k", 2.5),
    ("rerank_k", [5]),
    ("rerank_k", None),
    ("hybrid", "maybe"),
    ("hybrid", 2),
    ("hybrid", [False]),
    ("feedback", "3"),
    ("feedback", 1.5),
    ("feedback", True),
    ("alpha", "abc"),
    ("alpha", [0.5]),
    ("alpha", {"dense": 0.5}),
    ("nprobe", "abc"),
    ("nprobe", 1.5),
    ("nprobe", [4]),
    ("nprobe", {"n": 4}),
    ("ef_search", "abc"),
    ("ef_search", 1.5),
    ("ef_search", [4]),
    ("ef_search", {"n": 4}),
]


@pytest.mark.parametrize(("field", "value"), _WRONG_TYPES, ids=[f"{f}={v!r}" for f, v in _WRONG_TYPES])
def test_search_wrong_json_type_is_422_naming_the_field(client: TestClient, field: str, value: Any) -> None:
    body = {"query": QUERY, field: value}
    err = assert_error_shape(client.post("/search", json=body), 422, "validation_error")
    assert field in err["message"]


_LAX_COERCIONS: list[tuple[str, Any]] = [
    ("k", True),
    ("k", "5"),
    ("rerank_k", True),
    ("nprobe", True),
    ("ef_search", "8"),
    ("alpha", "0.5"),
    ("alpha", True),
    ("rerank", "yes"),
    ("hybrid", 1),
]


@pytest.mark.parametrize(("field", "value"), _LAX_COERCIONS, ids=[f"{f}={v!r}" for f, v in _LAX_COERCIONS])
def test_search_lax_coercion_of_numbers_is_422(client: TestClient, field: str, value: Any) -> None:
    err = assert_error_shape(client.post("/search", json={"query": QUERY, field: value}), 422)
    assert field in err["message"]


# ------------------------------------------------------------------ NaN, infinities and huge numbers

_NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]


@pytest.mark.parametrize("literal", [*_NON_FINITE, str(10**40), str(-(10**40)), "1e30"])
def test_k_not_finite_or_huge_is_422(client: TestClient, literal: str) -> None:
    err = assert_error_shape(post_raw(client, "/search", search_body(k=literal)), 422, "validation_error")
    assert "k" in err["message"]


@pytest.mark.parametrize("literal", [*_NON_FINITE, str(10**40), "1.0000001", "-0.001"])
def test_alpha_not_finite_or_out_of_range_is_422(client: TestClient, literal: str) -> None:
    err = assert_error_shape(post_raw(client, "/search", search_body(alpha=literal)), 422, "validation_error")
    assert "alpha" in err["message"]


@pytest.mark.parametrize("literal", [*_NON_FINITE, str(10**40), str(-(10**40)), str(2**63)])
@pytest.mark.parametrize("shape", ["equal", "in"])
def test_filter_value_not_finite_or_over_64_bits_is_422(client: TestClient, literal: str, shape: str) -> None:
    value = literal if shape == "equal" else '{"in": [1, ' + literal + "]}"
    raw = search_body(filter='{"n": ' + value + "}")
    err = assert_error_shape(post_raw(client, "/search", raw), 422, "validation_error")
    assert "filter" in err["message"]


@pytest.mark.parametrize("literal", [str(2**63 - 1), str(-(2**63) + 1), "1e300", "-0.0"])
def test_filter_value_at_the_64_bit_and_float_limits_is_accepted(client: TestClient, literal: str) -> None:
    resp = post_raw(client, "/search", search_body(filter='{"n": ' + literal + "}"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["hits"] == [] or literal == "-0.0"


@pytest.mark.parametrize("field", ["nprobe", "ef_search", "rerank_k"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e400", str(10**40), "0", "-1"])
def test_search_params_not_finite_or_out_of_range_are_422(
    client: TestClient, field: str, literal: str
) -> None:
    err = assert_error_shape(post_raw(client, "/search", search_body(**{field: literal})), 422)
    assert field in err["message"]


# ------------------------------------------------------------------ nesting


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "flt",
    [
        {"topic": {"in": [{"in": ["cooking"]}]}},
        {"topic": {"in": [{"in": [{"in": [{"in": ["cooking"]}]}]}]}},
        {"topic": {"in": [["cooking"]]}},
        {"topic": {"topic": "cooking"}},
        {"topic": {"in": ["cooking"], "and": {"n": 1}}},
    ],
)
def test_nested_filter_is_422(client: TestClient, flt: dict[str, Any]) -> None:
    err = assert_error_shape(client.post("/search", json={"query": QUERY, "filter": flt}), 422)
    assert "filter" in err["message"]


@pytest.mark.parametrize("depth", [50, 400])
def test_deep_but_parseable_filter_is_422(client: TestClient, depth: int) -> None:
    raw = search_body(filter=nested_object(depth))
    assert_error_shape(post_raw(client, "/search", raw), 422, "validation_error")


_DEEP_BODIES = {
    "list-10000": nested_list(10_000),
    "object-10000": nested_object(10_000),
    "filter-10000": search_body(filter=nested_object(10_000)),
    "in-10000": search_body(filter='{"n": {"in": [' + nested_list(10_000) + "]}}"),
}


@pytest.mark.parametrize("raw", list(_DEEP_BODIES.values()), ids=list(_DEEP_BODIES))
def test_deeply_nested_body_is_422(client: TestClient, raw: str) -> None:
    assert len(raw.encode()) < 1_000_000  # within the body limit: this is about depth, not size
    assert_error_shape(post_raw(client, "/search", raw), 422, "validation_error")


@pytest.mark.parametrize("raw", list(_DEEP_BODIES.values()), ids=list(_DEEP_BODIES))
@pytest.mark.parametrize("path", ["/search", "/embed", "/documents"])
def test_deeply_nested_body_is_a_4xx_in_the_error_shape(writer: TestClient, path: str, raw: str) -> None:
    """What the service answers today: never a 500, and the service still works afterwards."""
    method = "PUT" if path == "/documents" else "POST"
    resp = writer.request(method, path, content=raw.encode(), headers=JSON)
    assert 400 <= resp.status_code < 500, resp.text
    assert_error_shape(resp, resp.status_code)
    assert writer.post("/search", json={"query": QUERY, "k": 1}).status_code == 200


# ------------------------------------------------------------------ unknown fields, filter keys, limits


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"query": QUERY, "top_k": 5}, "top_k"),
        ({"query": QUERY, "Query": "x"}, "Query"),
        ({"query": QUERY, "": 1}, "Extra inputs"),
        ({"query": QUERY, "filter": {"topic": {"in": ["cooking"], "x": 1}}}, "x"),
        ({"query": QUERY, "filter": {"topic": {"in": ["cooking"], "not_in": ["music"]}}}, "not_in"),
        ({"query": QUERY, "filter": {"topic": {"IN": ["cooking"]}}}, "filter"),
    ],
)
def test_unknown_fields_are_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    err = assert_error_shape(client.post("/search", json=body), 422, "validation_error")
    assert needle in err["message"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        " ",
        "topic ",
        " topic",
        "to pic",
        'to"pic',
        "to'pic",
        "topic\n",
        "topic\x00",
        "a/b",
        "ä",
        "x" * 129,
    ],
)
def test_bad_filter_keys_are_422(client: TestClient, key: str) -> None:
    err = assert_error_shape(client.post("/search", json={"query": QUERY, "filter": {key: "x"}}), 422)
    assert "filter" in err["message"]


@pytest.mark.parametrize("key", ["topic", "a.b", "a:b", "a-b", "A_9", "x" * 128])
def test_good_filter_keys_are_accepted(client: TestClient, key: str) -> None:
    resp = client.post("/search", json={"query": QUERY, "filter": {key: "cooking"}})
    assert resp.status_code == 200, resp.text


def test_more_than_16_filter_keys_is_422(client: TestClient) -> None:
    sixteen = {f"key{i}": i for i in range(16)}
    assert client.post("/search", json={"query": QUERY, "filter": sixteen}).status_code == 200
    err = assert_error_shape(
        client.post("/search", json={"query": QUERY, "filter": {**sixteen, "key16": 16}}), 422
    )
    assert "16" in err["message"]


def test_in_list_longer_than_256_is_422(client: TestClient) -> None:
    ok = {"n": {"in": list(range(256))}}
    resp = client.post("/search", json={"query": QUERY, "filter": ok, "k": 50})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["hits"]) == 50
    err = assert_error_shape(
        client.post("/search", json={"query": QUERY, "filter": {"n": {"in": list(range(257))}}}), 422
    )
    assert "256" in err["message"]


def test_filters_that_are_valid_still_filter(client: TestClient) -> None:
    """The positive control for the 422s above: equality and membership both work."""
    resp = client.post("/search", json={"query": QUERY, "k": 50, "filter": {"topic": "music"}})
    assert resp.status_code == 200, resp.text
    assert {h["metadata"]["topic"] for h in resp.json()["hits"]} == {"music"}
    resp = client.post(
        "/search", json={"query": QUERY, "k": 50, "filter": {"n": {"in": [1, 3]}, "topic": "sports"}}
    )
    assert sorted(h["id"] for h in resp.json()["hits"]) == ["sports-1", "sports-3"]


@pytest.mark.parametrize(
    "flt", [{"n": True}, {"n": False}, {"n": {"in": [True]}}, {"n": {"in": [False, "x"]}}]
)
def test_boolean_filter_does_not_match_integers(client: TestClient, flt: dict[str, Any]) -> None:
    resp = client.post("/search", json={"query": QUERY, "k": 50, "filter": flt})
    assert resp.status_code == 200, resp.text
    assert resp.json()["hits"] == []  # no document has a boolean n


def test_filter_values_compare_as_json_numbers_and_strings(client: TestClient) -> None:
    def ids(flt: dict[str, Any]) -> list[str]:
        resp = client.post("/search", json={"query": QUERY, "k": 50, "filter": {"topic": "finance", **flt}})
        assert resp.status_code == 200, resp.text
        return sorted(h["id"] for h in resp.json()["hits"])

    assert ids({"n": 2}) == ids({"n": 2.0}) == ["finance-2"]
    assert ids({"n": "2"}) == []


# ------------------------------------------------------------------ features this deployment lacks


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"rerank": True}, "SEMSEARCH_RERANKER_DIR"),
        ({"rerank": True, "rerank_k": 5}, "SEMSEARCH_RERANKER_DIR"),
        ({"rerank": True, "hybrid": True}, "SEMSEARCH_RERANKER_DIR"),
    ],
)
def test_rerank_without_a_reranker_is_400_unsupported(
    client: TestClient, extra: dict[str, Any], needle: str
) -> None:
    err = assert_error_shape(client.post("/search", json={"query": QUERY, **extra}), 400, "unsupported")
    assert needle in err["message"]


def test_alpha_without_hybrid_is_422(client: TestClient) -> None:
    """Hybrid is the default search: alpha alone weighs it; with hybrid false it weighs nothing."""
    assert client.post("/search", json={"query": QUERY, "alpha": 0.5}).status_code == 200
    for extra in ({"alpha": 0.5}, {"feedback": 2}):
        body = {"query": QUERY, "hybrid": False, **extra}
        err = assert_error_shape(client.post("/search", json=body), 422)
        assert "hybrid" in err["message"]


def test_rerank_and_hybrid_false_are_plain_search(client: TestClient) -> None:
    body = {"query": QUERY, "rerank": False, "hybrid": False, "rerank_k": 5, "k": 3}
    resp = client.post("/search", json=body)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["hits"]) == 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rerank", {"query": QUERY, "documents": ["the cat", "the dog"]}),
        ("/rerank", {"query": QUERY, "documents": ["the cat"], "top_k": 1}),
        ("/classify", {"pairs": [["the cat", "the dog"]]}),
    ],
)
def test_rerank_and_classify_without_a_reranker_are_404(client: TestClient, path: str, body: Any) -> None:
    err = assert_error_shape(client.post(path, json=body), 404, "not_found")
    assert "SEMSEARCH_RERANKER_DIR" in err["message"]


# ------------------------------------------------------------------ /documents


def doc(**fields: Any) -> dict[str, Any]:
    return {"id": "robust-1", "text": "the red cat sees the dog", **fields}


@pytest.mark.parametrize(
    ("raw_docs", "needle"),
    [
        ([doc(id="")], "id"),
        ([doc(id="a\nb")], "id"),
        ([doc(id="a\rb")], "id"),
        ([doc(id="tab\there")], "id"),
        ([doc(id="nul\x00")], "id"),
        ([doc(id="del\x7f")], "id"),
        ([doc(id="x" * 513)], "id"),
        ([doc(id=5)], "id"),
        ([doc(id=None)], "id"),
        ([doc(text="")], "text"),
        ([doc(text="   \n\t ")], "text"),
        ([doc(text=None)], "text"),
        ([doc(text=["the cat"])], "text"),
        ([doc(metadata="topic=cats")], "metadata"),
        ([doc(metadata=["cats"])], "metadata"),
        ([doc(metadata=3)], "metadata"),
        ([{"id": "robust-1"}], "text"),
        ([{"text": "the cat"}], "id"),
        ([doc(extra=1)], "extra"),
        ([], "documents"),
        (["the cat"], "documents"),
        ([[]], "documents"),
    ],
)
def test_upsert_bad_documents_is_422(writer: TestClient, raw_docs: list[Any], needle: str) -> None:
    err = assert_error_shape(writer.put("/documents", json={"documents": raw_docs}), 422, "validation_error")
    assert needle in err["message"]
    assert_error_shape(writer.get("/documents/robust-1"), 404, "not_found")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("where", ["top", "nested", "list"])
def test_upsert_metadata_not_finite_is_422(writer: TestClient, literal: str, where: str) -> None:
    value = {"top": literal, "nested": '{"inner": ' + literal + "}", "list": "[1, " + literal + "]"}[where]
    raw = '{"documents": [{"id": "robust-nan", "text": "the cat", "metadata": {"x": ' + value + "}}]}"
    resp = writer.put("/documents", content=raw.encode(), headers=JSON)
    err = assert_error_shape(resp, 422, "validation_error")
    assert "metadata" in err["message"]
    assert_error_shape(writer.get("/documents/robust-nan"), 404, "not_found")


@pytest.mark.parametrize(
    "body", [{}, {"docs": []}, {"documents": {"id": "a", "text": "b"}}, {"documents": None}]
)
def test_upsert_bad_envelope_is_422(writer: TestClient, body: dict[str, Any]) -> None:
    assert_error_shape(writer.put("/documents", json=body), 422, "validation_error")


def test_upsert_more_documents_than_the_limit_is_413(writer: TestClient) -> None:
    docs = [doc(id=f"robust-many-{i}") for i in range(MAX_TEXTS + 1)]
    err = assert_error_shape(writer.put("/documents", json={"documents": docs}), 413, "payload_too_large")
    assert str(MAX_TEXTS) in err["message"]
    assert_error_shape(writer.get("/documents/robust-many-0"), 404, "not_found")


@pytest.mark.parametrize("doc_id", ["no-such-doc", "cooking-99", "a b", "ü", "x" * 512, "' OR 1=1 --"])
def test_get_and_delete_unknown_document_are_404(writer: TestClient, doc_id: str) -> None:
    err = assert_error_shape(writer.get(f"/documents/{doc_id}"), 404, "not_found")
    assert "no document" in err["message"]
    err = assert_error_shape(writer.delete(f"/documents/{doc_id}"), 404, "not_found")
    assert "no document" in err["message"]
    assert writer.get("/documents/cooking-0").status_code == 200


def test_document_id_longer_than_512_in_the_path_is_422(writer: TestClient) -> None:
    assert_error_shape(writer.get("/documents/" + "x" * 513), 422, "validation_error")
    assert_error_shape(writer.delete("/documents/" + "x" * 513), 422, "validation_error")


def test_upsert_get_delete_round_trip(writer: TestClient) -> None:
    """The positive control for the refusals above."""
    body = {"documents": [doc(id="robust-ok", metadata={"topic": "animals", "n": 7})]}
    resp = writer.put("/documents", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["upserted"] == 1
    got = writer.get("/documents/robust-ok")
    assert got.json() == {
        "id": "robust-ok",
        "text": "the red cat sees the dog",
        "metadata": {"topic": "animals", "n": 7},
    }
    assert writer.delete("/documents/robust-ok").json()["deleted"] == 1
    assert_error_shape(writer.get("/documents/robust-ok"), 404, "not_found")
    assert_error_shape(writer.delete("/documents/robust-ok"), 404, "not_found")


def test_writes_to_a_read_only_service_are_403(client: TestClient) -> None:
    assert_error_shape(client.put("/documents", json={"documents": [doc()]}), 403, "forbidden")
    assert_error_shape(client.delete("/documents/cooking-0"), 403, "forbidden")


# ------------------------------------------------------------------ /v1/embeddings


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "tiny", "input": [[1, 2, 3]]}, "input"),
        ({"model": "tiny", "input": [1, 2, 3]}, "input"),
        ({"model": "tiny", "input": [["the", "cat"]]}, "input"),
        ({"model": "tiny", "input": []}, "input"),
        ({"model": "tiny", "input": ""}, "input"),
        ({"model": "tiny", "input": ["the cat", " "]}, "input"),
        ({"model": "tiny", "input": None}, "input"),
        ({"model": "tiny"}, "input"),
        ({"input": "the cat"}, "model"),
        ({"model": "", "input": "the cat"}, "model"),
        ({"model": "tiny", "input": "the cat", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "tiny", "input": "the cat", "dimensions": 0}, "dimensions"),
        ({"model": "tiny", "input": "the cat", "dimensions": 16}, "dimensions"),
        ({"model": "tiny", "input": "the cat", "dimensions": 384}, "dimensions"),
        ({"model": "tiny", "input": "the cat", "dimensions": "abc"}, "dimensions"),
        ({"model": "tiny", "input": "the cat", "user": 5}, "user"),
        ({"model": "tiny", "input": "the cat", "temperature": 0}, "temperature"),
    ],
)
def test_openai_embeddings_bad_input_is_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    err = assert_error_shape(client.post("/v1/embeddings", json=body), 422)
    assert needle in err["message"]


def test_openai_embeddings_dimensions_message_names_both(client: TestClient) -> None:
    err = assert_error_shape(
        client.post("/v1/embeddings", json={"model": "tiny", "input": "the cat", "dimensions": 16}), 422
    )
    assert "32" in err["message"] and "16" in err["message"]


def test_openai_embeddings_too_many_inputs_is_413(client: TestClient) -> None:
    body = {"model": "tiny", "input": ["the cat"] * (MAX_TEXTS + 1)}
    assert_error_shape(client.post("/v1/embeddings", json=body), 413, "payload_too_large")


def test_openai_embeddings_float_and_base64_agree(
    client: TestClient, tiny_docs: list[dict[str, Any]]
) -> None:
    texts = [d["text"] for d in tiny_docs[:5]]
    as_float = client.post(
        "/v1/embeddings", json={"model": "tiny", "input": texts, "encoding_format": "float"}
    )
    as_b64 = client.post(
        "/v1/embeddings", json={"model": "tiny", "input": texts, "encoding_format": "base64"}
    )
    default = client.post("/v1/embeddings", json={"model": "tiny", "input": texts, "dimensions": 32})
    for resp in (as_float, as_b64, default):
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["object"] == "list"
        assert body["model"] == "tiny"
        assert [d["index"] for d in body["data"]] == list(range(len(texts)))
        assert all(d["object"] == "embedding" for d in body["data"])
        assert body["usage"]["prompt_tokens"] > 0
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]
    floats = np.array([d["embedding"] for d in as_float.json()["data"]], dtype=np.float64)
    decoded = np.stack(
        [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in as_b64.json()["data"]]
    )
    assert floats.shape == decoded.shape == (5, 32)
    np.testing.assert_allclose(decoded, floats, atol=1e-6)
    assert (
        default.json()["data"][0]["embedding"] == as_float.json()["data"][0]["embedding"]
    )  # float by default
    np.testing.assert_allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-5)
    # /embed agrees with the OpenAI route
    embed = client.post("/embed", json={"texts": texts}).json()["embeddings"]
    np.testing.assert_allclose(np.array(embed), floats, atol=1e-6)


def test_openai_embeddings_single_string_and_token_count(client: TestClient) -> None:
    one = client.post("/v1/embeddings", json={"model": "tiny", "input": "the cat"}).json()
    two = client.post(
        "/v1/embeddings", json={"model": "tiny", "input": ["the cat", "the red cat sees the dog"]}
    ).json()
    assert len(one["data"]) == 1 and one["data"][0]["index"] == 0
    assert one["data"][0]["embedding"] == pytest.approx(two["data"][0]["embedding"], abs=1e-6)
    assert 0 < one["usage"]["prompt_tokens"] < two["usage"]["prompt_tokens"]


# ------------------------------------------------------------------ /similarity


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"pairs": [["the cat", "the dog", "the bird"]]}, "pairs"),
        ({"pairs": [["the cat"]]}, "pairs"),
        ({"pairs": [[]]}, "pairs"),
        ({"pairs": []}, "pairs"),
        ({"pairs": "the cat"}, "pairs"),
        ({"pairs": ["the cat", "the dog"]}, "pairs"),
        ({"pairs": [["the cat", 5]]}, "pairs"),
        ({"pairs": [["the cat", " "]]}, "pairs[0][1]"),
        ({"pairs": [["", "the dog"]]}, "pairs[0][0]"),
        ({"pairs": [{"a": "the cat", "b": "the dog"}]}, "pairs"),
        ({}, "pairs"),
        ({"pairs": [["the cat", "the dog"]], "metric": "dot"}, "metric"),
    ],
)
def test_similarity_bad_input_is_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    err = assert_error_shape(client.post("/similarity", json=body), 422, "validation_error")
    assert needle in err["message"]


def test_similarity_too_many_texts_is_413(client: TestClient) -> None:
    pairs = [[f"the cat {i}", f"the dog {i}"] for i in range(MAX_TEXTS)]  # 2 * MAX_TEXTS distinct texts
    assert_error_shape(client.post("/similarity", json={"pairs": pairs}), 413, "payload_too_large")


def test_similarity_scores(client: TestClient, tiny_docs: list[dict[str, Any]]) -> None:
    a, b, c = (d["text"] for d in (tiny_docs[0], tiny_docs[1], tiny_docs[40]))
    resp = client.post("/similarity", json={"pairs": [[a, a], [a, b], [b, a], [a, c], [c, c]]})
    assert resp.status_code == 200, resp.text
    scores = resp.json()["scores"]
    assert len(scores) == 5
    assert scores[0] == pytest.approx(1.0, abs=1e-5)
    assert scores[4] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] == pytest.approx(scores[2], abs=1e-6)  # symmetric
    assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in scores)
    assert scores[1] < 1.0 - 1e-4 and scores[3] < 1.0 - 1e-4


# ------------------------------------------------------------------ /search/batch


def test_search_batch_keeps_input_order_and_finds_each_document(
    client: TestClient, tiny_docs: list[dict[str, Any]]
) -> None:
    picked = [tiny_docs[i] for i in (42, 7, 19, 0, 33)]
    resp = client.post("/search/batch", json={"queries": [d["text"] for d in picked], "k": 3})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"results", "took_ms"}
    assert len(body["results"]) == len(picked)
    for result, d in zip(body["results"], picked, strict=True):
        assert len(result["hits"]) == 3
        assert result["hits"][0]["id"] == d["id"]
        assert result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert result["truncated"] is False
        single = client.post("/search", json={"query": d["text"], "k": 3}).json()["hits"]
        assert [h["id"] for h in result["hits"]] == [h["id"] for h in single]


def test_search_batch_with_filter_applies_it_to_every_query(
    client: TestClient, tiny_docs: list[dict[str, Any]]
) -> None:
    queries = [tiny_docs[0]["text"], tiny_docs[45]["text"]]
    resp = client.post("/search/batch", json={"queries": queries, "k": 5, "filter": {"topic": "music"}})
    assert resp.status_code == 200, resp.text
    for result in resp.json()["results"]:
        assert {h["metadata"]["topic"] for h in result["hits"]} == {"music"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"queries": []}, 422),
        ({"queries": ["the cat", "  "]}, 422),
        ({"queries": "the cat"}, 422),
        ({"queries": [1, 2]}, 422),
        ({"queries": ["the cat"], "k": 0}, 422),
        ({"queries": ["the cat"], "query": "the dog"}, 422),
        ({"queries": ["the cat"], "rerank": True}, 422),
        ({"queries": ["the cat"] * (MAX_TEXTS + 1)}, 413),
    ],
)
def test_search_batch_bad_input(client: TestClient, body: dict[str, Any], status: int) -> None:
    assert_error_shape(client.post("/search/batch", json=body), status)
