"""The inference paths: unpadded BERT, int8, precision choice, the quality guard, threads."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from core import device as device_mod
from core.encoder import Encoder
from core.errors import InvalidInputError
from core.fast_bert import UnpaddedBert, unsupported_reason
from core.precision import candidates, choose_precision, cosine_agreement

TEXTS = [
    "a cat sat on the mat",
    "the dog runs",
    "a quick brown fox jumps over the lazy dog again and again",
    "hello",
    "the cat and the dog and the fox",
]


def _hf_hidden(encoder: Encoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, Any]:
    feats = encoder.collate(encoder.tokenize(texts))
    model = encoder.net[0].auto_model
    with torch.inference_mode():
        ref = model(**feats).last_hidden_state
    return ref, feats["attention_mask"].bool(), feats


def test_unpadded_matches_transformers_on_real_tokens(tiny_encoder: Encoder) -> None:
    ref, mask, feats = _hf_hidden(tiny_encoder, TEXTS)
    fast = UnpaddedBert(tiny_encoder.net[0].auto_model)
    with torch.inference_mode():
        out = fast(feats["input_ids"], feats["attention_mask"], feats["token_type_ids"])
    assert out.shape == ref.shape
    assert torch.allclose(out[mask], ref[mask], atol=1e-5)
    assert torch.count_nonzero(out[~mask]) == 0  # padding rows are zeros, never garbage


def test_encode_uses_unpadded_path_and_matches_padded(tiny_model_dir: Path) -> None:
    fast = Encoder.load(tiny_model_dir, device="cpu")
    slow = Encoder.load(tiny_model_dir, device="cpu")
    slow.net[0].unpadded = False
    assert fast.net[0].unpadded
    np.testing.assert_allclose(fast.encode(TEXTS, batch_size=2), slow.encode(TEXTS, batch_size=2), atol=1e-5)


def test_inference_module_follows_weight_updates(tiny_model_dir: Path) -> None:
    """A training step changes weights in place: the next encode must use the new weights."""
    enc = Encoder.load(tiny_model_dir, device="cpu")
    before = enc.encode(TEXTS)
    noise = torch.randn((32, 32), generator=torch.Generator().manual_seed(0))

    def step(e: Encoder) -> None:  # stands in for an optimiser step: an in-place update
        with torch.no_grad():
            e.net[0].auto_model.encoder.layer[0].attention.self.value.weight.add_(noise)

    step(enc)
    after = enc.encode(TEXTS)
    assert not np.allclose(before, after, atol=1e-3)
    slow = Encoder.load(tiny_model_dir, device="cpu")
    step(slow)
    slow.net[0].unpadded = False
    np.testing.assert_allclose(after, slow.encode(TEXTS), atol=1e-5)


def test_cached_module_stays_out_of_the_state_dict(tiny_model_dir: Path) -> None:
    enc = Encoder.load(tiny_model_dir, device="cpu")
    keys = set(enc.net.state_dict())
    enc.encode(TEXTS)
    assert set(enc.net.state_dict()) == keys
    assert not any("qkv" in k for k in keys)


def test_unsupported_models_are_named() -> None:
    assert unsupported_reason(SimpleNamespace(config=SimpleNamespace(model_type="t5"))) is not None
    cfg = SimpleNamespace(model_type="bert", position_embedding_type="relative_key", hidden_act="gelu")
    assert "relative_key" in (unsupported_reason(SimpleNamespace(config=cfg)) or "")


needs_int8 = pytest.mark.skipif(
    not device_mod.int8_supported(torch.device("cpu")), reason="no AVX2 / x86 quantized engine"
)


@needs_int8
def test_int8_quantises_linears_but_not_ffn_down(tiny_model_dir: Path) -> None:
    enc = Encoder.load(tiny_model_dir, device="cpu")
    fp32 = enc.encode(TEXTS)
    assert enc.to_precision("int8") == "int8"
    out = enc.encode(TEXTS)
    module = enc.net[0].inference_module()
    kinds = {name.rsplit(".", 1)[-1]: type(sub).__name__ for name, sub in module.named_modules()}
    assert "quantized" in type(module.layers[0].qkv).__module__
    assert kinds["down"] == "Linear"  # the FFN down-projection stays float
    mean, _ = cosine_agreement(fp32, out)
    assert mean > 0.9
    # weights stay fp32 underneath: back to fp32 is exact
    enc.to_precision("fp32")
    np.testing.assert_allclose(enc.encode(TEXTS), fp32, atol=1e-6)


@needs_int8
def test_int8_drift_across_batch_sizes_is_bounded(tiny_model_dir: Path) -> None:
    """Dynamic int8 scales activations per batch, so one text's vector depends a little on its
    batch-mates (fastembed's complaint); bound how much."""
    enc = Encoder.load(tiny_model_dir, device="cpu")
    enc.to_precision("int8")
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    together = enc.encode(TEXTS, batch_size=len(TEXTS))
    mean, low = cosine_agreement(alone, together)
    assert low > 0.98, (mean, low)


def test_bad_precision_requests_are_refused(tiny_encoder: Encoder) -> None:
    with pytest.raises(InvalidInputError, match="unknown precision"):
        tiny_encoder.to_precision("int4")
    with pytest.raises(InvalidInputError, match="fp16"):
        tiny_encoder.to_precision("fp16")


def test_choose_precision_measures_every_candidate(tiny_model_dir: Path) -> None:
    enc = Encoder.load(tiny_model_dir, device="cpu")
    choice = choose_precision(enc, TEXTS, max_drift=0.5, repeats=1)
    names = [t.precision for t in choice.trials]
    assert names[0] == "fp32" and choice.trials[0].drift == 0.0
    assert set(names) == set(candidates(torch.device("cpu")))
    chosen = choice.trial(choice.precision)
    assert chosen is not None and chosen.drift <= 0.5
    assert enc.precision == "fp32"  # trials ran on copies
    assert choose_precision(enc, TEXTS, max_drift=-1.0, repeats=1).precision == "fp32"  # unattainable bound


def test_auto_precision_records_its_choice(tiny_model_dir: Path) -> None:
    from core.embedding import set_precision

    enc = Encoder.load(tiny_model_dir, device="cpu")
    record = set_precision(enc, "auto", TEXTS, max_drift=-1.0)
    assert enc.precision == record["precision"] == "fp32"  # no other precision meets an unattainable bound
    assert record["auto_trials"][0]["precision"] == "fp32"
    assert {t["precision"] for t in record["auto_trials"]} == set(candidates(torch.device("cpu")))
    with pytest.raises(InvalidInputError, match="set_precision"):
        enc.to_precision("auto")  # a choice, not a cast: the encoder only casts


def test_cgroup_quota_caps_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert device_mod._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert device_mod._cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert device_mod._cgroup_quota(tmp_path) == 0.5
    monkeypatch.setattr(device_mod, "_cgroup_quota", lambda: 0.5)
    assert device_mod.available_cpus() == 1
    before = torch.get_num_threads()
    try:
        assert device_mod.configure_threads() == 1
        assert torch.get_num_threads() == 1
        assert device_mod.configure_threads(3) == 3
    finally:
        torch.set_num_threads(before)


def test_cross_encoder_unpadded_logits_match_transformers(tiny_model_dir: Path) -> None:
    from core.cross_encoder import CrossEncoder

    ce = CrossEncoder.new(tiny_model_dir, "single_label", ["0", "1"], device="cpu")
    pairs = [("a cat sat", "the cat sat on the mat"), ("hello", "the quick brown fox jumps"), ("dog", "dog")]
    assert ce._unpadded
    fast = ce.logits(pairs, batch_size=3)
    with torch.inference_mode():
        ref = ce.model(**ce.collate(ce.tokenize(pairs))).logits.numpy()
    np.testing.assert_allclose(fast, ref, atol=1e-5)
    assert ce.to_precision("fp32") == "fp32"
    with pytest.raises(InvalidInputError, match="int8"):
        ce.to_precision("int8")


def test_set_precision_records_drift_and_refuses_past_the_bound(tiny_model_dir: Path) -> None:
    from core.embedding import set_precision
    from core.errors import PrecisionDriftError

    enc = Encoder.load(tiny_model_dir, device="cpu")
    assert set_precision(enc, "fp32", TEXTS) == {}  # nothing to measure: fp32 is the reference
    assert set_precision(enc, "index", TEXTS, against="fp32") == {} and enc.precision == "fp32"
    if not device_mod.int8_supported(torch.device("cpu")):
        pytest.skip("no int8 on this CPU")
    enc = Encoder.load(tiny_model_dir, device="cpu")
    record = set_precision(enc, "int8", TEXTS, max_drift=0.5, against="fp32")
    assert record["precision"] == "int8" and 0.5 < record["mean_cosine_vs_fp32"] <= 1.0 + 1e-6
    assert record["against"] == "fp32" and 0.5 < record["mean_cosine_vs_against"] <= 1.0 + 1e-6
    assert enc.precision == "int8"
    enc = Encoder.load(tiny_model_dir, device="cpu")
    with pytest.raises(PrecisionDriftError, match="rebuild the index"):
        set_precision(enc, "int8", TEXTS, max_drift=-1.0, against="fp32")  # an unattainable bound
    enc = Encoder.load(tiny_model_dir, device="cpu")
    record = set_precision(enc, "index", TEXTS, max_drift=0.5, against="int8")  # the index's precision
    assert enc.precision == record["precision"] == "int8" and "against" not in record
    assert set_precision(enc, "auto", TEXTS) == {}  # already cast: its fp32 weights are gone, kept as is
    assert enc.precision == "int8"


def test_build_records_precision_quality(tiny_model_dir: Path, tiny_corpus: Path, tmp_path: Path) -> None:
    from core.index.manifest import Manifest
    from indexer.build import BuildConfig, build_index

    if not device_mod.int8_supported(torch.device("cpu")):
        pytest.skip("no int8 on this CPU")
    out = tmp_path / "idx"
    cfg = BuildConfig(model=str(tiny_model_dir), corpus=str(tiny_corpus), output=str(out), progress=False)
    cfg.precision = "int8"
    build_index(cfg)
    manifest = Manifest.read(out)
    assert manifest.precision == "int8"
    assert manifest.precision_quality["texts"] == 50  # the corpus's own first texts (it has 50)
    assert 0.0 < manifest.precision_quality["mean_cosine_vs_fp32"] <= 1.0 + 1e-6


def test_unpadded_long_inputs_take_the_ragged_path_and_match(
    tiny_encoder: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import fast_bert

    monkeypatch.setattr(fast_bert, "SHORT_ATTENTION", 4)  # the tiny model's inputs are short
    calls: list[list[int]] = []
    ragged = fast_bert._ragged_attention
    monkeypatch.setattr(
        fast_bert,
        "_ragged_attention",
        lambda qkv, lengths, *a: calls.append(lengths) or ragged(qkv, lengths, *a),
    )
    texts = ["the cat " * 60, "a dog runs " * 30, "hello"]
    ref, mask, feats = _hf_hidden(tiny_encoder, texts)
    assert feats["input_ids"].shape[1] > fast_bert.SHORT_ATTENTION
    fast = UnpaddedBert(tiny_encoder.net[0].auto_model)
    with torch.inference_mode():
        out = fast(feats["input_ids"], feats["attention_mask"], feats["token_type_ids"])
    assert torch.allclose(out[mask], ref[mask], atol=1e-5)
    assert calls and calls[0] == feats["attention_mask"].sum(1).tolist()  # one call per layer
    with torch.inference_mode():  # bf16: the scores are rounded, the softmax is float32
        low = UnpaddedBert(copy.deepcopy(tiny_encoder.net[0].auto_model).to(torch.bfloat16))
        out16 = low(feats["input_ids"], feats["attention_mask"], feats["token_type_ids"]).float()
    cos = torch.nn.functional.cosine_similarity(out16[mask], ref[mask], dim=-1)
    assert cos.min() > 0.99
