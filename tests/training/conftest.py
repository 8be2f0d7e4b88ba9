"""Pair data made of tiny-vocabulary words, for trainer tests on the tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

LABELS = ["entailment", "neutral", "contradiction"]


def tiny_pairs(n: int = 16) -> list[dict[str, object]]:
    """``n`` distinct labelled and scored pairs."""
    # Words from the tiny model's vocabulary (tests/conftest.py).
    topics = [
        ["bread", "soup", "oven", "pasta", "garlic", "onion", "cheese", "butter"],
        ["star", "planet", "moon", "orbit", "galaxy", "telescope", "comet", "sun"],
        ["code", "python", "function", "bug", "compiler", "variable", "loop", "server"],
        ["ball", "team", "goal", "match", "player", "coach", "score", "stadium"],
        ["guitar", "piano", "song", "drum", "band", "melody", "violin", "concert"],
    ]
    adjectives = ["red", "blue", "green", "big", "small", "old", "new", "fast", "slow", "bright"]
    rows = []
    for i in range(n):
        a = topics[i % len(topics)]
        b = topics[(i * 3 + 1) % len(topics)]
        adj = adjectives[i % len(adjectives)]
        label = LABELS[i % 3]
        s1 = f"the {adj} {a[i % 8]} and the {a[(i + 1) % 8]}"
        s2 = (
            f"a {b[(i + 2) % 8]} with {a[(i + 5) % 8]}"
            if label != "entailment"
            else f"the {a[i % 8]} is {adj}"
        )
        rows.append({"sentence1": s1, "sentence2": s2, "label": label, "score": [1.0, 0.5, 0.0][i % 3]})
    return rows


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in tiny_pairs()), encoding="utf-8")
    return path
