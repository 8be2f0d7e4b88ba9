"""An inference-only BERT forward over unpadded tokens.

In a length-sorted batch of short sentences a quarter or more of the padded positions are
padding, and a padded forward spends the same matmul work on them as on real tokens. Here the
dense layers (over 90% of BERT's FLOPs) run on the ``(tokens, hidden)`` matrix of real tokens
only, as FasterTransformer's "remove padding" and MosaicBERT's unpadded layers do. Attention,
which mixes positions, runs sequence by sequence on the unpadded rows for documents on CPU, and
in the padded ``(batch, heads, length, head_dim)`` layout for sentences and on CUDA.
Q, K and V are one fused matmul, which suits small batches on CPU.

The modules are the transformers ``BertModel``'s own, shared, apart from the fused QKV weight,
a copy: callers hold it in a ``WeightsCache``, which rebuilds it when any weight changes (a training
step, a dtype cast). The result matches the model's ``last_hidden_state`` on real tokens within
float rounding (tests/core/test_fast_inference.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu}
# oneDNN's names for the same activations, fused into its matmul: (attr, algorithm). "none" is
# the exact erf GELU that BERT uses, not the tanh approximation.
_ONEDNN_ACT = {None: ("none", ""), "gelu": ("gelu", "none"), "relu": ("relu", "")}


def _probe_onednn(dtype: torch.dtype = torch.float32) -> bool:
    """Whether torch's oneDNN linear (``mkldnn::_linear_pointwise``, the op inductor fuses CPU
    linears into) runs here in ``dtype`` and agrees with ``F.linear``. Off with
    ``SEMSEARCH_ONEDNN=0``. Asked per dtype: oneDNN's bf16 matmul needs avx512 (an avx2-only
    CPU has the float32 one, and the bf16 call fails there), so bf16 is probed on its own.

    Asked on first use, never at import: the probe is a parallel region, and run on the importing
    thread it would leave that thread an OpenMP team of its own (core.model_thread says why that
    slows every model call of the service)."""
    if os.environ.get("SEMSEARCH_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)  # not the global stream: importing must not move it
        x, w, b = (torch.randn(*shape, generator=gen).to(dtype) for shape in ((4, 8), (16, 8), (16,)))
        with torch.inference_mode():
            y = torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        return bool(torch.allclose(y.float(), F.gelu(F.linear(x, w, b)).float(), atol=tol))
    except (RuntimeError, AttributeError):
        return False


_onednn: dict[torch.dtype, bool] = {}


def onednn_linear(dtype: torch.dtype = torch.float32) -> bool:
    """:func:`_probe_onednn`'s answer for ``dtype``, probed once, on the first thread that asks."""
    if dtype not in _onednn:
        _onednn[dtype] = _probe_onednn(dtype)
    return _onednn[dtype]


def dense(layer: nn.Module, x: torch.Tensor, act: str | None = None) -> torch.Tensor:
    """``act(layer(x))``. On CPU, a plain float32/bf16 ``nn.Linear`` goes straight to oneDNN with
    the activation fused into the matmul. Measured on this project's AMD EPYC (avx512_bf16): the
    oneDNN float32 matmul ran 2.2x torch's default (MKL) path, 410 vs 185 GFLOP/s, and fusing GELU
    saved a pass over the largest activation (BENCHMARKS.md). int8-quantised layers, CUDA and
    autograd take the ordinary modules."""
    if (
        type(layer) is nn.Linear
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
        and onednn_linear(x.dtype)
    ):
        attr, algorithm = _ONEDNN_ACT[act]
        fused: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
            x, layer.weight, layer.bias, attr, [], algorithm
        )
        return fused
    y = layer(x)
    return y if act is None else _ACTIVATIONS[act](y)


