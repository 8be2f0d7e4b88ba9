"""docker-compose.yml: valid against the Compose specification's JSON schema, the services the
issue asks for, and every SEMSEARCH_* value it sets parsed by the service's own Settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from deploy_files import COMPOSE_SCHEMA, REPO, Dockerfile, environment_of, interpolate
from pydantic import TypeAdapter

from service.settings import Settings

# Shell / .env values that the documentation tells users to set, e.g. for scale-out.
DOCUMENTED_OVERRIDES = {
    "SEMSEARCH_READ_ONLY": "false",
    "SEMSEARCH_API_PORTS": "0.0.0.0:8000-8015",
    "SEMSEARCH_PROXY_PORT": "0.0.0.0:80",
    "SEMSEARCH_CORPUS_DIR": "/srv/corpus",
    "SEMSEARCH_API_KEYS_SECRET": "/etc/semsearch/api_keys.txt",
}


def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(document: dict[str, Any]) -> list[str]:
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]


def test_schema_is_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    assert schema["title"] == "Compose Specification"
    assert {"services", "volumes", "secrets"} <= set(schema["properties"])


def test_compose_file_validates(compose_raw: dict[str, Any], compose: dict[str, Any]) -> None:
    assert _errors(compose_raw) == []  # as written, ${...} and all
    assert _errors(compose) == []  # interpolated with the defaults
    overridden = interpolate(compose_raw, DOCUMENTED_OVERRIDES)
    assert _errors(overridden) == []


def test_the_schema_does_reject_mistakes(compose: dict[str, Any]) -> None:
    """Guard against a schema that accepts anything."""
    bad = json.loads(json.dumps(compose))
    bad["services"]["api"]["profiles"] = "jobs"  # must be a list
    bad["services"]["indexer"]["restart_policy"] = "no"  # not a service key
    assert len(_errors(bad)) >= 2


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api, indexer, trainer = services["api"], services["indexer"], services["trainer"]
    assert "profiles" not in api, "`docker compose up` starts the API"
    assert indexer["profiles"] == ["jobs"] and trainer["profiles"] == ["jobs"]
    assert indexer["image"] == api["image"] == "semsearch:latest", "the indexer is the same image"
    assert api["command"] == ["semsearch", "serve"]
    assert indexer["command"][:3] == ["semsearch", "index", "build"]
    assert trainer["command"][:3] == ["semsearch", "train", "bi-encoder"]
    assert trainer["build"]["target"] == "trainer"
    # One named volume: the API serves what the indexer (and trainer) write.
    for service in (api, indexer, trainer):
        assert "index-data:/data" in service["volumes"]
    assert "index-data" in compose["volumes"]
    out = indexer["command"][indexer["command"].index("--output") + 1]
    assert out == environment_of(api)["SEMSEARCH_INDEX_DIR"] == "/data/index"
    assert indexer["healthcheck"] == {"disable": True}
    assert "healthcheck" not in api, "the API keeps the image's HEALTHCHECK"
    assert api["ports"] == ["127.0.0.1:8000:8000"], "one host port: podman refuses a range for one port"
    # The short env_file form (Debian's podman-compose 1.0 reads no other), defaulting to a file
    # that exists and sets nothing.
    assert api["env_file"] == ["./deploy/semsearch.env.example"]


def test_gpu_variant(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api-gpu", "indexer-gpu"):
        service = services[name]
        assert service["build"]["args"]["VARIANT"] == "cuda"
        assert service["build"]["args"]["PYTHON_IMAGE"].startswith("nvidia/cuda:13.0.0-runtime-")
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"
        assert service["profiles"]
    assert environment_of(services["api-gpu"])["SEMSEARCH_DEVICE"] == "cuda"
    assert services["indexer-gpu"]["command"][-2:] == ["--device", "cuda"]
    assert "deploy" not in services["api"]


def test_scale_out_proxy(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    assert proxy["profiles"] == ["proxy"]
    assert proxy["depends_on"]["api"]["condition"] == "service_healthy"
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    nginx = (REPO / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", nginx, flags=re.M)
    assert proxy["ports"] == [f"127.0.0.1:8080:{listen}"]
    assert re.search(r"server\s+api:8000\s+resolve;", nginx)
    # Replicas are read-only unless the user says otherwise: the indexer job is the one writer.
    assert environment_of(compose["services"]["api"])["SEMSEARCH_READ_ONLY"] == "true"


def test_api_keys_come_from_a_secret_never_the_file(
    compose_raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    api = compose["services"]["api"]
    assert api["secrets"] == ["api_keys"]
    env = environment_of(api)
    assert env["SEMSEARCH_API_KEYS_FILE"] == "/run/secrets/api_keys"  # where compose mounts it
    assert compose["secrets"]["api_keys"]["file"] == "./deploy/secrets/api_keys.txt"
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert not re.search(r"SEMSEARCH_(READ_ONLY_)?API_KEYS\s*:", text), "no key values in the compose file"
    assert (REPO / "deploy" / "secrets" / ".gitignore").read_text().splitlines()[1:] == ["*", "!.gitignore"]


# ------------------------------------------------------------------ settings parsed from env
def _semsearch_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in environment_of(service).items() if k.startswith("SEMSEARCH_")}


def _check_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    fields = Settings.model_fields
    for key in env:
        name = key.removeprefix("SEMSEARCH_").lower()
        assert name in fields, f"{key} is not a service setting (Settings ignores unknown names silently)"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    for key, value in env.items():
        name = key.removeprefix("SEMSEARCH_").lower()
        annotation = fields[name].annotation
        assert annotation is not None
        expected = TypeAdapter(annotation).validate_strings(value)
        assert getattr(settings, name) == expected, key
    return settings


@pytest.mark.parametrize("overrides", [{}, DOCUMENTED_OVERRIDES], ids=["defaults", "overridden"])
@pytest.mark.parametrize("name", ["api", "api-gpu"])
def test_service_settings_parse(
    compose_raw: dict[str, Any], overrides: dict[str, str], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = interpolate(compose_raw, overrides)["services"][name]
    env = _semsearch_env(service)
    assert {"SEMSEARCH_INDEX_DIR", "SEMSEARCH_HOST", "SEMSEARCH_READ_ONLY", "SEMSEARCH_API_KEYS_FILE"} <= set(
        env
    )
    settings = _check_settings(env, monkeypatch)
    assert settings.index_dir == Path("/data/index")
    assert settings.host == "0.0.0.0" and settings.port == 8000
    assert settings.reload_interval_s == 5.0, "hot reload stays on"
    assert settings.read_only is (overrides.get("SEMSEARCH_READ_ONLY", "true") == "true")
    assert settings.device == ("cuda" if name == "api-gpu" else "cpu")
    assert settings.api_keys_file == Path("/run/secrets/api_keys")


def test_every_service_sets_only_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for service in compose["services"].values():
        with monkeypatch.context() as mp:
            _check_settings(_semsearch_env(service), mp)


def test_the_secret_file_is_read_as_keys(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the API does with the mounted secret: one key per line, comments skipped."""
    env = _semsearch_env(compose["services"]["api"])
    secret = tmp_path / "api_keys"  # stands in for /run/secrets/api_keys
    secret.write_text("# production\nkey-one\n\nkey-two\n", encoding="utf-8")
    env["SEMSEARCH_API_KEYS_FILE"] = str(secret)
    settings = _check_settings(env, monkeypatch)
    assert settings.keys() == (["key-one", "key-two"], [])


def test_image_env_and_env_file_example_are_real_settings(
    dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_env = dockerfile.stage("runtime-base").values("ENV")
    env = {k: v for k, v in image_env.items() if k.startswith("SEMSEARCH_")}
    assert env == {
        "SEMSEARCH_HOST": "0.0.0.0",
        "SEMSEARCH_PORT": "8000",
        "SEMSEARCH_INDEX_DIR": "/data/index",
    }
    with monkeypatch.context() as mp:
        _check_settings(env, mp)
    example = (REPO / "deploy" / "semsearch.env.example").read_text(encoding="utf-8")
    lines = [line.lstrip("# ").strip() for line in example.splitlines()]
    listed = dict(line.split("=", 1) for line in lines if line.startswith("SEMSEARCH_"))
    assert len(listed) >= 5
    with monkeypatch.context() as mp:
        _check_settings(listed, mp)
