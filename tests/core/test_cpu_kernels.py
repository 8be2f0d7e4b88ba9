"""CPU inference plumbing: the oneDNN linear, the token budget and the allocator tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core import device as device_mod
from core import fast_bert
from core.encoder import Encoder
from core.token_batches import cpu_max_batch_tokens


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("act", [None, "gelu", "relu"])
def test_onednn_dense_matches_the_module(dtype: torch.dtype, act: str | None) -> None:
    """On oneDNN where it runs in this dtype (bf16 needs avx512), else on the module itself:
    the same answer either way, on every CPU."""
    torch.manual_seed(0)
    layer = nn.Linear(32, 48).to(dtype)
    x = torch.randn(10, 32).to(dtype)
    with torch.inference_mode():
        ref = layer(x)
        ref = ref if act is None else {"gelu": F.gelu, "relu": F.relu}[act](ref)
        out = fast_bert.dense(layer, x, act)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref.float(), atol=tol, rtol=tol)


def test_dense_keeps_autograd_and_quantised_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_bert, "_onednn", {torch.float32: True, torch.bfloat16: True})
    used: list[str] = []

    def spy(*args: object) -> torch.Tensor:
        used.append("onednn")
        raise AssertionError("the oneDNN op must not run here")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy, raising=False)
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    out = fast_bert.dense(layer, x, "gelu")  # grads on: training must keep autograd
    out.sum().backward()
    assert x.grad is not None

    class Sub(nn.Linear):  # anything but a plain nn.Linear (int8 dynamic layers) keeps its forward
        pass

    with torch.inference_mode():
        fast_bert.dense(Sub(8, 4), torch.randn(3, 8))
    assert used == []


def test_onednn_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMSEARCH_ONEDNN", "0")
    assert fast_bert._probe_onednn() is False


def test_bf16_takes_onednn_only_where_its_probe_passes() -> None:
    """The bf16 probe is its own (an avx2-only AMD EPYC runs oneDNN's float32 matmul but not its
    bf16 one): where the CPU has native bf16, oneDNN's bf16 matmul is taken."""
    has_bf16 = fast_bert.onednn_linear(torch.bfloat16)
    if device_mod.bf16_supported(torch.device("cpu")) and fast_bert.onednn_linear():
        assert has_bf16


def test_cpu_token_budget_keeps_the_widest_activation_under_24_mib() -> None:
    assert cpu_max_batch_tokens(1536, 2) == 8192  # MiniLM's FFN, bf16
    assert cpu_max_batch_tokens(1536, 4) == 4096  # float32
    assert cpu_max_batch_tokens(3072, 4) == 2048  # BERT-base float32
    for widest, item in [(1536, 2), (1000, 4), (4096, 4), (10**7, 4)]:
        budget = cpu_max_batch_tokens(widest, item)
        assert budget % 256 == 0 and budget >= 256
        assert budget == 256 or budget * widest * item <= 24 * 1024 * 1024


def test_encoder_batches_default_to_the_token_budget(tiny_encoder: Encoder) -> None:
    cfg = tiny_encoder.net[0].auto_model.config
    widest = max(cfg.hidden_size, cfg.intermediate_size)
    assert tiny_encoder.default_max_batch_tokens() == cpu_max_batch_tokens(widest, 4)
    encodings = tiny_encoder.tokenize(["word " * 40] * 50)
    budget = 256
    tiny_encoder.default_max_batch_tokens = lambda: budget  # type: ignore[method-assign]
    try:
        batches = list(tiny_encoder.batches(encodings, batch_size=64))
    finally:
        del tiny_encoder.default_max_batch_tokens
    longest = max(len(e.ids) for e in encodings)
    assert len(batches) > 1 and all(len(b) * longest <= budget for b in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(50))


def test_allocator_tuning_is_skipped_when_the_user_set_malloc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "_allocator_tuned", None)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert device_mod.tune_cpu_allocator() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert device_mod.tune_cpu_allocator() is False  # decided once per process
    monkeypatch.setattr(device_mod, "_allocator_tuned", None)
    monkeypatch.setenv("SEMSEARCH_MALLOC_TUNE", "0")
    assert device_mod.tune_cpu_allocator() is False
    monkeypatch.delenv("SEMSEARCH_MALLOC_TUNE")
    monkeypatch.setattr(device_mod, "_allocator_tuned", None)
    expected = device_mod.platform.libc_ver()[0] == "glibc"
    assert device_mod.tune_cpu_allocator() is expected


def test_row_buckets_bound_the_shapes_and_the_waste() -> None:
    buckets = {fast_bert.row_bucket(n) for n in range(1, 8193)}
    assert len(buckets) <= 32 * 14  # at most 32 per power of two
    for n in range(1, 8193):
        b = fast_bert.row_bucket(n)
        assert n <= b <= max(n + 7, n * 33 // 32 + 1)
        assert fast_bert.row_bucket(b) == b  # a bucket is its own bucket


def test_bucket_padding_rows_do_not_change_the_output(
    tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["the cat " * 30, "a dog runs", "hello there", "the fox " * 12]
    exact = tiny_encoder.encode(texts)
    monkeypatch.setattr(fast_bert, "row_bucket", lambda rows: rows + 37)  # many zero rows
    np.testing.assert_allclose(tiny_encoder.encode(texts), exact, atol=1e-6)
    monkeypatch.setattr(fast_bert, "SHORT_ATTENTION", 4)  # the ragged path too
    monkeypatch.setattr(fast_bert, "row_bucket", lambda rows: rows)
    ragged_exact = tiny_encoder.encode(texts)
    monkeypatch.setattr(fast_bert, "row_bucket", lambda rows: rows + 37)
    np.testing.assert_allclose(tiny_encoder.encode(texts), ragged_exact, atol=1e-6)


def test_int8_rows_are_not_bucketed(tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """int8 scales activations over all rows (pad rows are not zero after the first LayerNorm),
    so its forward must not add any; float forwards do."""
    if not device_mod.int8_supported(torch.device("cpu")):
        pytest.skip("no int8 on this CPU")
    int8 = tiny_encoder.variant("int8")
    calls: list[int] = []
    real = fast_bert.row_bucket
    monkeypatch.setattr(fast_bert, "row_bucket", lambda rows: calls.append(rows) or real(rows))
    texts = ["the cat sat", "a dog runs " * 5]
    int8.encode(texts)
    assert calls == []
    tiny_encoder.encode(texts)
    assert calls
