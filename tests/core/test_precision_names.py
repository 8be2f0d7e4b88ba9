"""The precision names are declared once and every entry point takes its list from there."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from core.precision_names import (
    CROSS_ENCODER_PRECISIONS,
    PRECISIONS,
    SERVE_PRECISIONS,
    TRAIN_PRECISIONS,
    precision_pattern,
)
from semsearch.cli import build_parser
from service.settings import Settings


def test_the_pattern_takes_exactly_the_names() -> None:
    pattern = precision_pattern(CROSS_ENCODER_PRECISIONS)
    assert all(re.fullmatch(pattern, p) for p in CROSS_ENCODER_PRECISIONS)
    assert not any(re.fullmatch(pattern, p) for p in ("int8", "index", "fp32x", ""))


def test_settings_and_flags_accept_the_declared_names() -> None:
    for name in SERVE_PRECISIONS:
        assert Settings(precision=name).precision == name
    with pytest.raises(ValidationError):
        Settings(reranker_precision="int8")
    parser = build_parser()
    for name in PRECISIONS:
        args = parser.parse_args(["index", "build", "--model", "m", "--corpus", "c", "--output", "o",
                                  "--precision", name])  # fmt: skip
        assert args.precision == name
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--precision", "fp8"])
    assert set(TRAIN_PRECISIONS) <= set(PRECISIONS)
