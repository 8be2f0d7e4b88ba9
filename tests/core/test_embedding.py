"""core.embedding: which model folder serves an index, the model check, and query unit vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.defaults import default_model_dir
from core.embedding import load_for_index, model_for_index, query_vectors, sample_texts
from core.errors import IndexMismatchError
from core.index.manifest import Manifest


def test_model_for_index_explicit_then_recorded_then_default(tmp_path: Path) -> None:
    recorded = tmp_path / "built-with"
    recorded.mkdir()
    asked = tmp_path / "asked"  # taken as given, even before it exists: the load says why not
    assert model_for_index(asked, str(recorded)) == asked
    assert model_for_index(str(asked), None) == asked
    assert model_for_index(None, str(recorded)) == recorded
    assert model_for_index("", str(recorded)) == recorded, "an empty --model is no model"
    # The recorded folder is gone (the index was copied to another machine): the default.
    assert model_for_index(None, str(tmp_path / "moved")) == default_model_dir()
    assert model_for_index(None, None) == default_model_dir()


def test_load_for_index_refuses_another_model(tiny_index: Path, tiny_model_dir: Path) -> None:
    manifest = Manifest.read(tiny_index)
    encoder = load_for_index(manifest, tiny_index, tiny_model_dir, "cpu")
    assert encoder.fingerprint == manifest.model_fingerprint
    with pytest.raises(IndexMismatchError):
        load_for_index(manifest, tiny_index, default_model_dir(), "cpu")  # MiniLM: another fingerprint


def test_query_vectors_are_unit_rows_for_a_normalized_index(tiny_index: Path) -> None:
    manifest = Manifest.read(tiny_index)
    q = np.array([[3.0, 4.0] + [0.0] * (manifest.dim - 2)], dtype=np.float32)
    assert np.isclose(np.linalg.norm(query_vectors(manifest, q)), 1.0)


def test_sample_texts_skips_blanks_and_stops() -> None:
    assert sample_texts(["a", " ", "b", "c"], n=2) == ["a", "b"]
    assert sample_texts([]) == []
