from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.encoder import Encoder
from core.errors import DataError, InvalidInputError
from training.bi_encoder import (
    BiEncoderConfig,
    BiEncoderTask,
    SoftmaxHead,
    focal_cross_entropy,
    train_bi_encoder,
)
from training.data import PairExample, read_pairs
from training.loop import run


def _cfg(tiny_model_dir: Path, pairs_file: Path, out: Path, **kw: object) -> BiEncoderConfig:
    base: dict[str, object] = dict(
        model=str(tiny_model_dir),
        train=[str(pairs_file)],
        output=str(out),
        batch_size=4,
        lr=1e-3,
        warmup_ratio=0.0,
        precision="fp32",
        device="cpu",
        progress=False,
        checkpoint_steps=0,
        seed=7,
    )
    base.update(kw)
    return BiEncoderConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("use_product", "factor"), [(False, 3), (True, 4)])
def test_head_input_size(use_product: bool, factor: int) -> None:
    head = SoftmaxHead(32, 3, use_product)
    assert head.classifier.in_features == factor * 32
    u, v = torch.randn(5, 32), torch.randn(5, 32)
    feats = head.features(u, v)
    assert torch.equal(feats[:, 64:96], torch.abs(u - v))
    assert head(u, v).shape == (5, 3)


def test_both_towers_are_one_encoder(tiny_model_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model_dir, pairs_file, tmp_path / "o")
    encoder = Encoder.load(tiny_model_dir, "cpu")
    task = BiEncoderTask(cfg, encoder, read_pairs(pairs_file), None)
    params = [p for m in task.modules.values() for p in m.parameters()]
    assert len({id(p) for p in params}) == len(params)  # no parameter appears twice
    n_encoder = sum(1 for _ in encoder.net.parameters())
    assert len(params) == n_encoder + 2  # the encoder once, plus the head's weight and bias
    # u and v get gradient into the very same tensors
    loss, _ = task.loss(np.arange(4))
    loss.backward()
    emb = encoder.net[0].auto_model.embeddings.word_embeddings.weight
    assert emb.grad is not None
    rows_with_grad = set(torch.nonzero(emb.grad.abs().sum(1)).flatten().tolist())
    s1_ids = {i for e in task.enc1[:4] for i in e.ids}
    s2_ids = {i for e in task.enc2[:4] for i in e.ids}
    assert s1_ids - s2_ids and (s1_ids - s2_ids) <= rows_with_grad
    assert s2_ids - s1_ids and (s2_ids - s1_ids) <= rows_with_grad


