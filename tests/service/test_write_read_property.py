"""Property: anything a write accepts can be read back, searched, filtered and deleted, with 200
each time; anything else is refused with a 4xx in the error shape and leaves no trace.

hypothesis makes documents with ids, texts and metadata JSON of any shape within the limits
and past them: deep and wide values, odd keys, unicode (lone surrogates included), big and
non-finite numbers. Bodies are sent as raw JSON text, so NaN and huge integers reach the server.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.settings import Settings
from tests.service.helpers import assert_error_shape

pytestmark = pytest.mark.slow
EXAMPLES = 100
_counter = itertools.count()

# Mostly what a store takes, sometimes what it must refuse (past 64 bits, NaN, lone surrogates).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)


def _nest(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


deep_values = st.builds(_nest, st.integers(min_value=1, max_value=31), scalars) | st.builds(
    _nest, st.integers(min_value=32, max_value=300), scalars
)
keys = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.text(max_size=4)
metadata = st.dictionaries(keys, json_values | deep_values, max_size=6)
texts = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=120) | st.text(max_size=20)
printable = st.characters(codec="utf-8", exclude_categories=["Cc"])
ids = st.text(alphabet=printable, min_size=1, max_size=40) | st.text(max_size=8)


@pytest.fixture(scope="module")
def client(
    tiny_index: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    import shutil

    index = tmp_path_factory.mktemp("prop") / "idx"
    shutil.copytree(tiny_index, index)
    s = Settings(index_dir=index, model_dir=tiny_model_dir, device="cpu", reload_interval_s=0)
    with TestClient(create_app(s)) as c:
        yield c


def _raw(body: Any) -> str:
    return json.dumps(body, allow_nan=True)  # NaN/Infinity literals and surrogate escapes go through


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(doc_id=ids, text=texts, meta=metadata)
def test_a_write_is_refused_or_readable_searchable_filterable_and_deletable(
    client: TestClient, doc_id: str, text: str, meta: dict[str, Any]
) -> None:
    tag = f"p{next(_counter)}"
    doc_id = f"{tag}-{doc_id}"  # unique per example; the generated part still reaches the server
    meta = {**meta, "_probe": tag}
    headers = {"content-type": "application/json"}
    body = _raw({"documents": [{"id": doc_id, "text": text, "metadata": meta}]})
    put = client.put("/documents", content=body, headers=headers)
    event(f"PUT {put.status_code}")
    if put.status_code != 200:
        assert 400 <= put.status_code < 500, put.text
        assert_error_shape(put, put.status_code)
        found = client.post("/search", json={"query": "x", "filter": {"_probe": tag}, "include": []})
        assert found.status_code == 200 and found.json()["hits"] == []  # no trace of it
        return
    path = "/documents/" + quote(doc_id, safe="")  # every character escaped: none is trimmed as space
    got = client.get(path)
    assert got.status_code == 200, (ascii(doc_id), path, got.text)
    assert got.json()["text"] == text and _same_json(got.json()["metadata"], meta)
    hits = client.post("/search", json={"query": text, "k": 1000}).json()["hits"]
    assert doc_id in [h["id"] for h in hits]
    filtered = client.post("/search", json={"query": text, "filter": {"_probe": tag}})
    assert filtered.status_code == 200 and [h["id"] for h in filtered.json()["hits"]] == [doc_id]
    assert _same_json(filtered.json()["hits"][0]["metadata"], meta)
    hybrid = client.post("/search", json={"query": text, "k": 5, "hybrid": True, "filter": {"_probe": tag}})
    assert hybrid.status_code == 200 and [h["id"] for h in hybrid.json()["hits"]] == [doc_id]
    assert client.post("/search/batch", json={"queries": [text], "k": 1000}).status_code == 200
    deleted = client.delete(path)
    assert deleted.status_code == 200, deleted.text
    assert client.get(path).status_code == 404
