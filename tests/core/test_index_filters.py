"""Metadata filters on an index folder: k hits whenever k documents match, on every index type."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.index import folder as folder_module
from core.index.doc_store import Document
from core.index.folder import IndexFolder
from core.index.mutable import MutableIndex
from tests.core.helpers import build_planned, unit_vectors

DIM = 16
N = 2000
COLOURS = ["red", "green", "blue", "black"]


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return unit_vectors(n, DIM, seed)


def _meta(i: int) -> dict[str, object]:
    # "rare" matches 7 documents; colour a quarter each; year as int; flag as bool.
    return {"colour": COLOURS[i % 4], "year": 2000 + i % 10, "rare": i % 300 == 0, "code": str(i % 10)}


def _build(out: Path, index_type: str) -> np.ndarray:
    vectors = _vectors(N)
    build_planned(out, index_type, [Document(f"d{i}", f"text {i}", _meta(i)) for i in range(N)], vectors)
    return vectors


def _truth(vectors: np.ndarray, query: np.ndarray, ok: list[int], k: int) -> list[str]:
    scores = vectors[ok] @ query
    return [f"d{ok[j]}" for j in np.argsort(-scores)[:k]]


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivf"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[IndexFolder, np.ndarray]:
    out = tmp_path_factory.mktemp(request.param) / "idx"
    vectors = _build(out, request.param)
    folder = IndexFolder.open(out)
    yield folder, vectors
    folder.close()


@pytest.mark.parametrize("exact_limit", [20_000, 5])  # 5: forces the ANN over-fetch path
@pytest.mark.parametrize(
    ("where", "pred"),
    [
        ({"colour": "red"}, lambda m: m["colour"] == "red"),
        ({"year": {"in": [2001, 2003]}}, lambda m: m["year"] in (2001, 2003)),
        ({"colour": "blue", "year": 2002}, lambda m: m["colour"] == "blue" and m["year"] == 2002),
        ({"rare": True}, lambda m: m["rare"] is True),
        ({"code": "3"}, lambda m: m["code"] == "3"),
    ],
)
def test_filtered_search_returns_k_matching_hits(
    built: tuple[IndexFolder, np.ndarray], where, pred, exact_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(folder_module, "EXACT_FILTER_LIMIT", exact_limit)
    folder, vectors = built
    ok = [i for i in range(N) if pred(_meta(i))]
    queries = _vectors(8, seed=9)
    k = 10
    overlaps, baseline = [], []
    for query in queries:
        hits = folder.search(query[None], k, where=where)[0]
        assert len(hits) == min(k, len(ok)), where
        assert all(pred(h.metadata) for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        truth = _truth(vectors, query, ok, k)
        overlaps.append(len({h.id for h in hits} & set(truth)) / len(truth))
        unfiltered = {h.id for h in folder.search(query[None], k)[0]}
        baseline.append(len(unfiltered & set(_truth(vectors, query, list(range(N)), k))) / k)
    if len(ok) <= exact_limit or folder.manifest.index_type == "flat":
        assert min(overlaps) == 1.0, (where, overlaps)
    else:  # the ANN path: as good as the index is without a filter (random data is its worst case)
        assert np.mean(overlaps) >= np.mean(baseline) - 0.15, (where, overlaps, baseline)


def test_values_compare_as_typed_json(built: tuple[IndexFolder, np.ndarray]) -> None:
    folder, _ = built
    q = _vectors(1, seed=3)
    assert folder.search(q, 5, where={"year": "2001"})[0] == []  # a string is not the int 2001
    assert folder.search(q, 5, where={"code": 3})[0] == []  # nor an int the string "3"
    assert folder.search(q, 5, where={"colour": {"in": []}})[0] == []
    assert folder.search(q, 5, where={"missing": "x"})[0] == []
    assert len(folder.search(q, 5, where={"rare": False})[0]) == 5


def test_filter_skips_deleted_and_sees_upserted(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    vectors = _build(out, "hnsw")  # HNSW keeps deleted vectors as tombstones
    query = vectors[0]
    with MutableIndex(out) as index:
        index.delete(["d0", "d300", "d600"])
        index.upsert([Document("new", "t", {"rare": True})], query[None])
    folder = IndexFolder.open(out)
    try:
        hits = folder.search(query[None], 10, where={"rare": True})[0]
        ids = [h.id for h in hits]
        assert ids[0] == "new" and "d0" not in ids and "d300" not in ids
        assert len(ids) == 5  # 7 rare - 3 deleted + 1 new
    finally:
        folder.close()