def test_overfits_sixteen_pairs(tiny_model_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    cfg = _cfg(tiny_model_dir, pairs_file, out, epochs=200, batch_size=16, lr=5e-3)
    encoder = Encoder.load(tiny_model_dir, "cpu")
    pairs = read_pairs(pairs_file)
    task = BiEncoderTask(cfg, encoder, pairs, pairs)
    run(task, cfg, torch.device("cpu"))
    for m in task.modules.values():
        m.eval()
    with torch.no_grad():
        loss, _ = task.loss(np.arange(16))
    assert float(loss) < 0.05
    assert task.evaluate()["accuracy"] == 100.0


def test_focal_loss() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(focal_cross_entropy(logits, target, 0.0), ce)
    assert focal_cross_entropy(logits, target, 2.0) < ce


def test_run_outputs_and_reload(tiny_model_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    summary = train_bi_encoder(
        _cfg(tiny_model_dir, pairs_file, out, dev=str(pairs_file), epochs=2, eval_steps=2)
    )
    for name in (
        "modules.json",
        "1_Pooling/config.json",
        "model.safetensors",
        "softmax_head.safetensors",
        "softmax_head.json",
        "train_config.json",
        "metrics.jsonl",
        "training_curves.png",
    ):
        assert (out / name).exists(), name
    assert summary["steps"] == 8
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("dev_spearman" in r for r in rows)
    head_cfg = json.loads((out / "softmax_head.json").read_text())
    assert head_cfg["label2id"] == {"contradiction": 0, "entailment": 1, "neutral": 2}
    head, label_map = SoftmaxHead.load(out)
    assert label_map == head_cfg["label2id"] and head.classifier.in_features == 96
    texts = ["the red bread and the soup", "a star with moon"]
    assert not np.allclose(
        Encoder.load(out, "cpu").encode(texts), Encoder.load(tiny_model_dir, "cpu").encode(texts), atol=1e-4
    )


def test_saved_folder_reloads_with_the_same_embeddings(
    tiny_model_dir: Path, pairs_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    cfg = _cfg(tiny_model_dir, pairs_file, out, epochs=1)
    task = BiEncoderTask(cfg, Encoder.load(tiny_model_dir, "cpu"), read_pairs(pairs_file), None)
    run(task, cfg, torch.device("cpu"))  # no dev set: the final model is saved
    texts = ["the red bread and the soup", "a star with moon", "the big ball"]
    task.encoder.net.eval()
    np.testing.assert_allclose(Encoder.load(out, "cpu").encode(texts), task.encoder.encode(texts), atol=1e-6)


def test_cosine_and_mnrl_objectives_lower_their_loss(
    tiny_model_dir: Path, pairs_file: Path, tmp_path: Path
) -> None:
    for objective in ("cosine", "mnrl"):
        cfg = _cfg(
            tiny_model_dir, pairs_file, tmp_path / objective, objective=objective, epochs=15, batch_size=8
        )
        encoder = Encoder.load(tiny_model_dir, "cpu")
        task = BiEncoderTask(cfg, encoder, read_pairs(pairs_file), None)
        batch = np.arange(min(8, task.num_examples()))
        with torch.no_grad():
            encoder.net.eval()
            before = float(task.loss(batch)[0])
        run(task, cfg, torch.device("cpu"))
        with torch.no_grad():
            encoder.net.eval()
            after = float(task.loss(batch)[0])
        assert after < before * 0.7, objective


def test_mnrl_trains_on_positive_pairs_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    """In-batch negatives over a labelled pair file: its negatives are left out, never pulled
    together as if they matched (LCQMC's 0-labelled pairs were, before)."""
    rows = [
        PairExample("a", "b", label="1"),
        PairExample("c", "d", label="0"),
        PairExample("e", "f", label="entailment"),
        PairExample("g", "h", label="contradiction"),
        PairExample("i", "j", score=0.9),
        PairExample("k", "l", score=0.2),
        PairExample("m", "n"),  # a bare pair: a positive
    ]
    cfg = _cfg(tiny_model_dir, tmp_path / "x.jsonl", tmp_path / "o", objective="mnrl")
    task = BiEncoderTask(cfg, Encoder.load(tiny_model_dir, "cpu"), rows, None)
    assert [e.s1 for e in task.train] == ["a", "e", "i", "m"]
    with pytest.raises(DataError, match="positive pairs"):
        BiEncoderTask(cfg, Encoder.load(tiny_model_dir, "cpu"), [rows[1], rows[3]], None)


def test_mnrl_hard_negatives_are_the_anchor_s_own_negatives_and_join_the_candidates(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    rows = [
        PairExample("q1", "doc one", label="1"),
        PairExample("q1", "neg one a", label="0"),
        PairExample("q1", "neg one b", label="0"),
        PairExample("q1", "neg one c", label="0"),
        PairExample("q2", "doc two", label="1"),
        PairExample("q2", "neg two", label="0"),
        PairExample("q3", "doc three", label="1"),  # no negatives of its own
    ]
    cfg = _cfg(tiny_model_dir, tmp_path / "x.jsonl", tmp_path / "o", objective="mnrl", hard_negatives=2)
    encoder = Encoder.load(tiny_model_dir, "cpu")
    task = BiEncoderTask(cfg, encoder, rows, None)
    assert [e.s1 for e in task.train] == ["q1", "q2", "q3"]
    expected = [["neg one a", "neg one b"], ["neg two"], []]
    assert [[n.ids for n in negs] for negs in task.negatives] == [
        [t.ids for t in encoder.tokenize(texts)] if texts else [] for texts in expected
    ]
    seen: list[int] = []
    real_forward = encoder.forward

    def forward(feats):  # type: ignore[no-untyped-def]
        seen.append(int(feats["input_ids"].shape[0]))
        return real_forward(feats)

    encoder.forward = forward  # type: ignore[method-assign]
    loss, n = task.loss(np.arange(3))
    assert n == 3 and seen == [3 + 3 + 3] and float(loss) > 0  # anchors, positives, 3 negatives
    plain = BiEncoderTask(
        _cfg(tiny_model_dir, tmp_path / "x.jsonl", tmp_path / "p", objective="mnrl"), encoder, rows, None
    )
    seen.clear()
    plain.loss(np.arange(3))
    assert seen == [6]
    with pytest.raises(InvalidInputError, match="mnrl"):
        BiEncoderTask(
            _cfg(tiny_model_dir, tmp_path / "x.jsonl", tmp_path / "c", hard_negatives=1), encoder, rows, None
        )


class _Killed(Exception):
    pass


def test_resume_equals_uninterrupted(tiny_model_dir: Path, pairs_file: Path, tmp_path: Path) -> None:
    def make(out: Path) -> tuple[BiEncoderTask, BiEncoderConfig]:
        torch.manual_seed(0)
        cfg = _cfg(
            tiny_model_dir, pairs_file, out, epochs=2, batch_size=4, checkpoint_steps=3, warmup_ratio=0.25
        )
        return BiEncoderTask(cfg, Encoder.load(tiny_model_dir, "cpu"), read_pairs(pairs_file), None), cfg

    full, cfg_full = make(tmp_path / "full")
    summary_full = run(full, cfg_full, torch.device("cpu"))

    interrupted, cfg_int = make(tmp_path / "int")
    calls = {"n": 0}
    real_loss = interrupted.loss

    def dying_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        calls["n"] += 1
        if calls["n"] == 6:  # die during step 6: the last checkpoint is at step 3
            raise _Killed
        return real_loss(batch)

    interrupted.loss = dying_loss  # type: ignore[method-assign]
    with pytest.raises(_Killed):
        run(interrupted, cfg_int, torch.device("cpu"))

    resumed, cfg_res = make(tmp_path / "int")
    cfg_res.resume = True
    summary_res = run(resumed, cfg_res, torch.device("cpu"))
    assert summary_res["steps"] == summary_full["steps"] == 8
    for (name, a), (_, b) in zip(
        full.encoder.net.state_dict().items(), resumed.encoder.net.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert full.head is not None and resumed.head is not None
    torch.testing.assert_close(full.head.classifier.weight, resumed.head.classifier.weight, atol=1e-6, rtol=0)


@pytest.mark.parametrize("smart", [True, False])
def test_batches_cover_every_pair_once_and_are_seeded(
    tiny_model_dir: Path, pairs_file: Path, tmp_path: Path, smart: bool
) -> None:
    cfg = _cfg(tiny_model_dir, pairs_file, tmp_path / "o", batch_size=5, smart_batching=smart)
    task = BiEncoderTask(cfg, Encoder.load(tiny_model_dir, "cpu"), read_pairs(pairs_file), None)
    batches = task.batches(0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(16))
    assert max(len(b) for b in batches) == 5
    assert [b.tolist() for b in task.batches(0)] == [b.tolist() for b in batches]
    assert [b.tolist() for b in task.batches(1)] != [b.tolist() for b in batches]
