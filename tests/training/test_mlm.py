from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.encoder import Encoder
from training.loop import LoopConfig, run
from training.mlm import MlmConfig, MlmTask, mask_tokens, train_mlm

SENTENCES = [
    "the red bread and the soup",
    "a star with moon in the sky",
    "the python code has a bug",
    "the team scored a goal",
    "the band plays a song",
    "rain and snow and wind",
]


def test_mask_tokens_proportions_and_specials() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 100, (200, 50), generator=g)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False  # [CLS]
    maskable[:, 40:] = False  # padding
    inputs, labels = mask_tokens(ids, maskable, mask_id=4, vocab_size=100, prob=0.15, generator=g)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 40:].any()
    rate = chosen.sum().item() / maskable.sum().item()
    assert 0.13 < rate < 0.17
    masked = (inputs == 4) & chosen
    kept = (inputs == ids) & chosen
    assert 0.76 < masked.sum().item() / chosen.sum().item() < 0.84
    assert 0.07 < kept.sum().item() / chosen.sum().item() < 0.14  # 10% kept, plus random draws of the same id
    torch.testing.assert_close(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_mlm_loss_falls_when_overfitting(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = MlmConfig(
        model=str(tiny_model_dir),
        corpus="unused.txt",
        output=str(tmp_path / "mlm"),
        epochs=60,
        batch_size=6,
        lr=3e-3,
        warmup_ratio=0.0,
        precision="fp32",
        device="cpu",
        progress=False,
        checkpoint_steps=0,
        mask_prob=0.3,
    )
    encoder = Encoder.load(tiny_model_dir, "cpu")
    task = MlmTask(cfg, encoder, SENTENCES, 16)

    def mean_loss() -> float:
        task.mlm.eval()
        g = torch.Generator().manual_seed(123)
        task.generator = g
        with torch.no_grad():
            return float(np.mean([float(task.loss(np.arange(6))[0]) for _ in range(10)]))

    before = mean_loss()
    run(
        task,
        LoopConfig(
            output=cfg.output,
            epochs=150,
            lr=5e-3,
            warmup_ratio=0.0,
            precision="fp32",
            progress=False,
            checkpoint_steps=0,
        ),
        torch.device("cpu"),
    )
    after = mean_loss()
    assert after < before * 0.5, (before, after)


def test_train_mlm_writes_a_loadable_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "mlm"
    summary = train_mlm(
        MlmConfig(
            model=str(tiny_model_dir),
            corpus=str(corpus),
            output=str(out),
            epochs=2,
            batch_size=3,
            precision="fp32",
            device="cpu",
            progress=False,
        )
    )
    assert summary["steps"] == 4
    assert (out / "mlm_head.safetensors").exists()
    reloaded = Encoder.load(out, "cpu")
    original = Encoder.load(tiny_model_dir, "cpu")
    assert reloaded.max_seq_length == original.max_seq_length
    assert reloaded.pooling.modes == original.pooling.modes
    assert reloaded.fingerprint != original.fingerprint  # the weights moved


def test_mlm_texts_take_pair_sentences_less_the_excluded_and_hold_some_out(tmp_path: Path) -> None:
    from training.mlm import mlm_texts

    pairs = tmp_path / "pairs.tsv"
    lines = [f"sentence {i} here\tother {i} there\t1" for i in range(40)]
    pairs.write_text("\n".join([*lines, lines[0]]) + "\n")  # a repeated line counts once
    excluded = tmp_path / "dev.tsv"
    excluded.write_text("sentence 3 here\tnot in the training file\t0\n")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a corpus line\nother 5 there\n")
    cfg = MlmConfig(
        model="unused",
        output="unused",
        corpus=str(corpus),
        pairs=[str(pairs)],
        exclude=[str(excluded)],
        dev_size=5,
    )
    train, dev = mlm_texts(cfg)
    everything = train + dev
    assert len(everything) == len(set(everything)) == 80  # 1 corpus line + 79 distinct pair sides
    assert "sentence 3 here" not in everything and "a corpus line" in everything
    assert len(dev) == 5 and not set(dev) & set(train)
    assert mlm_texts(cfg) == (train, dev)  # the held-out draw is the seed's


def test_train_mlm_reports_held_out_masked_accuracy_before_and_after(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 5) + "\n" + "\n".join(f"{s} again" for s in SENTENCES) + "\n")
    out = tmp_path / "mlm"
    summary = train_mlm(
        MlmConfig(
            model=str(tiny_model_dir),
            corpus=str(corpus),
            output=str(out),
            epochs=40,
            batch_size=4,
            lr=3e-3,
            warmup_ratio=0.0,
            mask_prob=0.3,
            dev_size=2,
            precision="fp32",
            device="cpu",
            progress=False,
            checkpoint_steps=0,
        )
    )
    report = json.loads((out / "mlm_eval.json").read_text())
    assert report["held_out"] == 1 and report["texts"] == 11  # 12 distinct lines, a tenth held out
    assert report["before"] == summary["before"] and report["after"] == summary["after"]
    # The held-out masks are the same each time, so the loss moves only because the model did.
    assert report["after"]["masked_loss"] < report["before"]["masked_loss"]
