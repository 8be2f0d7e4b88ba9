"""The cross-encoder on the tiny random BERT: heads, losses, probabilities, saving, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from core.cross_encoder import CrossEncoder
from core.errors import InvalidInputError
from tests.training.conftest import tiny_pairs
from training.data import PairExample
from training.train_cross_encoder import (
    CrossEncoderConfig,
    classification_metrics,
    label_names,
    pair_loss,
    train_cross_encoder,
)

PAIRS = [("the red bread and the soup", "the bread is red"), ("a star with a moon", "the python code")]


@pytest.mark.parametrize(
    ("problem", "labels"),
    [("single_label", ["0", "1"]), ("multi_label", ["a", "b", "c"]), ("regression", ["score"])],
)
def test_probabilities_by_problem_type(tiny_model_dir: Path, problem: str, labels: list[str]) -> None:
    model = CrossEncoder.new(tiny_model_dir, problem, labels, "cpu")
    logits = model.logits(PAIRS)
    assert logits.shape == (2, len(labels))
    probs = model.probabilities(logits)
    if problem == "single_label":
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=1e-5)
    else:  # independent sigmoids: multi-label probabilities do not sum to 1
        np.testing.assert_allclose(probs, torch.sigmoid(torch.from_numpy(logits)).numpy(), rtol=1e-5)
        if problem == "multi_label":
            assert not np.allclose(probs.sum(1), 1.0)
    assert model.scores(PAIRS).shape == (2,)


def test_losses_by_problem_type() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    ce = pair_loss(logits, torch.tensor([0, 1]), "single_label")
    assert ce.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).item())
    hot = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    bce = pair_loss(logits, hot, "multi_label")
    expected = -(
        hot * torch.log(torch.sigmoid(logits)) + (1 - hot) * torch.log(1 - torch.sigmoid(logits))
    ).mean()
    assert bce.item() == pytest.approx(expected.item(), rel=1e-5)
    mse = pair_loss(torch.tensor([[0.0], [10.0]]), torch.tensor([0.5, 1.0]), "regression")
    assert mse.item() == pytest.approx(
        ((0.5 - 0.5) ** 2 + (torch.sigmoid(torch.tensor(10.0)).item() - 1) ** 2) / 2
    )


def test_labels_and_metrics() -> None:
    ex = [PairExample("a", "b", label=x) for x in ("1", "0", "1")]
    assert label_names(ex, "single_label", None) == ["0", "1"]
    named = [PairExample("a", "b", label=x) for x in ("neutral", "entailment")]
    assert label_names(named, "single_label", None) == ["entailment", "neutral"]
    multi = [PairExample("a", "b", label="x,y"), PairExample("a", "b", label="z")]
    assert label_names(multi, "multi_label", None) == ["x", "y", "z"]
    with pytest.raises(InvalidInputError, match="num-labels"):
        label_names(named, "single_label", 3)
    m = classification_metrics(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1]), 2)
    assert m == {"accuracy": 50.0, "f1": 50.0}


def test_saved_folder_loads_in_plain_transformers(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = CrossEncoder.new(
        tiny_model_dir, "single_label", ["contradiction", "entailment", "neutral"], "cpu"
    )
    model.save(tmp_path / "ce")
    config = json.loads((tmp_path / "ce" / "config.json").read_text())
    assert config["problem_type"] == "single_label_classification"
    assert config["id2label"] == {"0": "contradiction", "1": "entailment", "2": "neutral"}
    assert (tmp_path / "ce" / "model.safetensors").is_file()
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ce", local_files_only=True)
    again = CrossEncoder.load(tmp_path / "ce", "cpu")
    assert again.labels == ["contradiction", "entailment", "neutral"] and again.positive == 1
    feats = again.collate(again.tokenize(PAIRS))
    with torch.inference_mode():
        np.testing.assert_allclose(plain.eval()(**feats).logits.numpy(), again.logits(PAIRS), atol=1e-5)


@pytest.mark.parametrize("problem", ["single_label", "regression"])
def test_overfitting_a_few_pairs(tiny_model_dir: Path, tmp_path: Path, problem: str) -> None:
    rows = tiny_pairs(8)
    for r in rows:  # binary task: entailment or not
        r["label"] = "1" if r["label"] == "entailment" else "0"
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CrossEncoderConfig(
        model=str(tiny_model_dir), train=[str(data)], dev=str(data), output=str(tmp_path / "out"),
        problem=problem, epochs=60, batch_size=8, lr=3e-3, warmup_ratio=0.0, device="cpu",
        progress=False, checkpoint_steps=0, precision="fp32", rerank_weight=0.4,
    )  # fmt: skip
    summary = train_cross_encoder(cfg)
    best = summary["best"]
    assert best is not None and best >= (100.0 if problem == "single_label" else 90.0), summary
    assert (tmp_path / "out" / "metrics.jsonl").is_file() and (
        tmp_path / "out" / "train_config.json"
    ).is_file()
    trained = CrossEncoder.load(tmp_path / "out", "cpu")
    assert trained.problem == problem
    assert trained.rerank_weight == pytest.approx(0.4)  # kept with the model it was chosen for


def test_eval_cross_encoder_cli(tiny_model_dir: Path, tmp_path: Path, pairs_file: Path, capsys) -> None:
    from semsearch.cli import main

    model = CrossEncoder.new(
        tiny_model_dir, "single_label", ["contradiction", "entailment", "neutral"], "cpu"
    )
    model.save(tmp_path / "ce")
    assert main(["eval", "cross-encoder", "--model", str(tmp_path / "ce"), "--data", str(pairs_file)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "f1" in out and "pairs 16" in out
