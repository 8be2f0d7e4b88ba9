"""docker-compose.yml itself, run by Debian's podman-compose, as the README's commands say:
`run --rm indexer`, `up -d api`, searches with and without the key from the secret file, the
indexer's `index add` that the API hot-reloads, then `down`.

Only the image (the one test_containers.py built), the corpus folder, the secret file and the
host port come from the environment, through the variables the compose file documents.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from container_engine import REPO, Engine, readable_jsonl, record, unavailable, wait_until

from tests.loopback import free_port

pytestmark = pytest.mark.slow

KEY = "compose-key-0123456789abcdef"
DOCS = [
    ("bake", "Knead the bread dough for ten minutes, then let it rise until doubled."),
    ("orbit", "Jupiter is the largest planet in our solar system and has dozens of moons."),
    ("tennis", "In tennis a player must win six games to take a set."),
]
MORE = [("bike", "Oil the bicycle chain and pump up the tyres before a long ride.")]
RELOAD_INTERVAL_S = 5.0  # what docker-compose.yml sets


class Compose:
    def __init__(self, env: dict[str, str], project: str) -> None:
        self.env, self.project = env, project

    def __call__(self, *args: str, timeout: float = 300, strict: bool = True) -> str:
        """strict: also fail on a podman command it ran that failed (podman-compose 1.0 exits 0
        then). `down` is not strict: it stops every service's container, started or not."""
        proc = subprocess.run(
            ["podman-compose", "-f", str(REPO / "docker-compose.yml"), "-p", self.project, *args],
            capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO,
        )  # fmt: skip
        # podman-compose 1.0 exits 0 even when a podman command it ran failed: check its log too.
        failed = proc.returncode != 0 or (strict and "exit code: 125" in proc.stdout)
        assert not failed, f"podman-compose {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout


@pytest.fixture
def compose(containers: Engine, service_image: str, tmp_path: Path) -> Iterator[tuple[Compose, str]]:
    if shutil.which("podman-compose") is None:
        unavailable("podman-compose is not installed (apt-get install podman-compose)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    readable_jsonl(corpus / "corpus.jsonl", DOCS)
    readable_jsonl(corpus / "more.jsonl", MORE)
    keys = tmp_path / "api_keys.txt"
    keys.write_text(KEY + "\n")
    for path in (tmp_path, corpus, keys):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the image's uid 10001 reads them
    port = free_port()
    env = {
        **containers.env,
        "SEMSEARCH_IMAGE": service_image,
        "SEMSEARCH_CORPUS_DIR": str(corpus),
        "SEMSEARCH_API_KEYS_SECRET": str(keys),
        "SEMSEARCH_API_PORTS": f"127.0.0.1:{port}",
    }
    project = f"sstest{uuid.uuid4().hex[:8]}"
    run = Compose(env, project)
    try:
        yield run, f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(Exception):
            run("down", "-t", "30", "-v", timeout=120, strict=False)
        # podman-compose 1.0 leaves the project's network (and, after a failure, its volume).
        containers("network", "rm", "-f", f"{project}_default", check=False)
        containers("volume", "rm", "-f", f"{project}_index-data", check=False)


def test_compose_indexer_api_search_add_down(compose: tuple[Compose, str], containers: Engine) -> None:
    run, base = compose
    # --no-deps: Debian's podman-compose 1.0 starts every service (profiles too) for a `run` of a
    # service with no dependencies; Docker Compose takes the flag and means the same.
    run("run", "--rm", "--no-deps", "indexer", timeout=600)
    start = time.monotonic()
    run("up", "-d", "api")
    name = f"{run.project}_api_1"
    containers.wait_ready(name, base)
    record("compose_up_to_ready_s", round(time.monotonic() - start, 1))
    auth = {"Authorization": f"Bearer {KEY}"}

    def top(query: str) -> str:
        r = httpx.post(f"{base}/search", json={"query": query, "k": 1}, headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        return str(r.json()["hits"][0]["id"])

    assert httpx.post(f"{base}/search", json={"query": "bread"}, timeout=30).status_code == 401
    assert top("which planet is the biggest") == "orbit"
    assert top("how to make bread") == "bake"

    # The README's update command: a new generation, hot-reloaded by the running API.
    run(
        "run", "--rm", "--no-deps", "indexer", "semsearch", "index", "add", "--index", "/data/index",
        "--corpus", "/corpus/more.jsonl",
        timeout=600,
    )  # fmt: skip
    added = time.monotonic()
    assert wait_until(lambda: top("how to look after a bicycle") == "bike", timeout=RELOAD_INTERVAL_S + 30)
    record("compose_reload_visible_after_s", round(time.monotonic() - added, 2))

    run("down", "-t", "30", timeout=120, strict=False)
    assert containers("container", "exists", name, check=False).returncode != 0, "down left the API"
