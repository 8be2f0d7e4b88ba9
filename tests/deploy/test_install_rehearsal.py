"""The image, rehearsed without Docker: the builder stage's install, then the runtime's CMD.

1. The build context is copied through .dockerignore (so a file the build needs but the ignore
   file drops fails here), and the Dockerfile's own `RUN bash scripts/install.sh ...` line runs
   in it with the builder stage's ENV, into a fresh venv. The one difference: TORCH_INDEX_URL is
   left unset, because these machines have no network but the package registries and carry the
   same CPU build of torch==2.13.0 in /opt/wheels, which the script already uses.
2. deploy/image-model.sh makes the image's model folder (a link to the packaged MiniLM).
3. The venv's `semsearch index build` indexes a few documents as the compose indexer job does.
4. The venv's `semsearch serve` starts with the image's environment (host 127.0.0.1 and a free
   port instead of 0.0.0.0:8000); the HEALTHCHECK script, /health, /ready and /search answer.

Every wait is bounded. The sizes and times are printed (pytest -s) for docs/deploy.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deploy_files import REPO, Dockerfile, copy_build_context, exec_form, split_words

pytestmark = pytest.mark.slow

INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 120
DOCS = [
    ("py-open", "Use open(path, 'w') to create a file and write text to it."),
    ("py-sort", "sorted() returns a new list; list.sort() sorts the list in place."),
    ("bake", "Knead the bread dough for ten minutes, then let it rise until doubled."),
    ("orbit", "Jupiter is the largest planet in our solar system and has dozens of moons."),
    ("tennis", "In tennis a player must win six games to take a set."),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SEMSEARCH_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(extra)
    return env


def _run(
    argv: list[str], timeout: float, cwd: Path | str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert proc.returncode == 0, (
        f"{argv[:3]} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@contextlib.contextmanager
def _serving(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited {proc.returncode}:\n{log.read_text()[-4000:]}"
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"serve not ready after {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def test_install_as_the_image_does_then_serve(dockerfile: Dockerfile, tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    builder = dockerfile.stage("builder")
    (install_run,) = [r for r in builder.all("RUN") if "scripts/install.sh" in r.args]
    argv = [w for w in split_words(install_run.args) if not w.startswith("--mount=")]
    argv = argv[argv.index("bash") :]
    assert argv[:3] == ["bash", "scripts/install.sh", "/opt/venv"], argv
    build_args = builder.values("ARG")
    argv = [build_args["EXTRAS"] if w in ("$EXTRAS", "${EXTRAS}") else w for w in argv]
    assert argv[3:] == [""], "the image's default: no extras"
    (workdir,) = [w.args for w in builder.all("WORKDIR")]
    assert workdir == "/src" and builder.all("COPY")[0].args == ". ."

    # 1. the context, the venv, the install (with the builder's ENV; see the module docstring)
    src, venv = tmp_path / "src", tmp_path / "opt" / "venv"
    t0 = time.monotonic()
    copied = copy_build_context(REPO, src)
    timings["context_s"] = time.monotonic() - t0
    assert "scripts/install.sh" in copied and not any(p.startswith(("tests/", ".venv/")) for p in copied)
    build_env = dict(builder.values("ENV"))
    build_env.pop("TORCH_INDEX_URL", None)
    argv[2] = str(venv)
    t0 = time.monotonic()
    install = _run(argv, INSTALL_TIMEOUT_S, cwd=src, env=_clean_env(**build_env))
    timings["install_s"] = time.monotonic() - t0
    assert "install: torch 2.13.0" in install.stdout and "+cpu" in install.stdout.split("install: torch")[1]
    python = venv / "bin" / "python"

    # The serving install is lean and self-contained: no training or dev packages, not editable.
    absent = ["matplotlib", "ray", "pytest", "hypothesis", "scipy", "mypy", "pytrec_eval"]
    probe = (
        "import importlib.util as u, json, sys, core; print(json.dumps({'core': core.__file__, "
        "'absent': [m for m in sys.argv[1:] if u.find_spec(m) is None]}))"
    )
    found = json.loads(_run([str(python), "-c", probe, *absent], 60, cwd="/").stdout)
    assert found["core"].startswith(str(venv)), found
    assert found["absent"] == absent, "training or dev packages in the serving install"

    # 2. the image's model folder
    model = tmp_path / "opt" / "semsearch" / "model"
    shutil.copytree(src / "deploy" / "model", model)
    _run(["bash", str(src / "deploy" / "image-model.sh"), str(venv), str(model)], 120, env=_clean_env())
    assert model.is_symlink() and (model / "modules.json").exists()

    # 3. the indexer job's command, with its paths moved under tmp_path
    data = tmp_path / "data"
    data.mkdir()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in DOCS), encoding="utf-8")
    t0 = time.monotonic()
    _run(
        [str(venv / "bin" / "semsearch"), "index", "build", "--model", str(model), "--corpus", str(corpus),
         "--output", str(data / "index"), "--no-progress"],
        300, cwd=data, env=_clean_env(),
    )  # fmt: skip
    timings["index_build_s"] = time.monotonic() - t0

    # 4. the runtime's CMD with the runtime's ENV
    runtime_env = dockerfile.stage("runtime-base").values("ENV")
    port = _free_port()
    serve_env = {k: v for k, v in runtime_env.items() if not k.startswith(("PATH", "VIRTUAL_ENV"))}
    serve_env.update(SEMSEARCH_HOST="127.0.0.1", SEMSEARCH_PORT=str(port))
    serve_env["SEMSEARCH_INDEX_DIR"] = str(data / "index")
    env = _clean_env(**serve_env, PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    cmd = exec_form(dockerfile.stage("runtime").all("CMD")[0].args)
    cmd[0] = str(venv / "bin" / cmd[0])
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    t0 = time.monotonic()
    with _serving(cmd, env, data, log) as proc:
        _wait_ready(base, proc, log)
        timings["serve_ready_s"] = time.monotonic() - t0
        check = subprocess.run(
            [str(python), str(src / "deploy" / "healthcheck.py")], env=env, timeout=30, capture_output=True
        )
        assert check.returncode == 0, check.stderr
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
        r = httpx.post(f"{base}/search", json={"query": "how do I write to a file", "k": 3}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["hits"][0]["id"] == "py-open"
        r = httpx.post(f"{base}/search", json={"query": "which planet is the biggest", "k": 1}, timeout=30)
        assert r.json()["hits"][0]["id"] == "orbit"
        rss_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("VmRSS:")
        )
    assert proc.returncode is not None
    bad = subprocess.run(
        [str(python), str(src / "deploy" / "healthcheck.py")], env=env, timeout=30, capture_output=True
    )
    assert bad.returncode == 1, "the HEALTHCHECK fails once the server is gone"

    sizes = {"venv_mb": _du(venv) / 1e6, "serve_rss_mb": rss_kb / 1024}
    print("\ninstall rehearsal:", json.dumps({k: round(v, 1) for k, v in {**timings, **sizes}.items()}))
