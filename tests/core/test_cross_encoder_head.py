"""The cross-encoder's head on the tiny random BERT: BERT's pooler when the checkpoint has one,
the [CLS] hidden state when it has none, and saved folders that plain transformers reads alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from core.cross_encoder import CLS_POOLER_KEY, CLS_POOLER_SCALE, ClsPooler, CrossEncoder

PAIRS = [
    ("the red bread and the soup", "the bread is red"),
    ("a star with a moon", "the python code"),
    ("the team plays a match in the stadium", "the player will score a goal"),
]
LABELS = ["contradiction", "entailment", "neutral"]


@pytest.fixture(scope="module")
def no_pooler_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without its pooler weights, as BertModel(add_pooling_layer=False) saves it."""
    out = tmp_path_factory.mktemp("no-pooler") / "tiny"
    shutil.copytree(tiny_model_dir, out)
    weights = load_file(out / "model.safetensors")
    kept = {k: v for k, v in weights.items() if not k.startswith("pooler.")}
    assert len(kept) == len(weights) - 2
    save_file(kept, out / "model.safetensors", metadata={"format": "pt"})
    return out


def _cls_state(model: CrossEncoder, pairs: list[tuple[str, str]]) -> torch.Tensor:
    feats = model.collate(model.tokenize(pairs))
    with torch.inference_mode():
        return model.model.base_model(**feats).last_hidden_state[:, 0]


