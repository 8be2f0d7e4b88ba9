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


def test_sharded_ray_build_equals_sharded_local_build(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder: Encoder, tiny_corpus, index_contents
) -> None:
    from core.index.sharding import ShardedManifest
    from indexer.sharded import build_sharded

    outputs = {}
    for engine in ("local", "ray"):
        outputs[engine] = tmp_path / engine
        cfg = BuildConfig(
            model=str(tiny_model_dir),
            corpus=str(tiny_corpus),
            output=str(outputs[engine]),
            progress=False,
            chunk_size=20,
            engine=engine,
            ray_actors=1,
            device="cpu",
            precision="fp32",
            shards=2,
        )
        assert build_sharded(cfg, tiny_encoder).documents == 50
    assert not ray.is_initialized()
    local, distributed = (ShardedManifest.read(p).shard_paths(p) for p in outputs.values())
    for a, b in zip(local, distributed, strict=True):
        ids_a, vec_a = index_contents(a)
        ids_b, vec_b = index_contents(b)
        assert ids_a == ids_b and ids_a
        np.testing.assert_allclose(vec_b, vec_a, atol=1e-5)
