"""The GPU paths: CUDA encoding and faiss-gpu training. CI has no GPU, so the CUDA tests skip
there, with the reason shown in pytest's summary (``-ra``); the CPU fallback is tested always."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from core.index.vectors import VectorIndex, gpu_count
from indexer.build import BuildConfig, build_index

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU here: the CUDA encode path is not exercised"
)
needs_faiss_gpu = pytest.mark.skipif(
    gpu_count() == 0, reason="faiss has no GPU support here (faiss-cpu) or sees no GPU"
)


def _cfg(model: Path, corpus: Path, out: Path, device: str) -> BuildConfig:
    return BuildConfig(
        model=str(model),
        corpus=str(corpus),
        output=str(out),
        device=device,
        progress=False,
        index_type="flat",
    )


@needs_cuda
def test_cuda_build_matches_the_cpu_build(
    tiny_model_dir: Path, tiny_corpus: Path, tmp_path: Path, index_contents
) -> None:
    cpu = build_index(_cfg(tiny_model_dir, tiny_corpus, tmp_path / "cpu", "cpu"))
    gpu = build_index(_cfg(tiny_model_dir, tiny_corpus, tmp_path / "gpu", "cuda"))
    assert gpu.manifest.count == cpu.manifest.count
    cpu_ids, cpu_vecs = index_contents(tmp_path / "cpu")
    gpu_ids, gpu_vecs = index_contents(tmp_path / "gpu")
    assert gpu_ids == cpu_ids
    cosine = (cpu_vecs * gpu_vecs).sum(1)  # unit vectors; fp16/bf16 autocast on the GPU
    assert cosine.min() > 0.99


@needs_faiss_gpu
def test_ivf_trains_on_the_gpu_and_stays_a_cpu_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.create(32, "IVF16,Flat")
    with caplog.at_level(logging.INFO):
        index.train(vectors)
    assert "GPU(s)" in caplog.text and index.is_trained  # "training ... on N GPU(s)"
    index.add(np.arange(4000, dtype=np.int64), vectors)
    index.save(tmp_path / "index.faiss")
    loaded = VectorIndex.load(tmp_path / "index.faiss", "IVF16,Flat")
    assert loaded.count == 4000
    assert "Gpu" not in type(loaded.index).__name__  # stored and served as a CPU index
    _, ids = loaded.search(vectors[:5], 1)  # nprobe 1 probes each vector's own list
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: auto picks it")
def test_auto_device_without_a_gpu_embeds_on_cpu_and_says_so(
    tiny_model_dir: Path, tiny_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        report = build_index(_cfg(tiny_model_dir, tiny_corpus, tmp_path / "idx", "auto"))
    assert report.documents == 50
    assert "torch sees no CUDA GPU, so the corpus is embedded on CPU" in caplog.text


def test_cuda_requested_without_a_gpu_is_a_clear_error(
    tiny_model_dir: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    from core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="CUDA is not available"):
        build_index(_cfg(tiny_model_dir, tiny_corpus, tmp_path / "idx", "cuda"))
    assert not (tmp_path / "idx").exists()