def _spread_head(model: CrossEncoder) -> None:
    """Classifier weights of a trained head's size, so the logits are O(1) and differences show."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.model.classifier.weight.normal_(0.0, 1.0)
        model.model.classifier.bias.normal_(0.0, 1.0)


def test_checkpoint_without_pooler_feeds_cls_to_the_classifier(no_pooler_dir: Path) -> None:
    model = CrossEncoder.new(no_pooler_dir, "single_label", LABELS, "cpu")
    assert model.cls_pooler and isinstance(model.model.base_model.pooler, ClsPooler)
    assert not any("pooler" in name for name, _ in model.model.named_parameters())
    _spread_head(model)
    head = model.model.classifier
    with torch.inference_mode():
        expected = head(_cls_state(model, PAIRS)).numpy()  # dropout is off in eval
    np.testing.assert_allclose(model.logits(PAIRS), expected, rtol=1e-6, atol=1e-6)


def test_checkpoint_with_pooler_keeps_it(tiny_model_dir: Path) -> None:
    with safe_open(str(tiny_model_dir / "model.safetensors"), "pt") as f:
        dense = f.get_tensor("pooler.dense.weight")
    model = CrossEncoder.new(tiny_model_dir, "single_label", LABELS, "cpu")
    assert not model.cls_pooler
    pooler = model.model.base_model.pooler
    assert torch.equal(pooler.dense.weight.detach(), dense)
    assert getattr(model.model.config, CLS_POOLER_KEY, None) is None
    with torch.inference_mode():
        pooled = torch.tanh(pooler.dense(_cls_state(model, PAIRS)))
        expected = model.model.classifier(pooled).numpy()
    np.testing.assert_allclose(model.logits(PAIRS), expected, rtol=1e-6, atol=1e-6)


def test_saved_folder_without_pooler_loads_alike_in_plain_transformers(
    no_pooler_dir: Path, tmp_path: Path
) -> None:
    model = CrossEncoder.new(no_pooler_dir, "single_label", LABELS, "cpu")
    _spread_head(model)
    weight = model.model.classifier.weight.detach().clone()
    ours = model.logits(PAIRS)
    model.save(tmp_path / "ce")
    assert model.cls_pooler and torch.equal(model.model.classifier.weight, weight)  # save changes nothing

    config = json.loads((tmp_path / "ce" / "config.json").read_text())
    assert config[CLS_POOLER_KEY] == CLS_POOLER_SCALE
    with safe_open(str(tmp_path / "ce" / "model.safetensors"), "pt") as f:
        assert torch.equal(f.get_tensor("bert.pooler.dense.weight"), torch.eye(32) * CLS_POOLER_SCALE)
        assert not f.get_tensor("bert.pooler.dense.bias").any()

    again = CrossEncoder.load(tmp_path / "ce", "cpu")
    assert again.cls_pooler and torch.equal(again.model.classifier.weight, weight)  # exact round trip
    np.testing.assert_array_equal(again.logits(PAIRS), ours)

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ce", local_files_only=True)
    feats = again.collate(again.tokenize(PAIRS))
    with torch.inference_mode():
        theirs = plain.eval()(**feats).logits.numpy()
    assert np.abs(ours).max() > 1.0  # logits large enough for the comparison to mean something
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    # A pooler of dense = I with tanh would not do: tanh([CLS]) is not the [CLS] state.
    with torch.inference_mode():
        tanh_head = again.model.classifier(torch.tanh(_cls_state(again, PAIRS))).numpy()
    assert np.abs(tanh_head - ours).max() > 0.1


def test_new_head_on_a_saved_folder_without_pooler_keeps_the_cls_head(
    no_pooler_dir: Path, tmp_path: Path
) -> None:
    model = CrossEncoder.new(no_pooler_dir, "single_label", LABELS, "cpu")
    _spread_head(model)
    model.save(tmp_path / "ce")
    same = CrossEncoder.new(tmp_path / "ce", "single_label", LABELS, "cpu")  # classifier kept
    assert same.cls_pooler
    np.testing.assert_array_equal(same.logits(PAIRS), model.logits(PAIRS))
    weights = load_file(tmp_path / "ce" / "model.safetensors")
    body = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    save_file(body, tmp_path / "ce" / "model.safetensors", metadata={"format": "pt"})
    fresh = CrossEncoder.new(tmp_path / "ce", "single_label", LABELS, "cpu")  # a new classifier
    assert fresh.cls_pooler
    assert fresh.model.classifier.weight.abs().max() < 1.0  # initialised, not unscaled by 2^-12


def test_pooler_trained_on_elsewhere_stays_a_pooler(no_pooler_dir: Path, tmp_path: Path) -> None:
    model = CrossEncoder.new(no_pooler_dir, "single_label", LABELS, "cpu")
    model.save(tmp_path / "ce")
    weights = load_file(tmp_path / "ce" / "model.safetensors")
    weights["bert.pooler.dense.weight"] = weights["bert.pooler.dense.weight"] * 3.0
    save_file(weights, tmp_path / "ce" / "model.safetensors", metadata={"format": "pt"})
    again = CrossEncoder.load(tmp_path / "ce", "cpu")
    assert not again.cls_pooler
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ce", local_files_only=True)
    feats = again.collate(again.tokenize(PAIRS))
    with torch.inference_mode():
        np.testing.assert_allclose(plain.eval()(**feats).logits.numpy(), again.logits(PAIRS), atol=1e-6)
    again.save(tmp_path / "ce2")
    assert CLS_POOLER_KEY not in json.loads((tmp_path / "ce2" / "config.json").read_text())


def test_training_from_a_checkpoint_without_pooler(no_pooler_dir: Path, tmp_path: Path) -> None:
    from training.train_cross_encoder import CrossEncoderConfig, train_cross_encoder

    rows = [{"sentence1": a, "sentence2": b, "label": LABELS[i % 3]} for i, (a, b) in enumerate(PAIRS * 3)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CrossEncoderConfig(
        model=str(no_pooler_dir), train=[str(data)], output=str(tmp_path / "out"), epochs=2,
        batch_size=4, lr=1e-3, warmup_ratio=0.0, device="cpu", progress=False, checkpoint_steps=0,
        precision="fp32",
    )  # fmt: skip
    train_cross_encoder(cfg)
    trained = CrossEncoder.load(tmp_path / "out", "cpu")
    assert trained.cls_pooler
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", local_files_only=True)
    feats = trained.collate(trained.tokenize(PAIRS))
    with torch.inference_mode():
        theirs = plain.eval()(**feats).logits.numpy()
    np.testing.assert_allclose(theirs, trained.logits(PAIRS), rtol=1e-5, atol=1e-5)


def test_a_cross_encoder_folder_starts_a_new_head_on_its_trained_body(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Stage-wise training (e.g. NLI classes, then an STS regression) starts from a saved
    cross-encoder: the body carries over, the head of another shape is new."""
    nli = CrossEncoder.new(tiny_model_dir, "single_label", LABELS, "cpu")
    with torch.no_grad():
        nli.model.base_model.encoder.layer[0].output.dense.weight.add_(0.5)
    nli.save(tmp_path / "nli")
    sts = CrossEncoder.new(tmp_path / "nli", "regression", ["score"], "cpu")
    assert sts.labels == ["score"] and sts.model.classifier.out_features == 1
    body = dict(nli.model.base_model.named_parameters())
    for name, param in sts.model.base_model.named_parameters():
        assert torch.equal(param, body[name]), name
