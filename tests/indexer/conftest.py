"""Helpers shared by the indexer tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.index.folder import IndexFolder

Contents = Callable[..., tuple[list[str], np.ndarray]]


def read_contents(out: Path, every: int = 1) -> tuple[list[str], np.ndarray]:
    """(external ids in int-id order, vectors of every ``every``-th int id) of a flat index."""
    folder = IndexFolder.open(out)
    try:
        iids = list(range(folder.count))
        docs = folder.store.get_many(iids)
        vectors = np.vstack([folder.vectors.index.reconstruct(i) for i in iids[::every]])
        return [docs[i].id for i in iids], vectors
    finally:
        folder.close()


@pytest.fixture
def index_contents() -> Contents:
    return read_contents
