"""Pooling modules on hand-computed tensors: padding never leaks into the sentence vector."""

from __future__ import annotations

import json

import pytest
import torch

from core.errors import ModelFormatError
from core.pooling import Normalize, Pooling, mean_pool

GARBAGE = 1e6

# Two sequences of width 3, dim 2. Row 0 has 2 real tokens, row 1 has 1; padded slots hold garbage.
TOKENS = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 6.0], [GARBAGE, -GARBAGE]],
        [[5.0, -7.0], [GARBAGE, GARBAGE], [-GARBAGE, GARBAGE]],
    ]
)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


def pool(modes: tuple[str, ...], tokens: torch.Tensor = TOKENS, mask: torch.Tensor = MASK) -> torch.Tensor:
    return Pooling(tokens.shape[-1], modes)({"token_embeddings": tokens, "attention_mask": mask})[
        "sentence_embedding"
    ]


def test_mean_pool_ignores_padding() -> None:
    expected = torch.tensor([[2.0, 4.0], [5.0, -7.0]])
    torch.testing.assert_close(mean_pool(TOKENS, MASK), expected)
    torch.testing.assert_close(pool(("mean",)), expected)


def test_mean_pool_equals_unpadded_mean() -> None:
    torch.manual_seed(1)
    real = torch.randn(1, 4, 8)
    padded = torch.cat([real, torch.full((1, 5, 8), 123.0)], dim=1)
    mask = torch.tensor([[1] * 4 + [0] * 5])
    torch.testing.assert_close(mean_pool(padded, mask), real.mean(dim=1))


def test_cls_pooling_takes_first_token() -> None:
    torch.testing.assert_close(pool(("cls",)), torch.tensor([[1.0, 2.0], [5.0, -7.0]]))


def test_max_pooling_ignores_padding() -> None:
    torch.testing.assert_close(pool(("max",)), torch.tensor([[3.0, 6.0], [5.0, -7.0]]))


def test_max_pooling_ignores_zero_padding_when_real_values_are_negative() -> None:
    tokens = torch.tensor([[[-3.0, -1.0], [-2.0, -5.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool(("max",), tokens, mask), torch.tensor([[-2.0, -1.0]]))


def test_mean_sqrt_len_pooling() -> None:
    # sum / sqrt(len): row 0 sum (4, 8) over 2 tokens; row 1 sum (5, -7) over 1 token.
    root2 = 2.0**0.5
    torch.testing.assert_close(pool(("mean_sqrt_len",)), torch.tensor([[4 / root2, 8 / root2], [5.0, -7.0]]))


def test_modes_concatenate_in_sentence_transformers_order() -> None:
    pooling = Pooling(2, ("mean", "cls"))
    assert pooling.modes == ("cls", "mean")
    assert pooling.output_dim == 4
    torch.testing.assert_close(
        pool(("mean", "cls")), torch.tensor([[1.0, 2.0, 2.0, 4.0], [5.0, -7.0, 5.0, -7.0]])
    )


def test_normalize_gives_unit_vectors() -> None:
    out = Normalize()({"sentence_embedding": torch.tensor([[3.0, 4.0], [0.0, -2.0]])})["sentence_embedding"]
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.0, -1.0]]))


def test_pooling_config_round_trip(tmp_path) -> None:
    pooling = Pooling(16, ("cls", "max"))
    pooling.save(tmp_path / "1_Pooling")
    cfg = json.loads((tmp_path / "1_Pooling" / "config.json").read_text())
    assert cfg["word_embedding_dimension"] == 16
    assert cfg["pooling_mode_cls_token"] is True
    assert cfg["pooling_mode_max_tokens"] is True
    assert cfg["pooling_mode_mean_tokens"] is False
    loaded = Pooling.load(tmp_path / "1_Pooling")
    assert loaded.dim == 16
    assert loaded.modes == ("cls", "max")


@pytest.mark.parametrize(("modes", "needle"), [((), "no pooling mode"), (("mean", "median"), "median")])
def test_pooling_rejects_bad_modes(modes: tuple[str, ...], needle: str) -> None:
    with pytest.raises(ModelFormatError, match=needle):
        Pooling(8, modes)


def test_pooling_rejects_unsupported_config(tmp_path) -> None:
    cfg = {"word_embedding_dimension": 8, "pooling_mode_lasttoken": True}
    with pytest.raises(ModelFormatError, match="lasttoken"):
        Pooling.from_config(cfg, "x")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="invalid JSON"):
        Pooling.load(tmp_path)
