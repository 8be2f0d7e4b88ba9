"""Fixtures for the deployment tests; the readers themselves are in deploy_files.py."""

from __future__ import annotations

from typing import Any

import pytest
from container_engine import SERVICE_IMAGE, TRAINER_IMAGE, Engine, build, engine
from deploy_files import Dockerfile, interpolate, load_compose, parse_dockerfile


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile()


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="session")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as `docker compose config` resolves it with nothing set in the shell."""
    resolved = interpolate(compose_raw, {})
    assert isinstance(resolved, dict)
    return resolved


# ---- the real images (tests/deploy/test_containers.py, test_compose_up.py) ---------------------


@pytest.fixture(scope="session")
def containers(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """podman with this machine's settings; skips (or fails under CI) where it cannot run."""
    return engine(str(tmp_path_factory.mktemp("podman")))


@pytest.fixture(scope="session")
def service_image(containers: Engine) -> str:
    build(containers, "runtime", SERVICE_IMAGE)
    return SERVICE_IMAGE


@pytest.fixture(scope="session")
def trainer_image(containers: Engine, service_image: str) -> str:
    # After the service image: the trainer reuses its builder layers.
    build(containers, "trainer", TRAINER_IMAGE)
    return TRAINER_IMAGE
