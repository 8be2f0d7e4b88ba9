"""Property-based API testing with schemathesis (4.x) against the app's own OpenAPI schema.

Every operation gets schema-valid and schema-violating requests (bounded, deterministic); no
answer may be a 5xx and every 4xx must be ``{"error": {"code", "message"}}``. The read
operations run against the shared index through a read-only server; the write operations
(PUT/DELETE /documents, POST /admin/reload) against a private copy of it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ThreadedServer

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a dev extra (pip install -e .[dev])"
)

from schemathesis.checks import not_a_server_error  # noqa: E402

pytestmark = pytest.mark.slow

SEED = 20240611
MAX_EXAMPLES = 25
WRITES = {("PUT", "/documents"), ("DELETE", "/documents/{doc_id}"), ("POST", "/admin/reload")}

# Fuzzing is capped by max_examples; the examples and coverage phases are deterministic and
# bounded by the schema (boundary values, missing fields, wrong types). Stateful runs are off:
# they chain calls without a fixed bound.
CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
}
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx answers ``{"error": {"code": str, "message": str}}`` as JSON."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), f"{response.status_code} with {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"not the error shape: {body!r}"
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, f"not the error shape: {body!r}"
    assert isinstance(err["code"], str) and err["code"], f"empty code: {body!r}"
    assert isinstance(err["message"], str) and err["message"], f"empty message: {body!r}"
    return None


STATUSES: Counter[int] = Counter()  # every answer of this module's runs, for the summary line


def tally(ctx: Any, response: Any, case: Any) -> bool | None:
    STATUSES[response.status_code] += 1
    return None


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    yield
    total = sum(STATUSES.values())
    print(f"\nschemathesis: {total} requests, statuses {dict(sorted(STATUSES.items()))}")


CHECKS = [not_a_server_error, error_shape, tally]


class _FakeResponse:
    def __init__(self, status: int, body: Any, content_type: str = "application/json") -> None:
        self.status_code = status
        self.headers = {"content-type": [content_type]}
        self.body = body

    def json(self) -> Any:
        return self.body


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (422, {"detail": [{"msg": "field required"}]}, "application/json"),  # FastAPI's own shape
        (404, {"error": {"code": "not_found"}}, "application/json"),
        (400, {"error": {"code": "", "message": "x"}}, "application/json"),
        (401, {"error": {"code": "x", "message": "y"}, "extra": 1}, "application/json"),
        (405, "Method Not Allowed", "text/plain"),
    ],
)
def test_error_shape_check_rejects_other_shapes(status: int, body: Any, content_type: str) -> None:
    with pytest.raises(AssertionError):
        error_shape(None, _FakeResponse(status, body, content_type), None)
    assert error_shape(None, _FakeResponse(200, body, content_type), None) is None  # only 4xx are checked
    assert error_shape(None, _FakeResponse(status, {"error": {"code": "c", "message": "m"}}), None) is None


def server_settings(index: Path, model: Path, **overrides: Any) -> Settings:
    return Settings(index_dir=index, model_dir=model, device="cpu", reload_interval_s=0, **overrides)


# The schema the app serves at /openapi.json, built without loading a model or an index.
# (schemathesis' lazy ``from_fixture`` loader is not usable here: it sets ``node._nodeid``,
# which pytest 9 no longer has.)
SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(device="cpu")).openapi(), config=schemathesis.Config.from_dict(CONFIG)
)


@pytest.fixture(scope="module")
def read_server(tiny_index: Path, tiny_model_dir: Path) -> Iterator[ThreadedServer]:
    """The shared index, read-only: a generated write could not change it."""
    with ThreadedServer(server_settings(tiny_index, tiny_model_dir, read_only=True)) as server:
        yield server


@pytest.fixture
def write_server(fresh_index: Path, tiny_model_dir: Path) -> Iterator[ThreadedServer]:
    """A private copy of the index per write operation."""
    with ThreadedServer(server_settings(fresh_index, tiny_model_dir)) as server:
        yield server


def is_write(ctx: Any) -> bool:
    """For a filter context or a case: both carry the operation."""
    return (ctx.operation.method.upper(), ctx.operation.path) in WRITES


@SCHEMA.exclude(is_write).parametrize()
@HYPOTHESIS
def test_read_operations(case: Any, read_server: ThreadedServer) -> None:
    case.call_and_validate(base_url=read_server.url, checks=CHECKS, timeout=30)


@SCHEMA.include(is_write).parametrize()
@HYPOTHESIS
def test_write_operations(case: Any, write_server: ThreadedServer) -> None:
    case.call_and_validate(base_url=write_server.url, checks=CHECKS, timeout=30)


# ------------------------------------------------------------------ auth on
# The same operations against a service with API keys: with the write key every route behaves as
# above; with a read-only key writes are 403; with no key everything but the public routes is 401.
# Every answer is still never a 5xx and every 4xx the one error shape.
WRITE_KEY, READ_KEY = "campaign-write-key", "campaign-read-key"


@pytest.fixture(scope="module")
def keyed_server(
    tiny_index: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    import shutil

    index = tmp_path_factory.mktemp("keyed") / "idx"
    shutil.copytree(tiny_index, index)
    settings = server_settings(index, tiny_model_dir, api_keys=WRITE_KEY, read_only_api_keys=READ_KEY)
    with ThreadedServer(settings) as server:
        yield server


def _auth_status(ctx: Any, response: Any, case: Any) -> bool | None:
    """Without a key, only the public routes (and CORS preflights, OPTIONS) answer anything but 401."""
    preflight = response.request.method == "OPTIONS"
    if (
        case.operation.path not in ("/health", "/ready", "/")
        and not preflight
        and response.status_code != 401
    ):
        raise AssertionError(
            f"{case.operation.method} {case.operation.path}: {response.status_code} without a key"
        )
    return None


def _read_key_cannot_write(ctx: Any, response: Any, case: Any) -> bool | None:
    if is_write(case) and response.status_code < 400:
        raise AssertionError(f"a read-only key wrote: {case.operation.method} {case.operation.path}")
    return None


@SCHEMA.parametrize()
@HYPOTHESIS
def test_every_operation_with_the_write_key(case: Any, keyed_server: ThreadedServer) -> None:
    case.call_and_validate(
        base_url=keyed_server.url, checks=CHECKS, timeout=30, headers={"Authorization": f"Bearer {WRITE_KEY}"}
    )


@SCHEMA.parametrize()
@settings(HYPOTHESIS, max_examples=8)
def test_every_operation_with_a_read_only_key(case: Any, keyed_server: ThreadedServer) -> None:
    case.call_and_validate(
        base_url=keyed_server.url,
        checks=[*CHECKS, _read_key_cannot_write],
        timeout=30,
        headers={"Authorization": f"Bearer {READ_KEY}"},
    )


@SCHEMA.parametrize()
@settings(HYPOTHESIS, max_examples=8)
def test_every_operation_without_a_key_is_401(case: Any, keyed_server: ThreadedServer) -> None:
    case.call_and_validate(base_url=keyed_server.url, checks=[*CHECKS, _auth_status], timeout=30)
