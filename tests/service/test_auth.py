"""API keys (write and read-only), public routes, CORS."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.auth import AuthMiddleware
from tests.service.helpers import assert_error_shape

DOC = {"id": "a1", "text": "the cat sees the dog ."}


def test_auth_off_lets_everyone_in(tiny_index: Path, make_client) -> None:
    client = make_client(tiny_index)
    assert client.post("/search", json={"query": "cat"}).status_code == 200
    assert client.get("/metrics").status_code == 200


def test_keys_guard_every_route_but_the_public_ones(fresh_index: Path, make_client, tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# writers\nfile-key\n\n")
    client = make_client(fresh_index, api_keys="w1, w2", api_keys_file=keyfile, read_only_api_keys="r1")
    for path in ("/health", "/ready", "/"):
        assert client.get(path).status_code == 200, path

    search = {"query": "the cat"}
    for headers, code in [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer nope"}, "unauthorized"),
        ({"Authorization": "Basic w1"}, "unauthorized"),
        ({"Authorization": "Bearer "}, "unauthorized"),
    ]:
        resp = client.post("/search", json=search, headers=headers)
        assert_error_shape(resp, 401, code)
        assert resp.headers["www-authenticate"] == "Bearer"
    assert_error_shape(client.get("/metrics"), 401)
    assert_error_shape(client.get("/no-such-route"), 401)  # no route discovery without a key
    assert_error_shape(client.get("/openapi.json"), 401)

    for key in ("w1", "w2", "file-key", "r1"):
        auth = {"Authorization": f"Bearer {key}"}
        assert client.post("/search", json=search, headers=auth).status_code == 200, key
        assert client.get("/documents/none", headers=auth).status_code == 404

    read = {"Authorization": "Bearer r1"}
    assert_error_shape(client.put("/documents", json={"documents": [DOC]}, headers=read), 403, "forbidden")
    assert_error_shape(client.delete("/documents/a1", headers=read), 403, "forbidden")
    assert_error_shape(client.post("/admin/reload", headers=read), 403, "forbidden")

    write = {"Authorization": "Bearer w2"}
    assert client.put("/documents", json={"documents": [DOC]}, headers=write).status_code == 200
    assert client.get("/documents/a1", headers=read).json()["id"] == "a1"
    assert client.post("/admin/reload", headers=write).status_code == 200


def test_key_check_compares_every_key() -> None:
    """Constant time: the right key is found wherever it is in the list, by comparing digests
    of all keys (a dict lookup or an early return would leak which prefix matched)."""
    mw = AuthMiddleware(app=None, write_keys=["a" * 40, "b" * 40], read_keys=["c" * 40])  # type: ignore[arg-type]
    assert mw.check("Bearer " + "b" * 40) == "write"
    assert mw.check("Bearer " + "c" * 40) == "read"
    assert mw.check("bearer " + "a" * 40) == "write"
    assert mw.check("Bearer " + "a" * 39) is None
    assert mw.check(None) is None


@pytest.mark.parametrize("origins", ["", "https://app.example"])
def test_cors_is_off_by_default_and_configurable(tiny_index: Path, make_client, origins: str) -> None:
    client = make_client(tiny_index, cors_origins=origins)
    pre = client.options(
        "/search",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    got = client.post("/search", json={"query": "cat"}, headers={"Origin": "https://app.example"})
    if origins:
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert got.headers["access-control-allow-origin"] == "https://app.example"
    else:
        assert "access-control-allow-origin" not in pre.headers
        assert "access-control-allow-origin" not in got.headers
