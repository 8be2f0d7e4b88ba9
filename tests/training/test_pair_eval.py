"""eval pairs: accuracy and F1 of cosine >= threshold, the threshold chosen on another file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import DataError
from training.bi_encoder import SoftmaxHead
from training.pair_eval import best_threshold, eval_pairs_file, scores_at


def test_best_threshold_separates_when_it_can_and_scores_match_by_hand() -> None:
    cos = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    gold = np.array([False, False, True, True, True])
    t = best_threshold(cos, gold)
    assert 0.2 < t < 0.6 and scores_at(cos, gold, t) == (100.0, 100.0)
    noisy = np.array([False, True, False, True, True])  # one positive below a negative
    t = best_threshold(cos, noisy)
    acc, f1 = scores_at(cos, noisy, t)
    assert acc == 80.0 and f1 == pytest.approx(100 * 2 * 0.75 * 1.0 / 1.75)
    assert best_threshold(cos, np.ones(5, bool)) < 0.1  # all positive: everything above


def test_eval_pairs_file_with_a_dev_threshold_and_a_softmax_head(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = [
        ("the red guitar", "the red guitar", 1),
        ("the big moon", "the big moon and the star", 1),
        ("the red guitar", "the small oven", 0),
        ("the goal of the team", "the bread and the soup", 0),
    ]
    data, dev = tmp_path / "test.txt", tmp_path / "dev.txt"
    data.write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in rows))
    dev.write_text("".join(f"{a}\t{b}\t{y}\n" for a, b, y in reversed(rows)))
    upper = eval_pairs_file(tiny_model_dir, data, device="cpu")
    assert upper.pairs == 4 and "upper bound" in upper.threshold_from and upper.head_accuracy is None
    other = eval_pairs_file(tiny_model_dir, data, dev, device="cpu")
    assert other.threshold_from == str(dev) and 0 <= other.accuracy <= 100
    model = tmp_path / "with-head"
    shutil.copytree(tiny_model_dir, model)
    SoftmaxHead(32, 2, False).save(model, {"0": 0, "1": 1})
    assert 0 <= eval_pairs_file(model, data, device="cpu").head_accuracy <= 100  # type: ignore[operator]
    nli = tmp_path / "nli.txt"
    nli.write_text("a b\tc d\tentailment\n")
    with pytest.raises(DataError, match="labelled 0 or 1"):
        eval_pairs_file(tiny_model_dir, nli, device="cpu")
