"""The real thing: ``semsearch serve`` as a separate process, answering over HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.build import BuildConfig, build_index
from tests.loopback import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served_index(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_encoder) -> Path:
    root = tmp_path_factory.mktemp("served")
    corpus = root / "corpus.jsonl"
    words = [
        "the cat sat on the mat",
        "a dog ran in the park",
        "the sun is a star",
        "we eat bread and cheese",
    ]
    corpus.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(words)))
    out = root / "index"
    build_index(
        BuildConfig(model=str(tiny_model_dir), corpus=str(corpus), output=str(out), progress=False),
        tiny_encoder,
    )
    return out


@contextlib.contextmanager
def serving(index: Path, model: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``semsearch serve`` in a subprocess; yields (base URL, process) once /ready answers 200."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "semsearch.cli", "serve", "--index", str(index), "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **env}
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    ready = True
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready, f"server did not become ready; exit code {proc.poll()}"
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def test_serve_answers_over_http(served_index: Path, tiny_model_dir: Path) -> None:
    with serving(served_index, tiny_model_dir) as (base, _):
        r = httpx.post(f"{base}/search", json={"query": "the cat sat on the mat", "k": 2}, timeout=10)
        assert r.status_code == 200
        hits = r.json()["hits"]
        assert hits[0]["id"] == "d0"
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        bad = httpx.post(f"{base}/search", json={"query": " ", "k": 2}, timeout=10)
        assert bad.status_code == 422
        assert set(bad.json()["error"]) == {"code", "message"}


def test_acknowledged_writes_survive_kill_9(served_index: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Upserts and a delete answered 200, then SIGKILL at once; the restarted server has them all."""
    index = tmp_path / "idx"
    shutil.copytree(served_index, index)
    docs = [{"id": f"k{i}", "text": f"the dog ran in the park {i}", "metadata": {"i": i}} for i in range(5)]
    with serving(index, tiny_model_dir) as (base, proc):
        for doc in docs:
            assert httpx.put(f"{base}/documents", json={"documents": [doc]}, timeout=30).status_code == 200
        assert httpx.delete(f"{base}/documents/d1", timeout=30).status_code == 200
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    with serving(index, tiny_model_dir) as (base, _):
        for doc in docs:
            got = httpx.get(f"{base}/documents/{doc['id']}", timeout=10)
            assert got.status_code == 200 and got.json() == doc
        assert httpx.get(f"{base}/documents/d1", timeout=10).status_code == 404
        assert httpx.get(f"{base}/ready", timeout=10).json()["documents"] == 4 - 1 + 5
        hits = httpx.post(f"{base}/search", json={"query": "the dog ran in the park 3", "k": 1}, timeout=10)
        assert hits.json()["hits"][0]["id"].startswith("k")  # the tiny vocabulary has no digits


def test_serve_refuses_a_missing_index(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "semsearch.cli",
        "serve",
        "--index",
        str(tmp_path / "nope"),
        "--port",
        str(free_port()),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "index folder not found" in proc.stderr
    assert str(tmp_path / "nope") in proc.stderr
    assert "Traceback" not in proc.stderr