def unsupported_reason(model: Any) -> str | None:
    """Why ``model`` cannot take the unpadded path (None when it can)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "bert":
        return f"model type {getattr(cfg, 'model_type', None)!r} is not bert"
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return f"position embeddings {cfg.position_embedding_type!r} are not absolute"
    if cfg.hidden_act not in _ACTIVATIONS:
        return f"activation {cfg.hidden_act!r} is not supported"
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return "decoder / cross-attention models are not supported"
    return None


def weights_key(model: nn.Module) -> tuple[tuple[int, int, Any], ...]:
    """Changes whenever a parameter is updated in place (an optimiser step) or replaced (a cast)."""
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


class WeightsCache:
    """An inference module derived from ``model``'s weights, rebuilt whenever one of them changes
    (see :func:`weights_key`), so it never serves stale weights. Not a Module: what it holds
    stays out of the owner's ``parameters()`` and ``state_dict()``, which training and saving read."""

    def __init__(self) -> None:
        self._entry: tuple[Any, nn.Module] | None = None

    def get(self, model: nn.Module, build: Callable[[], nn.Module], *extra: Any) -> nn.Module:
        key = (weights_key(model), *extra)
        if self._entry is None or self._entry[0] != key:
            self._entry = (key, build().eval())
        return self._entry[1]

    def clear(self) -> None:
        self._entry = None


class _Layer(nn.Module):
    def __init__(self, layer: Any, heads: int, act: str) -> None:
        super().__init__()
        att = layer.attention.self
        hidden = att.query.in_features
        self.heads, self.head_dim = heads, hidden // heads
        weight = att.query.weight
        self.qkv = nn.Linear(hidden, 3 * hidden, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.qkv.weight.copy_(torch.cat([att.query.weight, att.key.weight, att.value.weight]))
            self.qkv.bias.copy_(torch.cat([att.query.bias, att.key.bias, att.value.bias]))
        self.qkv.requires_grad_(False)
        self.out, self.ln1 = layer.attention.output.dense, layer.attention.output.LayerNorm
        self.up, self.down = layer.intermediate.dense, layer.output.dense
        self.ln2 = layer.output.LayerNorm
        self.act = act

    def forward(
        self,
        x: torch.Tensor,
        where: torch.Tensor,
        shape: tuple[int, int],
        mask: torch.Tensor | None,
        lengths: list[int] | None = None,
    ) -> torch.Tensor:
        """``lengths`` (real tokens per row) selects ragged attention; else the additive ``mask``
        over the padded layout is used."""
        batch, length = shape
        hidden = x.shape[1]
        qkv = dense(self.qkv, x)
        if lengths is not None:  # documents on CPU (see UnpaddedBert.forward)
            ctx = _ragged_attention(qkv, lengths, self.heads, self.head_dim)
        else:
            # Sentences on CPU, and CUDA, attend in the padded layout: scatter the real tokens into
            # it and back.
            assert mask is not None
            short = x.device.type == "cpu" and length <= SHORT_ATTENTION
            dtype = torch.float32 if short else qkv.dtype
            padded = torch.zeros(batch * length, 3 * hidden, dtype=dtype, device=x.device)
            padded.index_copy_(0, where, qkv[: where.numel()].to(dtype))
            q, k, v = padded.view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            if short:
                ctx = _short_attention(q, k, v, mask)
            else:
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.isfinite())
            ctx = ctx.transpose(1, 2).reshape(batch * length, hidden)[where].to(x.dtype)
            if ctx.shape[0] < x.shape[0]:  # the bucket's zero rows (UnpaddedBert.forward)
                ctx = F.pad(ctx, (0, 0, 0, x.shape[0] - ctx.shape[0]))
        x = self.ln1(dense(self.out, ctx) + x)
        return self.ln2(dense(self.down, dense(self.up, x, self.act)) + x)


