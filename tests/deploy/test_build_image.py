"""deploy/build-image.py --dry-run: which pip settings, secrets and mounts a build gets, per variant
and tool (milliseconds; nothing is built). The real builds are in test_containers.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import REPO

SCRIPT = REPO / "deploy" / "build-image.py"


@pytest.fixture
def pip_home(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "pip.conf").write_text(
        "[global]\n"
        "index-url = https://user:s3cret@mirror.example/simple\n"
        f"find-links = {wheels}\n"
        "trusted-host = mirror.example\n"
        "    other.example\n"
        f"cert = {tmp_path / 'ca.pem'}\n"
        "[install]\n"
        "default-timeout = 30\n"
    )
    return tmp_path


def dry_run(pip_home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = str(pip_home / "pip.conf")  # read last: its keys win
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_cpu_build_gets_the_settings_the_ca_and_the_local_torch(pip_home: Path) -> None:
    out = dry_run(pip_home, "--tool", "podman")
    wheels = pip_home / "wheels"
    assert "podman build " in out and "--format docker" in out, "the OCI format would drop the HEALTHCHECK"
    assert f"--secret id=ca_bundle,src={pip_home / 'ca.pem'}" in out
    assert "--secret id=pip_conf,src=" in out
    assert f"-v {wheels}:{wheels}:ro" in out
    assert "--build-arg TORCH_INDEX_URL=config" in out, "torch from the local CPU wheel"
    assert " -t semsearch:latest " in out
    conf = out.split("pip.conf:\n", 1)[1]
    assert f"find-links = {wheels}" in conf
    assert "trusted-host = mirror.example other.example" in conf, "a multi-line value stays one setting"
    assert "timeout = 30" in conf, "default-timeout is pip's alias of timeout"
    assert "index-url = https://***@mirror.example/simple" in conf and "s3cret" not in out
    assert "cert =" not in conf, "the CA travels as its own secret"


def test_cuda_build_never_sees_the_cpu_torch_wheel(pip_home: Path) -> None:
    out = dry_run(pip_home, "--tool", "podman", "--variant", "cuda")
    wheels = pip_home / "wheels"
    assert f"{wheels} holds torch's CPU build; left out" in out
    assert f"-v {wheels}" not in out and "TORCH_INDEX_URL" not in out
    assert f"find-links = {wheels}" not in out
    assert "--build-arg VARIANT=cuda" in out and " -t semsearch:cuda " in out  # compose's tag


def test_docker_cannot_mount_local_folders(pip_home: Path) -> None:
    out = dry_run(pip_home, "--tool", "docker", "--target", "trainer")
    assert "docker buildx build --load" in out and " -v " not in out and "--format" not in out
    assert "cannot mount the local find-links" in out
    assert "TORCH_INDEX_URL" not in out, "no local torch: the variant's own index"
    assert "--target trainer" in out and " -t semsearch:train " in out


def test_no_pip_settings(pip_home: Path) -> None:
    out = dry_run(pip_home, "--tool", "podman", "--no-pip-settings", "--base", "localhost/b:1")
    assert "--secret" not in out and " -v " not in out
    assert "--build-arg PYTHON_IMAGE=localhost/b:1" in out
