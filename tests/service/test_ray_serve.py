"""``semsearch serve --engine ray``: the service on Ray Serve (a local Ray), with the same HTTP
contract as one process.

One deployment for the module (starting Ray and its replicas takes about half a minute on two
cores): a 2-shard index, two searcher replicas per shard. The tests run in file order: exact
equality with a single process first, then the contract, writes and a restart, and the
failover last.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import settings as hypothesis_settings

from core.encoder import Encoder
from core.index.folder import IndexFolder
from core.index.sharding import ShardedManifest, shard_of
from indexer.update import add_corpus
from service.settings import Settings
from tests.conftest import build_single_and_sharded
from tests.service.conftest import free_port
from tests.service.helpers import assert_error_shape
from tests.service.test_sharded_http import _hits

ray = pytest.importorskip("ray", reason="ray is an extra (pip install -e .[ray])")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is an extra (pip install -e .[ray])")

from service.ray_serve import launch  # noqa: E402

pytestmark = pytest.mark.slow
SHARDS = 2
REPLICAS = 2  # per shard: the failover test kills one


@pytest.fixture(scope="module")
def indexes(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_corpus: Path, tiny_encoder: Encoder
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ray-serve")
    return build_single_and_sharded(root, tiny_model_dir, tiny_corpus, tiny_encoder, shards=SHARDS)


@pytest.fixture(scope="module")
def ray_settings(indexes: tuple[Path, Path], tiny_model_dir: Path, tiny_reranker: Path) -> Settings:
    return Settings(
        index_dir=indexes[1],
        model_dir=tiny_model_dir,
        reranker_dir=tiny_reranker,
        reranker_precision="fp32",
        device="cpu",
        host="127.0.0.1",
        port=free_port(),
        reload_interval_s=1,
        engine="ray",
        ray_searcher_replicas=REPLICAS,
        fanout_timeout_s=5,
    )


@pytest.fixture(scope="module")
def ray_url(ray_settings: Settings) -> Iterator[str]:
    needed = launch.cpus_needed(ray_settings, SHARDS)
    ray.init(num_cpus=max(2, int(needed + 0.999)), include_dashboard=False, log_to_driver=False)
    try:
        launch.start(ray_settings)
        url = f"http://127.0.0.1:{ray_settings.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the proxy answers before the app's routes are live
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the Ray Serve deployment did not become ready within 120 s")
        yield url
    finally:
        launch.stop()


def test_two_shards_on_ray_equal_one_process_over_one_flat_index(
    ray_url: str,
    indexes: tuple[Path, Path],
    make_client: Any,
    tiny_docs: list[dict[str, Any]],
    tiny_reranker: Path,
) -> None:
    one = make_client(indexes[0], reranker_dir=tiny_reranker, reranker_precision="fp32")
    topic = tiny_docs[20]["metadata"]["topic"]
    with httpx.Client(base_url=ray_url, timeout=30) as many:
        ready = many.get("/ready").json()
        assert ready["documents"] == 50 and ready["hybrid"] is True
        compared = 0
        for doc in tiny_docs[::6]:
            for extra in (
                {},  # the default: hybrid with feedback, its two rounds over the shard replicas
                {"hybrid": False},
                {"hybrid": False, "filter": {"topic": topic}},
                {"hybrid": True, "feedback": 0},
                {"feedback": 5, "alpha": 0.3, "filter": {"topic": topic}},
                {"filter": {"topic": topic}},
                {"hybrid": True},
                {"hybrid": True, "alpha": 0.3},
                {"hybrid": True, "fusion": "rrf"},
                {"hybrid": True, "filter": {"topic": topic}},
                {"rerank": True, "rerank_k": 20},
                {"hybrid": True, "rerank": True, "rerank_k": 12, "filter": {"topic": topic}},
            ):
                ids_e, s_e = _hits(one, query=doc["text"], k=8, **extra)
                ids_g, s_g = _hits(many, query=doc["text"], k=8, **extra)
                assert ids_g == ids_e, extra
                np.testing.assert_allclose(s_g, s_e, atol=1e-5)
                compared += 1
        assert compared == 108
        # The cross-encoder's own routes, answered by the model deployment.
        query, docs = tiny_docs[0]["text"], [d["text"] for d in tiny_docs[1:6]]
        for path, body in (
            ("/rerank", {"query": query, "documents": docs}),
            ("/classify", {"pairs": [[query, docs[0]], [docs[1], docs[2]]]}),
            ("/embed", {"texts": docs}),
            ("/v1/embeddings", {"input": docs[:2], "model": "x"}),
            ("/similarity", {"pairs": [[query, docs[0]]]}),
        ):
            expected, got = one.post(path, json=body), many.post(path, json=body)
            assert got.status_code == expected.status_code == 200, (path, got.text)
            _assert_same_json(got.json(), expected.json())
        # Several queries in one request, and a document read from its shard.
        body = {"queries": [d["text"] for d in tiny_docs[:3]], "k": 5}
        expected, got = one.post("/search/batch", json=body), many.post("/search/batch", json=body)
        assert got.status_code == expected.status_code == 200, got.text
        assert [[h["id"] for h in r["hits"]] for r in got.json()["results"]] == [
            [h["id"] for h in r["hits"]] for r in expected.json()["results"]
        ]
        assert many.get(f"/documents/{tiny_docs[7]['id']}").json()["text"] == tiny_docs[7]["text"]
        # Errors keep their shape and status through the fan-out (raised in a shard replica).
        assert_error_shape(many.get("/documents/no-such-id"), 404, "not_found")
        assert_error_shape(many.post("/search", json={"query": "x", "k": 0}), 422)
        bad_filter = many.post("/search", json={"query": "x", "filter": {"n": {"$gt": "a"}}})
        assert 400 <= bad_filter.status_code < 500, bad_filter.text
        assert "/" not in bad_filter.json()["error"]["message"].replace("a/b", "")  # no server paths
        assert_error_shape(
            many.post("/search", json={"query": "x", "hybrid": True, "fusion": "rrf", "alpha": 0.5}), 422
        )


def _assert_same_json(got: Any, expected: Any) -> None:
    """Equal, numbers within 1e-5 (the same model in another process)."""
    if isinstance(expected, dict):
        assert set(got) == set(expected)
        for key in expected:
            if key not in ("took_ms", "usage"):
                _assert_same_json(got[key], expected[key])
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            _assert_same_json(g, e)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-5)
    else:
        assert got == expected


def test_the_contract_smoke_test_runs_against_the_ray_ingress(ray_url: str) -> None:
    """The single-process app's schemathesis checks (no 5xx, the one error shape), every
    operation, against the Ray ingress."""
    from tests.service import test_schemathesis as contract

    statuses: Counter[int] = Counter()
    _run_schema_directly(contract, ray_url, statuses)
    print(f"\nschemathesis on the Ray ingress: statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) > 50 and not any(s >= 500 for s in statuses), statuses


def _run_schema_directly(contract: Any, url: str, statuses: Counter[int]) -> None:
    """Every operation of the schema, a bounded number of generated cases each."""
    from hypothesis import given

    for result in contract.SCHEMA.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @hypothesis_settings(contract.HYPOTHESIS, max_examples=6)
        def one(case: Any) -> None:
            response = case.call(base_url=url, timeout=30)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=contract.CHECKS)

        one()


def _in_shard(path: Path, doc_id: str) -> bool:
    folder = IndexFolder.open(path)
    try:
        return folder.get(doc_id) is not None
    finally:
        folder.close()


def test_writes_land_on_their_shard_and_survive_a_restart_of_the_deployment(
    ray_url: str, ray_settings: Settings, indexes: tuple[Path, Path], jsonl_writer: Any, tmp_path: Path
) -> None:
    sharded = indexes[1]
    docs = [{"id": f"ray-{i}", "text": f"the violet kite number {i} over the harbour"} for i in range(10)]
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        before = client.get("/ready").json()["documents"]
        resp = client.put("/documents", json={"documents": docs})
        assert resp.status_code == 200, resp.text
        assert resp.json()["upserted"] == 10
        assert client.get("/ready").json()["documents"] == before + 10
        # Acknowledged: searchable at once (read-your-writes through the ingress), in any replica.
        for _ in range(6):
            found, _ = _hits(client, query=docs[4]["text"], k=20)
            assert {d["id"] for d in docs} <= set(found)
            assert client.get("/documents/ray-7").status_code == 200
        assert client.delete("/documents/ray-3").status_code == 200
        assert_error_shape(client.delete("/documents/ray-3"), 404, "not_found")
        assert "ray-3" not in _hits(client, query=docs[3]["text"], k=20, hybrid=True)[0]
    # Durable in the shard each id routes to, and in no other.
    paths = ShardedManifest.read(sharded).shard_paths(sharded)
    for doc in docs:
        for i, path in enumerate(paths):
            assert _in_shard(path, doc["id"]) == (i == shard_of(doc["id"], SHARDS) and doc["id"] != "ray-3")

    # Concurrent writes: two replicas of each shard commit to its folder in turn (its writer
    # lock); every acknowledged document is there afterwards, through any replica.
    def put(batch: int) -> int:
        body = {
            "documents": [{"id": f"c{batch}-{j}", "text": f"concurrent note {batch} {j}"} for j in range(5)]
        }
        with httpx.Client(base_url=ray_url, timeout=60) as c:
            return c.put("/documents", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(put, range(16))) == [200] * 16
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        assert client.get("/ready").json()["documents"] == before + 9 + 80
        for batch in range(16):
            assert client.get(f"/documents/c{batch}-{batch % 5}").status_code == 200
        for batch in range(16):
            ids = [f"c{batch}-{j}" for j in range(5)]
            assert all(client.delete(f"/documents/{i}").status_code == 200 for i in ids)
        assert client.get("/ready").json()["documents"] == before + 9
    # Another writer (`index add`) beside the running deployment, then a reload: per shard.
    more = [{"id": f"cli-{i}", "text": f"a copper lantern number {i}"} for i in range(4)]
    add_corpus(sharded, jsonl_writer(tmp_path / "more.jsonl", more), device="cpu")
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        reloaded = client.post("/admin/reload")
        assert reloaded.status_code == 200, reloaded.text
        # (a replica's own poll may have swapped first: "reloaded" may be false; the count is not)
        assert reloaded.json()["documents"] == before + 13
        for _ in range(4):  # whichever replica answers (the ingress asks for the new generation)
            assert client.get("/documents/cli-2").status_code == 200
    # Every replica replaced: nothing acknowledged is lost.
    serve.delete(launch.APP_NAME)
    serve.run(launch.build_application(ray_settings), name=launch.APP_NAME, route_prefix="/")
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.get("/ready").json()["documents"] == before + 13
        assert client.get("/documents/ray-9").json()["text"] == docs[9]["text"]
        assert client.get("/documents/ray-3").status_code == 404
        found, _ = _hits(client, query=docs[6]["text"], k=20, hybrid=True)
        assert {d["id"] for d in docs if d["id"] != "ray-3"} <= set(found)


def _replica_pids(deployment: str, want: int) -> set[int]:
    handle = serve.get_deployment_handle(deployment, app_name=launch.APP_NAME)
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < want and time.monotonic() < deadline:
        pids.add(handle.pid.remote().result(timeout_s=10))
    return pids


def test_a_killed_searcher_replica_costs_at_most_503s_and_the_loop_recovers(
    ray_url: str, tiny_docs: list[dict[str, Any]]
) -> None:
    pids = _replica_pids(launch.shard_deployment_name(0), REPLICAS)
    assert len(pids) == REPLICAS
    statuses: Counter[int] = Counter()
    tail: list[int] = []
    killed = False
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        for i in range(400):  # bounded in count and in time
            if time.monotonic() > deadline:
                break
            if i == 20:
                os.kill(min(pids), signal.SIGKILL)
                killed = True
            body = {"query": tiny_docs[i % len(tiny_docs)]["text"], "k": 5, "hybrid": i % 2 == 0}
            resp = client.post("/search", json=body)
            statuses[resp.status_code] += 1
            if resp.status_code == 503:
                assert resp.headers.get("retry-after"), "a 503 without Retry-After"
                assert_error_shape(resp, 503)
            tail.append(resp.status_code)
            if i > 60 and tail[-20:] == [200] * 20:
                break
    print(f"\nfailover loop: {sum(statuses.values())} requests, statuses {dict(statuses)}")
    assert killed
    assert set(statuses) <= {200, 503}, statuses
    assert tail[-20:] == [200] * 20, statuses  # recovered
    # Serve replaced the replica.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _replica_pids(launch.shard_deployment_name(0), REPLICAS)
        if len(now) == REPLICAS and min(pids) not in now:
            break
        time.sleep(1)
    assert len(now) == REPLICAS and min(pids) not in now


def test_a_shard_with_every_replica_killed_answers_503_with_retry_after_until_serve_replaces_them(
    ray_url: str, tiny_docs: list[dict[str, Any]]
) -> None:
    """No replica of shard 1 at all for a while: every search waits at most fanout_timeout_s,
    then answers 503 with Retry-After (never a hang or a 500), until Serve has replaced them."""
    shard = launch.shard_deployment_name(1)
    pids = _replica_pids(shard, REPLICAS)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    statuses: Counter[int] = Counter()
    slowest = 0.0
    recovered = False
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        for i in range(300):
            if time.monotonic() > deadline:
                break
            started = time.monotonic()
            resp = client.post("/search", json={"query": tiny_docs[i % 50]["text"], "k": 5})
            slowest = max(slowest, time.monotonic() - started)
            statuses[resp.status_code] += 1
            if resp.status_code == 503:
                assert resp.headers.get("retry-after"), "a 503 without Retry-After"
                assert_error_shape(resp, 503)
            elif resp.status_code == 200 and statuses[503]:
                recovered = True
                break
    print(f"\nall replicas of {shard} killed: statuses {dict(statuses)}, slowest {slowest:.1f} s")
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] >= 1 and recovered, statuses
    assert slowest < 30  # never a hang: fanout_timeout_s is 5, plus a busy 2-core machine's work


def test_an_unsharded_index_on_ray_is_replicated_serving_equal_to_one_process(
    ray_url: str,
    ray_settings: Settings,
    indexes: tuple[Path, Path],
    make_client: Any,
    tiny_docs: list[dict[str, Any]],
) -> None:
    """The same deployment over an ordinary index folder: one shard, two replicas."""
    flat = ray_settings.model_copy(update={"index_dir": indexes[0], "reranker_dir": None})
    serve.delete(launch.APP_NAME)
    serve.run(launch.build_application(flat), name=launch.APP_NAME, route_prefix="/")
    one = make_client(indexes[0])
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.get("/ready").json()["documents"] == 50
        assert len(_replica_pids(launch.shard_deployment_name(0), REPLICAS)) == REPLICAS
        for doc in tiny_docs[::10]:
            for extra in ({}, {"hybrid": True}, {"filter": {"topic": doc["metadata"]["topic"]}}):
                ids_e, s_e = _hits(one, query=doc["text"], k=6, **extra)
                ids_g, s_g = _hits(client, query=doc["text"], k=6, **extra)
                assert ids_g == ids_e
                np.testing.assert_allclose(s_g, s_e, atol=1e-5)
