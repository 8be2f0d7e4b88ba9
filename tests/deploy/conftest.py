"""Fixtures for the deployment tests; the readers themselves are in deploy_files.py."""

from __future__ import annotations

from typing import Any

import pytest
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
