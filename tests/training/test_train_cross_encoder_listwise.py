"""The listwise reranker loss: groups of (positive, negatives) per query, trained on the tiny BERT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DataError, InvalidInputError
from training.data import PairExample
from training.train_cross_encoder import (
    CrossEncoderConfig,
    group_mrr,
    listwise_loss,
    query_groups,
    train_cross_encoder,
)

GROUPS = [
    ("the red bread and the soup", "the bread is red and the soup is hot", ["a star and a moon", "the team"]),
    ("a python function with a bug", "the compiler finds the bug", ["the guitar song", "a comet"]),
    ("the player scores a goal", "the team wins the match", ["the oven and the pasta", "a violin"]),
    ("the planet in orbit", "a moon in orbit around the planet", ["the coach", "the garlic and onion"]),
]


def _rows(groups=GROUPS) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for query, positive, negatives in groups:
        rows.append({"sentence1": query, "sentence2": positive, "label": 1})
        rows.extend({"sentence1": query, "sentence2": n, "label": 0} for n in negatives)
    return rows


def _examples(rows: list[dict[str, object]]) -> tuple[list[PairExample], torch.Tensor]:
    ex = [
        PairExample(str(r["sentence1"]), str(r["sentence2"]), str(r["label"]), None, "f", i + 1)
        for i, r in enumerate(rows)
    ]
    return ex, torch.tensor([int(r["label"]) for r in rows])  # type: ignore[call-overload]


def test_groups_start_at_each_positive() -> None:
    ex, target = _examples(_rows())
    groups = query_groups(ex, target)
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    # The same query text twice in a row still makes two groups.
    twice = _rows([GROUPS[0], GROUPS[0]])
    assert len(query_groups(*_examples(twice))) == 2


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"sentence1": "q", "sentence2": "n", "label": 0}], "follow its query's positive"),
        ([{"sentence1": "q", "sentence2": "p", "label": 1}], "no negatives"),
        (
            [
                {"sentence1": "q", "sentence2": "p", "label": 1},
                {"sentence1": "other", "sentence2": "n", "label": 0},
            ],
            "follow its query's positive",
        ),
    ],
)
def test_bad_groups_name_the_line(rows: list[dict[str, object]], message: str) -> None:
    with pytest.raises(DataError, match=message):
        query_groups(*_examples(rows))


def test_listwise_loss_is_softmax_cross_entropy_of_the_positive() -> None:
    logits = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.5], [0.0, 3.0]])
    odds = [2.0, 1.0, -1.0, 0.5, 3.0]
    first = -math.log(math.exp(odds[0]) / sum(math.exp(o) for o in odds[:3]))
    second = -math.log(math.exp(odds[3]) / sum(math.exp(o) for o in odds[3:]))
    assert listwise_loss(logits, [3, 2]).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_group_mrr() -> None:
    groups = [np.array([0, 1, 2]), np.array([3, 4])]
    assert group_mrr(np.array([3.0, 1.0, 2.0, 0.0, 1.0]), groups) == pytest.approx(100 * (1 + 0.5) / 2)


def test_listwise_training_ranks_each_positive_first(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "groups.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    cfg = CrossEncoderConfig(
        model=str(tiny_model_dir), train=[str(data)], dev=str(data), output=str(tmp_path / "out"),
        problem="single_label", loss="listwise", epochs=40, batch_size=6, lr=3e-3, warmup_ratio=0.0,
        device="cpu", progress=False, checkpoint_steps=0, precision="fp32",
    )  # fmt: skip
    summary = train_cross_encoder(cfg)
    assert summary["best"] == pytest.approx(100.0), summary  # dev MRR: every positive ranked first
    with pytest.raises(InvalidInputError, match="listwise"):
        train_cross_encoder(
            CrossEncoderConfig(**{**cfg.__dict__, "problem": "multi_label", "output": str(tmp_path / "r")})
        )
