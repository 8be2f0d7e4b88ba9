"""core.unit_vectors: the unit-vector guarantee every index writer calls, and row cosines."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.unit_vectors import cosine_rows, l2_normalise, unit_rows

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 16)), elements=finite))
def test_unit_rows_gives_norm_one_or_leaves_zero_rows(vectors: np.ndarray) -> None:
    out = unit_rows(vectors)
    assert out.dtype == np.float32 and out.shape == vectors.shape
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    nonzero = np.linalg.norm(vectors.astype(np.float64), axis=1) > 1e-6
    assert np.allclose(norms[nonzero], 1.0, atol=1e-4)


def test_rows_already_unit_are_kept_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    unit = l2_normalise(rng.normal(size=(4, 8)))
    scaled = rng.normal(size=(2, 8)).astype(np.float32) * 3
    mixed = np.vstack([unit, scaled])
    out = unit_rows(mixed)
    assert np.array_equal(out[:4], unit), "a stored unit vector is not rewritten"
    assert np.allclose(np.linalg.norm(out[4:], axis=1), 1.0, atol=1e-6)
    assert out is not mixed and np.array_equal(mixed[4:], scaled), "the input is not changed"


def test_cosine_rows() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], dtype=np.float32)
    b = np.array([[5.0, 0.0], [0.0, -1.0], [1.0, 0.0]], dtype=np.float32)
    assert np.allclose(cosine_rows(a, b), [1.0, -1.0, np.sqrt(0.5)], atol=1e-6)
