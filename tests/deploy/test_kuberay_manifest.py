"""deploy/kuberay/rayservice.yaml, checked offline (no Kubernetes here): the YAML, its Serve
config against Ray Serve's own schema, the import path building the application with the
config's arguments, and the pods' mounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings

yaml = pytest.importorskip("yaml")
ray = pytest.importorskip("ray", reason="ray is an extra (pip install -e .[ray])")
pytest.importorskip("ray.serve")

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kuberay" / "rayservice.yaml"


def _documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]


def _service() -> dict[str, Any]:
    (service,) = [d for d in _documents() if d["kind"] == "RayService"]
    return service


def _serve_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(_service()["spec"]["serveConfigV2"])
    return config


def test_serve_config_is_valid_for_ray_serve_and_names_real_settings() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(_serve_config())
    (app,) = config.applications
    assert app.import_path == "service.ray_serve.launch:app_builder"
    unknown = set(app.args) - set(Settings.model_fields)
    assert not unknown, f"not settings: {unknown}"
    Settings(**app.args)  # every value valid for its field
    # The cluster's Ray must be the image's: same major version as the one tested here (the
    # image pins what pip installs; an exact pin here would break on every Ray release).
    version = _service()["spec"]["rayClusterConfig"]["rayVersion"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version) and version.split(".")[0] == ray.__version__.split(".")[0]
    # Several nodes share each shard's folder over a network filesystem: no writes through the
    # service there (SQLite's WAL needs one host).
    assert app.args["read_only"] == "true" and Settings(**app.args).read_only


def test_the_import_path_builds_the_application_from_the_config_args(tiny_index: Path) -> None:
    from ray.serve import Application

    from service.ray_serve.launch import app_builder

    args = dict(_serve_config()["applications"][0]["args"])
    args["index_dir"] = str(tiny_index)  # the cluster's /index volume, here a tiny index
    assert isinstance(app_builder(args), Application)
    args["index_dir"] = str(tiny_index / "missing")
    with pytest.raises(Exception, match="manifest"):
        app_builder(args)


def test_every_pod_mounts_the_index_and_the_volumes_it_names() -> None:
    spec = _service()["spec"]["rayClusterConfig"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        pod = group["template"]["spec"]
        volumes = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert set(mounts) <= volumes
            assert mounts["index"] == "/index"  # every replica opens its shard from shared storage
    claims = {d["metadata"]["name"]: d for d in _documents() if d["kind"] == "PersistentVolumeClaim"}
    assert claims["semsearch-index"]["spec"]["accessModes"] == ["ReadWriteMany"]
