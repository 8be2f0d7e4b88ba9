"""--engine ray: a local Ray on 2 CPUs builds the same index as the single-process build."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.encoder import Encoder
from indexer.build import BuildConfig, build_index

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")


def test_ray_build_equals_local_build(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_corpus, index_contents
) -> None:
    local = tmp_path / "local"
    build_index(
        BuildConfig(
            model=str(tiny_model_dir),
            corpus=str(tiny_corpus),
            output=str(local),
            progress=False,
            chunk_size=20,
        ),
        tiny_encoder,
    )
    distributed = tmp_path / "ray"
    report = build_index(
        BuildConfig(
            model=str(tiny_model_dir),
            corpus=str(tiny_corpus),
            output=str(distributed),
            progress=False,
            chunk_size=20,
            engine="ray",
            ray_actors=2,
            device="cpu",
        ),
        tiny_encoder,
    )
    assert report.documents == 50
    assert not ray.is_initialized()  # the engine shut down the Ray it started
    ids_local, vec_local = index_contents(local)
    ids_ray, vec_ray = index_contents(distributed)
    assert ids_ray == ids_local
    np.testing.assert_allclose(vec_ray, vec_local, atol=1e-5)