def _short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Float32 softmax attention over (batch, heads, length, head_dim); ``mask`` is additive,
    (batch, 1, 1, length).

    For sentences this is hundreds of tiny matrices. SDPA's CPU flash kernel paid about 1 ms a
    call for them at batch 32 (a fifth of the whole forward, profiled); plain batched float32
    matmuls did the same work in about a third of that, bf16 ones in twice. Past
    ``SHORT_ATTENTION`` positions the (length x length) scores grow, and attention goes
    sequence by sequence instead (:func:`_ragged_attention`)."""
    b, h, n, d = q.shape
    qf, kf, vf = (t.reshape(b * h, n, d) for t in (q, k, v))
    scores = torch.baddbmm(
        mask.expand(b, h, 1, n).reshape(b * h, 1, n), qf, kf.transpose(1, 2), alpha=d**-0.5
    )
    return torch.bmm(scores.softmax(-1), vf).view(b, h, n, d)


SHORT_ATTENTION = 64  # padded length up to which attention runs as float32 batched matmuls


def _ragged_attention(qkv: torch.Tensor, lengths: list[int], heads: int, head_dim: int) -> torch.Tensor:
    """Attention sequence by sequence, straight on the unpadded rows: no padding, no mask, no
    scatter. For documents (past ``SHORT_ATTENTION`` positions) on CPU this beat SDPA's masked
    flash kernel: MEDLINE abstracts at bf16 encoded at 88 vs 72 docs/s, fp32 33 vs 31, with the
    same drift from fp32 (5.0e-5 vs 4.9e-5). Scores are rounded to the input dtype by the
    matmul; the softmax runs in float32."""
    out = torch.empty(qkv.shape[0], heads * head_dim, dtype=qkv.dtype, device=qkv.device)
    out[sum(lengths) :] = 0  # rows past the real tokens (a row bucket's padding)
    scale = head_dim**-0.5
    start = 0
    for n in lengths:
        if n:
            q, k, v = qkv[start : start + n].view(n, 3, heads, head_dim).permute(1, 2, 0, 3)
            scores = torch.matmul(q, k.transpose(1, 2))
            probs = torch.softmax(scores.float().mul_(scale), dim=-1).to(v.dtype)
            out[start : start + n] = torch.matmul(probs, v).transpose(0, 1).reshape(n, -1)
            start += n
    return out


class UnpaddedBert(nn.Module):
    """``forward(input_ids, attention_mask, token_type_ids)`` -> padded ``last_hidden_state``
    (zeros at padding), computed on real tokens only. Inference only: no dropout, no grads."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"cannot run this model unpadded: {reason}")
        cfg = model.config
        emb = model.embeddings
        self.word, self.position = emb.word_embeddings, emb.position_embeddings
        self.token_type, self.ln = emb.token_type_embeddings, emb.LayerNorm
        self.layers = nn.ModuleList(
            _Layer(layer, cfg.num_attention_heads, cfg.hidden_act) for layer in model.encoder.layer
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch, length = input_ids.shape
        real = attention_mask.reshape(-1).bool()
        where = real.nonzero().squeeze(1)
        positions = torch.arange(length, device=input_ids.device).repeat(batch)[where]
        x = self.word(input_ids.reshape(-1)[where]) + self.position(positions)
        if token_type_ids is not None:
            x = x + self.token_type(token_type_ids.reshape(-1)[where])
        else:
            x = x + self.token_type.weight[0]
        x = self.ln(x)
        rows = where.numel()
        # Not for int8 (quantize_dynamic swaps the Linear modules): its activation scale is taken
        # over all rows, so extra rows (nonzero after the first LayerNorm) would move the real ones.
        if x.device.type == "cpu" and type(self.layers[0].up) is nn.Linear:
            x = F.pad(x, (0, 0, 0, row_bucket(rows) - rows))  # zero rows: see row_bucket
        lengths: list[int] | None = None
        mask: torch.Tensor | None = None
        if input_ids.device.type == "cpu" and length > SHORT_ATTENTION:
            lengths = attention_mask.sum(1).tolist()
        else:
            mask = torch.zeros(attention_mask.shape, dtype=torch.float32, device=input_ids.device)
            mask = mask.masked_fill_(attention_mask == 0, float("-inf"))[:, None, None, :]
        for layer in self.layers:
            x = layer(x, where, (batch, length), mask, lengths)
        out = x.new_zeros(batch * length, x.shape[1])
        out[where] = x[:rows]
        return out.view(batch, length, -1)


def row_bucket(rows: int) -> int:
    """``rows`` rounded up to a multiple of 1/32 of the largest power of two <= ``rows`` (the
    multiple kept between 8 and 128): the row count every CPU dense layer then sees.

    Unpadded batches have a new token count almost every time, and the matmul backends keep
    per-shape state (oneDNN's primitive cache and JIT kernels): with exact counts, embedding 61k
    SNLI sentences in 4,096-sentence chunks grew anonymous memory from 358 to 1,144 MB and kept
    growing; with buckets it levels off near 620 MB (BENCHMARKS.md). At most 32 shapes per power
    of two; past 256 rows at most 1/32 more rows, 7 at most below. The extra rows are zeros and
    no real token attends to them."""
    granule = min(128, max(8, (1 << max(rows.bit_length() - 1, 0)) // 32))
    return -(-rows // granule) * granule
