"""Server processes for benchmarks: a free loopback port, a subprocess waited on until ready
(bounded) and stopped on exit, and index builds skipped when their inputs are unchanged."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server subprocess: started in its own session, logs to a file, waited on until
    ``ready_path`` answers 200 (bounded), then SIGTERM (SIGKILL after a grace period) on exit."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str, log: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.ready_path = ready_path
        self.log_path = log
        self.url = f"http://{LOOPBACK}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_body: Any = None
        self.start_s = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = t0 + timeout_s
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode} before ready; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    r = client.get(self.ready_path)
                    if r.status_code == 200:
                        self.start_s = time.monotonic() - t0
                        with contextlib.suppress(ValueError):
                            self.ready_body = r.json()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready within {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    index: str, model: str | None, env: dict[str, str], cwd: Path | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``semsearch serve`` on a free loopback port, once ``/ready`` answers 200; ``cwd``: the
    checkout to run (with ``PYTHONPATH`` pointing at it in ``env``), else this one."""
    port = free_port()
    cmd = [sys.executable, "-m", "semsearch.cli", "serve", "--index", index, "--host", "127.0.0.1"]
    cmd += ["--port", str(port)] + (["--model", model] if model else [])
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server not ready within 180 s")


def build_stamp(corpus_sha: str, model_dir: Path, what: str) -> str:
    return json.dumps({"corpus_sha256": corpus_sha, "model": str(model_dir), "what": what}, sort_keys=True)


def ensure_built(
    out: Path, stamp: str, argv: list[str], env: dict[str, str], timeout_s: float, log: Path
) -> float | None:
    """Run ``argv`` to (re)build ``out`` unless its stamp matches; returns the build's seconds."""
    stamp_file = out.parent / f"{out.name}.stamp.json"
    if out.is_dir() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return None
    print(f"building {out} ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    with log.open("wb") as fh:
        try:
            subprocess.run(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"building {out} failed ({exc}); log {log}:\n{tail}") from exc
    stamp_file.write_text(stamp)
    return time.monotonic() - t0


def default_semsearch() -> Path:
    for cand in (REPO / ".venv" / "bin" / "semsearch", Path(sys.prefix) / "bin" / "semsearch"):
        if cand.exists():
            return cand
    found = shutil.which("semsearch")
    return Path(found) if found else REPO / ".venv" / "bin" / "semsearch"
