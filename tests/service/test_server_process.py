"""The real thing: ``semsearch serve`` as a separate process, answering over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexer.build import BuildConfig, build_index

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def test_serve_answers_over_http(served_index: Path, tiny_model_dir: Path) -> None:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "semsearch.cli",
        "serve",
        "--index",
        str(served_index),
        "--model",
        str(tiny_model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
        r = httpx.post(f"{base}/search", json={"query": "the cat sat on the mat", "k": 2}, timeout=10)
        assert r.status_code == 200
        hits = r.json()["hits"]
        assert hits[0]["id"] == "d0"
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        bad = httpx.post(f"{base}/search", json={"query": " ", "k": 2}, timeout=10)
        assert bad.status_code == 422
        assert set(bad.json()["error"]) == {"code", "message"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_serve_refuses_a_missing_index(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "semsearch.cli",
        "serve",
        "--index",
        str(tmp_path / "nope"),
        "--port",
        str(_free_port()),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "index folder not found" in proc.stderr
    assert str(tmp_path / "nope") in proc.stderr
    assert "Traceback" not in proc.stderr
