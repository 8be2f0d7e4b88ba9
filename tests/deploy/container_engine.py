"""podman, driven from the tests: the engine's settings for this machine, the images, containers.

The image tests run the real thing: `deploy/base-image.sh` makes the base from Debian's packages,
`deploy/build-image.py` builds the Dockerfile as a user would, and containers of it index, serve,
hot-reload and stop. Nothing here is mocked; every wait is bounded.

This machine's podman needs a containers.conf (ulimits within the hard limits, runc instead of
crun); `engine()` writes one with deploy/containers-conf.py, which says why.

Where podman is missing or cannot start a container, the tests skip, with the reason, unless
SEMSEARCH_REQUIRE_CONTAINERS=1 (set by .ci/run), which turns that into a failure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE_ENV = "SEMSEARCH_REQUIRE_CONTAINERS"
BASE_IMAGE = "localhost/semsearch-base:bookworm"
# Test tags, so that a developer's own semsearch:latest is never replaced by a test run.
SERVICE_IMAGE = "localhost/semsearch-test:latest"
TRAINER_IMAGE = "localhost/semsearch-test:train"
ARTIFACTS = REPO / "test-artifacts"
BUILD_TIMEOUT_S = 1500
READY_TIMEOUT_S = 180


def unavailable(reason: str) -> None:
    """Skip, or fail where CI says containers must run here."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: containers must run on this machine)")
    pytest.skip(reason)


def readable_jsonl(path: Path, docs: list[tuple[str, str]]) -> Path:
    """``{"id", "text"}`` lines, readable by the image's uid 10001 (pytest's temp folders are
    0700: the caller opens the folder with ``chmod 0o755``)."""
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs), encoding="utf-8")
    path.chmod(0o644)
    return path


def record(name: str, value: Any) -> None:
    """Keep a measured figure (build time, size, cold start) in test-artifacts/containers.json."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "containers.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"\ncontainers: {name} = {value}")


@dataclass
class Engine:
    conf: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *args], capture_output=True, text=True, timeout=timeout, env=self.env, input=input
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args[:4])} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    def exists(self, image: str) -> bool:
        return self("image", "exists", image, check=False).returncode == 0

    def size_mb(self, image: str) -> float:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout.strip()) / 1e6

    def logs(self, name: str) -> str:
        proc = self("logs", name, check=False, timeout=30)
        return (proc.stdout + proc.stderr)[-6000:]

    def state(self, name: str) -> dict[str, Any]:
        out = self("inspect", "--format", "{{json .State}}", name, timeout=30).stdout
        return dict(json.loads(out))

    @contextlib.contextmanager
    def container(self, image: str, *args: str, name: str | None = None) -> Iterator[str]:
        """A detached container (`podman run -d OPTIONS IMAGE COMMAND`, args: OPTIONS -- COMMAND),
        removed afterwards whatever happened."""
        name = name or f"semsearch-test-{uuid.uuid4().hex[:10]}"
        split = args.index("--") if "--" in args else len(args)
        options, command = list(args[:split]), list(args[split + 1 :])
        try:
            # Inside the try: a start that fails (port taken) leaves a created container behind.
            self("run", "-d", "--name", name, *options, image, *command, timeout=120)
            yield name
        finally:
            self("rm", "-f", "-t", "5", name, check=False, timeout=60)

    @contextlib.contextmanager
    def volume(self) -> Iterator[str]:
        name = f"semsearch-test-{uuid.uuid4().hex[:10]}"
        self("volume", "create", name)
        try:
            yield name
        finally:
            self("volume", "rm", "-f", name, check=False, timeout=60)

    def wait_ready(self, name: str, base: str, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds until GET /ready answered 200; fails with the container's log otherwise."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.state(name).get("Running"):
                pytest.fail(f"container {name} stopped:\n{self.logs(name)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/ready", timeout=3).status_code == 200:
                    return time.monotonic() - start
            time.sleep(0.25)
        pytest.fail(f"{name} not ready after {timeout} s:\n{self.logs(name)}")


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def write_containers_conf(path: Path) -> Path:
    """This host's containers.conf, by the script users run (deploy/containers-conf.py)."""
    script = REPO / "deploy" / "containers-conf.py"
    subprocess.run(["python3", str(script), str(path)], check=True, timeout=30)
    return path


@functools.cache
def engine(conf_dir: str) -> Engine:
    """podman with this machine's settings, checked by running a container of the base image."""
    if shutil.which("podman") is None:
        unavailable(
            "podman is not installed (apt-get install podman buildah debootstrap runc podman-compose)"
        )
    conf = write_containers_conf(Path(conf_dir) / "containers.conf")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    eng = Engine(conf=conf, env=env)
    if not eng.exists(BASE_IMAGE):
        if shutil.which("debootstrap") is None:
            unavailable(f"{BASE_IMAGE} is missing and debootstrap is not installed")
        start = time.monotonic()
        proc = subprocess.run(
            ["bash", str(REPO / "deploy" / "base-image.sh"), BASE_IMAGE],
            capture_output=True, text=True, timeout=900, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            unavailable(f"deploy/base-image.sh failed: {proc.stderr[-2000:]}")
        record("base_image_build_s", round(time.monotonic() - start, 1))
    record("base_image_mb", round(eng.size_mb(BASE_IMAGE), 1))
    probe = eng("run", "--rm", BASE_IMAGE, "python3", "-c", "print('ok')", check=False, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        unavailable(f"podman cannot run a container here: {probe.stderr.strip()[-1500:]}")
    return eng


def build(eng: Engine, target: str, tag: str) -> None:
    """deploy/build-image.py, as a user runs it; the time and size go to test-artifacts."""
    start = time.monotonic()
    log = ARTIFACTS / f"build-{target}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("w") as out:
        # Its own process group, so that a timeout stops podman build too, not just the script.
        proc = subprocess.Popen(
            ["python3", str(REPO / "deploy" / "build-image.py"), "--tool", "podman", "--target", target,
             "--tag", tag, "--base", BASE_IMAGE],
            stdout=out, stderr=subprocess.STDOUT, env=eng.env, start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            pytest.fail(f"build of {target} took over {BUILD_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
    assert proc.returncode == 0, f"build of {target} failed:\n{log.read_text()[-5000:]}"
    record(f"{target}_build_s", round(time.monotonic() - start, 1))
    record(f"{target}_image_mb", round(eng.size_mb(tag), 1))
