"""Fusing retrieval and cross-encoder scores for the reranked head of a result list."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.cross_encoder import CrossEncoder, fuse_scores, rerank_order
from core.errors import InvalidInputError, ModelFormatError


def test_weight_one_is_the_cross_encoder_order_and_zero_the_first_stage() -> None:
    first = np.array([0.9, 0.8, 0.7, 0.1])
    ce = np.array([0.2, 0.999, 0.5, 0.9999])
    assert np.argsort(-fuse_scores(first, ce, 1.0), kind="stable").tolist() == [3, 1, 2, 0]
    assert np.argsort(-fuse_scores(first, ce, 0.0), kind="stable").tolist() == [0, 1, 2, 3]
    order, fused = rerank_order(first, ce, 1.0)  # what the service and eval retrieval rank by
    assert order.tolist() == [3, 1, 2, 0] and fused.tolist() == ce.tolist()


def test_rerank_order_keeps_first_stage_order_on_ties() -> None:
    order, _ = rerank_order(np.array([0.9, 0.5, 0.1]), np.array([0.7, 0.7, 0.7]), 1.0)
    assert order.tolist() == [0, 1, 2]


def test_mixing_uses_log_odds_so_saturated_probabilities_still_count() -> None:
    first = np.array([1.0, 0.0, 0.5])
    ce = np.array([1 - 1e-4, 1 - 1e-6, 0.5])
    fused = fuse_scores(first, ce, 0.5)
    # On probabilities the first two would tie on the cross-encoder side; as log-odds the second
    # is clearly stronger, and the first stage's preference decides the balance.
    logit = np.log(ce) - np.log1p(-ce)
    unit = (logit - logit.min()) / (logit.max() - logit.min())
    assert fused == pytest.approx(0.5 * unit + 0.5 * first)
    assert fuse_scores(np.array([0.3, 0.3]), np.array([0.5, 0.5]), 0.5).tolist() == [1.0, 1.0]


def test_weight_is_kept_in_the_saved_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = CrossEncoder.new(tiny_model_dir, "single_label", ["0", "1"], "cpu")
    assert model.rerank_weight == 1.0
    model.rerank_weight = 0.3
    model.save(tmp_path / "ce")
    assert CrossEncoder.load(tmp_path / "ce", "cpu").rerank_weight == pytest.approx(0.3)
    model.rerank_weight = 0.0
    model.save(tmp_path / "ce0")
    assert CrossEncoder.load(tmp_path / "ce0", "cpu").rerank_weight == 0.0
    with pytest.raises(InvalidInputError):
        model.rerank_weight = 1.5
    model.model.config.semsearch_rerank_weight = "heavy"  # a hand-edited config.json
    with pytest.raises(ModelFormatError, match="semsearch_rerank_weight"):
        _ = model.rerank_weight


def test_the_truncation_length_is_saved_with_the_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = CrossEncoder.new(tiny_model_dir, "single_label", ["0", "1"], "cpu", max_seq_length=24)
    model.save(tmp_path / "ce")
    assert CrossEncoder.load(tmp_path / "ce", "cpu").max_seq_length == 24
    assert CrossEncoder.load(tmp_path / "ce", "cpu", max_seq_length=16).max_seq_length == 16
