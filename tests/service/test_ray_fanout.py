"""The Ray Serve fan-out's rules, without a Ray cluster (milliseconds): what a failed, slow or
dead shard call becomes, what a write that fails on one shard leaves noted, and that a searcher
replica behind the acknowledged generation answers 503, never an older snapshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import DeadlineError, InvalidInputError, NotFoundError, NotReadyError
from core.index.doc_store import Document
from core.index.manifest import Manifest
from service.live_index import WriteResult
from service.settings import Settings

ray_errors = pytest.importorskip("ray.exceptions", reason="ray is an extra (pip install -e .[ray])")
pytest.importorskip("ray.serve")

from service.model_facts import EncoderFacts, ModelFacts  # noqa: E402
from service.ray_serve.fanout import Fanout  # noqa: E402
from service.ray_serve.remote_engine import RemoteIndex  # noqa: E402
from service.ray_serve.shard_replica import ShardReplica, ShardState  # noqa: E402


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_shard_s_own_error_comes_back_as_itself_without_ray_s_traceback() -> None:
    async def failing() -> None:
        raise ray_errors.RayTaskError(
            "search", "Traceback: /srv/secret/shard_replica.py", NotFoundError("no doc 'x'")
        )

    with pytest.raises(NotFoundError) as caught:
        _run(Fanout(5, 1).call("shard 0", failing))
    assert str(caught.value) == "no doc 'x'" and "/srv" not in str(caught.value)
    assert not isinstance(caught.value, ray_errors.RayError)


def test_a_slow_shard_is_a_deadline_503_and_a_dead_one_is_retried_then_not_ready() -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    with pytest.raises(DeadlineError, match=r"within 0\.2 s"):
        _run(Fanout(0.2, 1).call("shard 1", slow))

    calls: list[int] = []

    async def dead() -> None:
        calls.append(1)
        raise ray_errors.ActorDiedError()

    with pytest.raises(NotReadyError, match="shard 2 is unavailable"):
        _run(Fanout(5, 2).call("shard 2", dead))
    assert len(calls) == 3  # the first try and two retries
    calls.clear()
    with pytest.raises(NotReadyError):
        _run(Fanout(5, 2).call("shard 2", dead, retry=False))
    assert len(calls) == 1  # a write is never sent twice

    def raises_at_once() -> Any:  # .remote() itself may raise: still the service's error
        raise ray_errors.ActorUnavailableError("gone", None)

    with pytest.raises(NotReadyError):
        _run(Fanout(5, 0).call("shard 3", raises_at_once))

    answers = iter([ray_errors.ActorDiedError(), "ok"])

    async def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    assert _run(Fanout(5, 1).call("shard 4", flaky)) == "ok"  # another replica answered


class _Method:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        return self.fn(*args)


class _Shard:
    """A stand-in for a shard deployment's handle."""

    def __init__(self, generation: int, fail: BaseException | None = None) -> None:
        self.generation, self.fail = generation, fail
        self.upsert = _Method(self._upsert)

    async def _upsert(self, docs: list[Document], vectors: np.ndarray) -> tuple[WriteResult, ShardState]:
        if self.fail is not None:
            raise self.fail
        self.generation += 1
        return WriteResult(self.generation, upserted=len(docs)), ShardState(0, self.generation, _manifest())


def _manifest() -> Manifest:
    return Manifest(model_fingerprint="f", dim=4, normalized=True, count=0, max_seq_length=8)


def test_a_write_that_fails_on_one_shard_notes_the_shards_that_committed() -> None:
    from core.index.sharding import ShardedManifest, shard_of

    top = ShardedManifest(
        shards=2, model_fingerprint="f", model_dir=None, dim=4, max_seq_length=8, precision="fp32"
    )
    shards = [_Shard(3), _Shard(7, InvalidInputError("shard 1 refused it"))]
    states = [ShardState(0, 3, _manifest()), ShardState(0, 7, _manifest())]
    index = RemoteIndex(Path("idx"), top, shards, states, Fanout(5, 1))
    ids = [f"d{i}" for i in range(20)]
    assert {shard_of(i, 2) for i in ids} == {0, 1}  # the write spans both shards
    docs = [Document(i, "text") for i in ids]
    with pytest.raises(InvalidInputError, match="refused"):
        _run(index.upsert(docs, np.ones((20, 4), np.float32)))
    assert index.states[0].generation == 4  # shard 0 committed: later reads ask for it
    assert index.states[1].generation == 7


class _Facts:
    def __init__(self, facts: ModelFacts) -> None:
        self.facts = _Method(self._facts)
        self._value = facts

    async def _facts(self) -> ModelFacts:
        return self._value


def test_a_replica_behind_the_acknowledged_generation_answers_503(
    fresh_index: Path, tiny_encoder: Any
) -> None:
    from service.search_query import Query

    facts = ModelFacts(EncoderFacts.of(tiny_encoder), {}, 0.0, 1, None)
    settings = Settings(index_dir=fresh_index, reload_interval_s=0)

    async def scenario() -> None:
        replica = ShardReplica.__new__(ShardReplica)
        await ShardReplica.__init__(replica, settings, str(fresh_index), _Facts(facts))
        try:
            state = await replica.state()
            query = Query(["the red guitar"], 3)
            vectors = tiny_encoder.encode(query.texts)
            hits = await replica.search(vectors, query, state.generation)
            assert len(hits[0]) == 3
            with pytest.raises(NotReadyError, match="behind the acknowledged"):
                await replica.search(vectors, query, state.generation + 5)
            result, after = await replica.upsert([Document("new-1", "a red guitar")], vectors[:1])
            assert after.generation >= result.generation > state.generation
            assert (await replica.get("new-1", after.generation)) is not None
        finally:
            replica.__del__()

    _run(scenario())


def test_a_shard_replica_builds_its_bm25_at_start_when_hybrid_is_the_default(
    fresh_index: Path, tiny_encoder: Any
) -> None:
    facts = ModelFacts(EncoderFacts.of(tiny_encoder), {}, 0.0, 1, None)

    async def start(mode: str) -> ShardReplica:
        replica = ShardReplica.__new__(ShardReplica)
        settings = Settings(index_dir=fresh_index, reload_interval_s=0, search_mode=mode)
        await ShardReplica.__init__(replica, settings, str(fresh_index), _Facts(facts))
        return replica

    hybrid = _run(start("hybrid"))
    try:
        assert hybrid.warm is not None
        hybrid.warm.join(10)
        assert hybrid.live.lexical.builds == 1  # before any search asked for it
    finally:
        hybrid.__del__()
    dense = _run(start("dense"))
    try:
        assert dense.warm is None and dense.live.lexical.builds == 0
    finally:
        dense.__del__()
