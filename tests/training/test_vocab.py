"""Vocabulary extension: the pieces a corpus lacks become tokens, and the folder stays loadable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.encoder import Encoder
from core.errors import InvalidInputError
from training.vocab import extend_vocab, is_cjk, missing_pieces, unk_rate

# Real LCQMC-style questions (the first lines of LCQMC dev), and words the tiny vocabulary has.
CHINESE = ["开初婚未育证明怎么弄？", "初婚未育情况证明怎么开？", "谁知道她是网络美女吗？"]
TEXTS = [*CHINESE, "the red guitar", "the red guitär and the zebra"]


def test_missing_pieces_are_cjk_characters_and_word_internal_letters(tiny_encoder: Encoder) -> None:
    pieces = missing_pieces(tiny_encoder.tokenizer, TEXTS)
    assert pieces["明"] == 2 and pieces["证"] == 2  # one token per CJK character, counted
    assert all(len(p) == 1 or (p.startswith("##") and len(p) == 3) for p in pieces)  # one character each
    assert all(is_cjk(p) for p in pieces if len(p) == 1 and p not in "？zgu")
    assert "z" in pieces and "##e" in pieces  # "zebra" is not in the tiny vocabulary
    assert "red" not in pieces and "##d" not in pieces  # words it knows are left alone ("guitär" too:
    assert "##ä" not in pieces and "g" not in pieces  # the tokenizer strips accents before WordPiece)


def test_extended_folder_has_no_unk_on_its_texts_and_loads_everywhere(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "zh"
    held_out = ["证明怎么开", "网络"]  # characters all seen in TEXTS
    report = extend_vocab(tiny_model_dir, TEXTS, out, init="mean", measure={"held-out": held_out})
    assert report.unk_rate_before > 0.5 and report.unk_rate_after == 0.0
    assert report.measured_on["held-out"]["before"] == 1.0 and report.measured_on["held-out"]["after"] == 0.0
    encoder = Encoder.load(out, "cpu")
    assert len(encoder.tokenizer) == report.vocab_size
    assert encoder.tokenize(["开初婚"])[0].tokens[1:-1] == ["开", "初", "婚"]
    assert encoder.encode(CHINESE).shape == (3, encoder.dim)
    lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == report.vocab_size and lines[encoder.tokenizer.convert_tokens_to_ids("婚")] == "婚"
    from transformers import AutoModel, AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(out)).tokenize("开初婚") == ["开", "初", "婚"]
    emb = AutoModel.from_pretrained(str(out)).get_input_embeddings().weight.detach()
    old = Encoder.load(tiny_model_dir, "cpu").net[0].auto_model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == report.vocab_size
    assert torch.allclose(emb[: old.shape[0]], old)  # the old rows are kept
    assert torch.allclose(emb[old.shape[0] :], old.mean(dim=0).expand(emb.shape[0] - old.shape[0], -1))


def test_unk_and_random_inits_and_bad_arguments(tiny_model_dir: Path, tmp_path: Path, tiny_encoder) -> None:
    report = extend_vocab(tiny_model_dir, CHINESE, tmp_path / "unk")  # the default
    emb = Encoder.load(tmp_path / "unk", "cpu").net[0].auto_model.get_input_embeddings().weight.detach()
    unk_id = tiny_encoder.tokenizer.unk_token_id
    assert torch.allclose(emb[-1], emb[unk_id]) and report.added > 0
    extend_vocab(tiny_model_dir, CHINESE, tmp_path / "random", init="random")
    rnd = Encoder.load(tmp_path / "random", "cpu").net[0].auto_model.get_input_embeddings().weight.detach()
    assert float(rnd[-report.added :].std()) < 0.1  # BERT's N(0, 0.02), not the mean
    high = extend_vocab(tiny_model_dir, CHINESE, tmp_path / "min2", min_count=2)
    assert 0 < high.added < report.added  # only the characters seen twice
    with pytest.raises(InvalidInputError, match="init"):
        extend_vocab(tiny_model_dir, CHINESE, tmp_path / "x", init="zeros")
    with pytest.raises(InvalidInputError, match="no text"):
        extend_vocab(tiny_model_dir, [], tmp_path / "y")
    assert unk_rate(tiny_encoder.tokenizer, [])[1] == 0


def test_the_command_reads_pair_files_and_reports_held_out_rates(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from semsearch.cli import main

    train, dev = tmp_path / "train.txt", tmp_path / "LCQMC" / "dev.txt"
    dev.parent.mkdir()
    train.write_text("开初婚未育证明怎么弄？\t初婚未育情况证明怎么开？\t1\n谁知道她是网络美女吗？\t爱情\t0\n")
    dev.write_text("证明怎么开\t网络美女\t1\n")
    argv = ["train", "extend-vocab", "--model", str(tiny_model_dir), "--pairs", str(train)]
    assert main([*argv, "--measure", str(dev), "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "[UNK]" in out and "-> 0.00%" in out and "LCQMC/dev.txt: [UNK] 100.00% -> 0.00%" in out
    bad = tmp_path / "bad.txt"
    bad.write_text("only one column\n")
    assert main([*argv[:-1], str(bad), "--output", str(tmp_path / "o2")]) != 0
    assert "bad.txt" in capsys.readouterr().err
