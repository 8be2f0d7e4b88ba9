"""Index types: the plan for each, and that each finds what flat finds."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidInputError
from core.index.vectors import FLAT_FACTORY, VectorIndex, ivf_nlist, plan_index, pq_m


def unit(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_auto_plan_by_size_and_budget() -> None:
    assert plan_index("auto", 50_000, 384).factory == FLAT_FACTORY
    big = plan_index("auto", 1_000_000, 384)
    assert big.index_type == "ivf" and big.nlist == ivf_nlist(1_000_000) == 4000
    assert big.factory == "IVF4000,Flat"
    assert 39 * big.nlist <= big.train_size <= 256 * big.nlist
    assert big.search_params == {"nprobe": 63}
    squeezed = plan_index("auto", 1_000_000, 384, memory_budget_bytes=100 * 2**20)
    assert squeezed.index_type == "ivfpq" and squeezed.factory == "IVF4000,PQ48x8"
    assert pq_m(384) == 48 and pq_m(32) == 4 and 384 % pq_m(384) == 0


def test_ivf_on_too_few_vectors_suggests_flat() -> None:
    with pytest.raises(InvalidInputError, match="use --index-type flat"):
        plan_index("ivf", 100, 32)
    with pytest.raises(InvalidInputError, match="unknown index type"):
        plan_index("lsh", 100, 32)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf", "ivfpq"])
def test_each_type_finds_near_duplicates(index_type: str) -> None:
    data = unit(3000)
    plan = plan_index(index_type, len(data), 32)
    index = VectorIndex.create(32, plan.factory)
    if plan.train_size:
        assert not index.is_trained
        index.train(data[: plan.train_size])
    ids = np.arange(1000, 1000 + len(data), dtype=np.int64)
    index.add(ids, data)
    queries = data[:200] + 0.01 * unit(200, seed=1)
    _, found = index.search(queries, 1, plan.search_params)
    recall = float((found[:, 0] == ids[:200]).mean())
    assert recall >= (1.0 if index_type == "flat" else 0.9), recall


def test_delete_where_supported_and_hnsw_reports_zero() -> None:
    data = unit(100)
    flat = VectorIndex.create(32)
    flat.add(np.arange(100), data)
    assert flat.delete(np.array([3, 4, 999])) == 2 and flat.count == 98
    hnsw = VectorIndex.create(32, "IDMap2,HNSW32")
    hnsw.add(np.arange(100), data)
    assert not hnsw.supports_remove
    assert hnsw.delete(np.array([3])) == 0 and hnsw.count == 100


def test_untrained_add_is_a_clear_error() -> None:
    index = VectorIndex.create(32, "IVF8,Flat")
    with pytest.raises(InvalidInputError, match="must be trained"):
        index.add(np.arange(3), unit(3))


@pytest.mark.parametrize("factory", ["IVF8,Flat", "IVF8,PQ4x8"])
def test_ivf_direct_map_exists_before_any_search_and_survives_writes(tmp_path, factory: str) -> None:
    """The id -> list table is built when the index is wrapped (create, load, clone), never lazily
    beside a running search; add and remove keep it right."""
    import faiss

    from core.index.vectors import VectorIndex

    x = np.random.default_rng(0).standard_normal((400, 16)).astype(np.float32)
    v = VectorIndex.create(16, factory)
    v.train(x)
    v.add(np.arange(400), x)
    no_map = faiss.DirectMap.NoMap
    assert faiss.extract_index_ivf(v.index).direct_map.type != no_map
    assert v.delete(np.array([3, 7, 9999])) == 2 and v.count == 398
    v.save(tmp_path / "i.faiss")
    loaded = VectorIndex.load(tmp_path / "i.faiss", factory)
    assert faiss.extract_index_ivf(loaded.index).direct_map.type != no_map
    np.testing.assert_allclose(loaded.reconstruct(np.array([399])), v.reconstruct(np.array([399])))
    assert faiss.extract_index_ivf(v.clone().index).direct_map.type != no_map
