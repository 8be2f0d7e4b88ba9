"""kill -9 at random points of a build, then resume: the result equals an uninterrupted build."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

N_DOCS = 20_000
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "fish",
    "star",
    "moon",
    "sun",
    "rain",
    "snow",
    "wind",
    "bread",
    "soup",
    "code",
    "bug",
    "team",
    "goal",
    "song",
    "band",
]


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("resume") / "corpus.jsonl"
    with path.open("w") as fh:
        for i in range(N_DOCS):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            fh.write(json.dumps({"id": f"d{i}", "text": text, "metadata": {"n": i}}) + "\n")
    return path


def _cmd(model: Path, corpus: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "semsearch.cli",
        "index",
        "build",
        "--model",
        str(model),
        "--corpus",
        str(corpus),
        "--output",
        str(out),
        "--chunk-size",
        "400",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        # Pinned: the reference and the resumed build are separate outputs, and auto's timing
        # may choose differently for each (a resume itself keeps its interrupted choice).
        "--precision",
        "fp32",
        "--no-progress",
    ]


def _rows_done(work: Path) -> int:
    try:
        return int(json.loads((work / "build_state.json").read_text())["rows_done"])
    except (OSError, ValueError, KeyError):
        return -1


def _kill_when(cmd: list[str], work: Path, done: Callable[[], bool], limit_s: float = 120) -> bool:
    """Start a build and kill -9 it once ``done()``; returns False if it finished first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if done():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return True
            time.sleep(0.005)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_kill9_then_resume_equals_uninterrupted(
    tmp_path: Path, tiny_model_dir: Path, big_corpus: Path, index_contents
) -> None:
    reference = tmp_path / "reference"
    subprocess.run(_cmd(tiny_model_dir, big_corpus, reference), check=True, timeout=300)

    out = tmp_path / "resumed"
    work = out.parent / f".{out.name}.building"
    cmd = _cmd(tiny_model_dir, big_corpus, out)
    rng = random.Random(42)
    kills = 0
    for threshold in sorted(rng.sample(range(400, N_DOCS - 400, 400), 3)):
        # mid-chunk, soon after a given number of documents is checkpointed
        if _kill_when(cmd, work, lambda t=threshold: _rows_done(work) >= t):
            kills += 1
            assert not out.exists()  # nothing published yet
            state_rows = _rows_done(work)
            assert state_rows >= threshold
    # once more while the FAISS index is being written and published
    if _kill_when(cmd, work, lambda: (work / "index.faiss").exists() or _rows_done(work) >= N_DOCS):
        kills += 1
    assert kills >= 3
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "indexed 20000 documents" in result.stdout

    ref_ids, ref_vecs = index_contents(reference, 7)
    ids, vecs = index_contents(out, 7)
    assert ids == ref_ids
    np.testing.assert_allclose(vecs, ref_vecs, atol=1e-6)
    assert not work.exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "build_config.json",
        "docs.sqlite",
        "index.faiss",
        "manifest.json",
    ]


def test_changed_corpus_starts_over(tmp_path: Path, tiny_model_dir: Path, big_corpus: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(big_corpus.read_bytes())
    out = tmp_path / "idx"
    work = out.parent / f".{out.name}.building"
    assert _kill_when(_cmd(tiny_model_dir, corpus, out), work, lambda: _rows_done(work) >= 800)
    with corpus.open("a") as fh:
        fh.write(json.dumps({"id": "extra", "text": "the new cat"}) + "\n")
    result = subprocess.run(_cmd(tiny_model_dir, corpus, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "discarding the interrupted build" in result.stderr
    assert f"indexed {N_DOCS + 1} documents" in result.stdout


@pytest.mark.parametrize("stage", ["embedding", "published"])
def test_resume_with_auto_keeps_the_interrupted_precision(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """``auto`` times the precisions, and a rerun may choose another one: that would change the
    build key and re-embed everything. A resume continues at the precision the build chose."""
    from indexer import build as build_mod
    from indexer.build import BuildConfig, build_index

    out = tmp_path / "idx"
    cfg = BuildConfig(
        model=str(tiny_model_dir), corpus=str(tiny_corpus), output=str(out), chunk_size=10, progress=False
    )
    import torch

    from core.precision import candidates

    others = [p for p in candidates(torch.device("cpu")) if p != "fp32"]
    if not others:
        pytest.skip("this CPU runs no precision but fp32")
    chosen = others[-1]  # what "auto" is made to choose the first time (never fp32, the default)
    real_apply = build_mod.set_precision

    def first_choice(encoder: Any, precision: str, *args: Any) -> Any:
        return real_apply(encoder, chosen if precision == "auto" else precision, *args)

    monkeypatch.setattr(build_mod, "set_precision", first_choice)
    if stage == "embedding":  # killed after two chunks
        real_embed, calls = build_mod._embed_chunk, []

        def dies(*args: Any) -> None:
            calls.append(1)
            if len(calls) > 2:
                raise RuntimeError("killed")
            real_embed(*args)

        monkeypatch.setattr(build_mod, "_embed_chunk", dies)
        with pytest.raises(RuntimeError, match="killed"):
            build_index(cfg)
        monkeypatch.setattr(build_mod, "_embed_chunk", real_embed)
    else:  # finished, killed before the swap
        import core.index.writer as writer_mod

        real_publish = writer_mod.publish
        monkeypatch.setattr(writer_mod, "publish", lambda *a: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            build_index(cfg)
        monkeypatch.setattr(writer_mod, "publish", real_publish)

    seen: list[str] = []

    def spy(encoder: Any, precision: str, *args: Any) -> Any:
        seen.append(precision)
        return real_apply(encoder, precision, *args)

    monkeypatch.setattr(build_mod, "set_precision", spy)
    report = build_index(cfg)
    assert seen == [chosen]  # not re-measured
    assert report.manifest.precision == chosen
    assert report.resumed_from == (20 if stage == "embedding" else 50)


def test_an_interrupted_precision_this_device_cannot_run_is_measured_again(
    tmp_path: Path, tiny_model_dir: Path, tiny_corpus: Path
) -> None:
    """A build begun at fp16 on a GPU and resumed on a CPU: fp16 is not reused (it would fail)."""
    from core.encoder import Encoder
    from core.index.writer_lock import work_dir
    from indexer.build import STATE_FILE, BuildConfig, _build_key, _interrupted_precision

    out = tmp_path / "idx"
    cfg = BuildConfig(model=str(tiny_model_dir), corpus=str(tiny_corpus), output=str(out), progress=False)
    encoder = Encoder.load(tiny_model_dir, device="cpu")
    work = work_dir(out, "building")
    work.mkdir()
    for precision, expected in (("fp16", None), ("fp32", "fp32")):
        state = {
            "key": _build_key(cfg, encoder, precision),
            "rows_done": 0,
            "shards": [],
            "precision": precision,
        }
        (work / STATE_FILE).write_text(json.dumps(state))
        assert _interrupted_precision(cfg, encoder, out) == expected
