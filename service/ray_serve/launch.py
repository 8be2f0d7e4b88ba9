"""``semsearch serve --engine ray``: the service deployed on Ray Serve.

Three kinds of deployment, composed through deployment handles:

- ``ingress``: the same FastAPI app as ``semsearch serve`` (service.app.create_app), so every
  route, error shape, auth, limit and metric is the same; its engine
  (service.ray_serve.remote_engine) sends model calls and index work to the others;
- ``encoder``: the encoder (and the cross-encoder), micro-batched (service.ray_serve.model_replica);
- ``shard-000`` ...: one searcher deployment per shard, each replica serving its shard folder
  (service.ray_serve.shard_replica). An unsharded folder is served as one shard: replicated
  serving.

Every replica reads the index folder from storage every node can read (a shared volume on a
cluster). Without ``--ray-address`` a local Ray is started with this machine's CPUs.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from core.device import available_cpus
from core.errors import InvalidInputError
from core.index.manifest import Manifest
from core.index.sharding import read_layout, serving_paths
from service.app import create_app
from service.ray_serve.fanout import Fanout
from service.ray_serve.model_replica import ModelReplica
from service.ray_serve.remote_engine import RayEngine, RemoteIndex
from service.ray_serve.shard_replica import ShardReplica
from service.settings import Settings

log = logging.getLogger(__name__)
APP_NAME = "semsearch"


class Ingress:
    async def __init__(self, settings: Settings, model: Any, shards: list[Any]) -> None:  # type: ignore[misc]
        assert settings.index_dir is not None
        self.settings = settings
        facts = await model.facts.remote()
        states = await asyncio.gather(*(shard.state.remote() for shard in shards))
        fanout = Fanout(settings.fanout_timeout_s, settings.fanout_retries)
        writes = Fanout(settings.fanout_timeout_s + settings.write_busy_timeout_s, 0)
        layout = read_layout(settings.index_dir)
        index = RemoteIndex(Path(settings.index_dir), layout, shards, states, fanout, writes)
        self.engine = RayEngine(settings, facts, model, index)

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.settings, self.engine)


def shard_deployment_name(i: int) -> str:
    return f"shard-{i:03d}"


def cpus_needed(settings: Settings, shards: int) -> float:
    """The logical CPUs the deployments ask for, all replicas together."""
    s = settings
    encoders = max(s.ray_encoder_replicas, s.ray_encoder_max_replicas)
    return (
        encoders * s.ray_encoder_cpus
        + shards * s.ray_searcher_replicas * s.ray_searcher_cpus
        + s.ray_ingress_replicas * s.ray_ingress_cpus
    )


def check_folder(settings: Settings) -> list[Path]:
    """The shard folders, checked before Ray starts: a wrong path fails here with its message."""
    if settings.index_dir is None:
        raise InvalidInputError("no index configured: pass --index DIR or set SEMSEARCH_INDEX_DIR")
    paths = serving_paths(settings.index_dir)
    for path in paths:
        Manifest.read(path)
    return paths


def build_application(settings: Settings) -> Any:
    """The bound Serve application (ingress -> encoder, shards)."""
    from ray import serve

    s = settings
    paths = check_folder(s)
    model_options: dict[str, Any] = {
        "name": "encoder",
        "ray_actor_options": {"num_cpus": s.ray_encoder_cpus, "num_gpus": s.ray_encoder_gpus},
        # Concurrent requests must reach the replica to share its micro-batches; its own queue
        # bounds are the service's (queue_max, queue_max_inputs: 429 past them).
        "max_ongoing_requests": s.queue_max,
        "graceful_shutdown_timeout_s": s.shutdown_timeout_s,
    }
    if s.ray_encoder_max_replicas > s.ray_encoder_replicas:
        model_options["autoscaling_config"] = {
            "min_replicas": s.ray_encoder_replicas,
            "max_replicas": s.ray_encoder_max_replicas,
            "target_ongoing_requests": s.batch_max_size,
        }
    else:
        model_options["num_replicas"] = s.ray_encoder_replicas
    model = serve.deployment(**model_options)(ModelReplica).bind(s)
    shards = [
        serve.deployment(
            name=shard_deployment_name(i),
            num_replicas=s.ray_searcher_replicas,
            ray_actor_options={"num_cpus": s.ray_searcher_cpus},
            max_ongoing_requests=s.max_concurrent_requests,
            graceful_shutdown_timeout_s=s.shutdown_timeout_s,
        )(ShardReplica).bind(s, str(path), model)
        for i, path in enumerate(paths)
    ]
    ingress = serve.deployment(
        name="ingress",
        num_replicas=s.ray_ingress_replicas,
        ray_actor_options={"num_cpus": s.ray_ingress_cpus},
        max_ongoing_requests=s.max_concurrent_requests,
        # SIGTERM: requests in flight get this long to finish (SEMSEARCH_SHUTDOWN_TIMEOUT_S).
        graceful_shutdown_timeout_s=s.shutdown_timeout_s,
    )(serve.ingress()(Ingress))
    return ingress.bind(s, model, shards)


def app_builder(args: dict[str, str]) -> Any:
    """The application for ``serve run`` and a RayService's ``serveConfigV2`` (``import_path:
    service.ray_serve.launch:app_builder``): settings from the pods' SEMSEARCH_* environment,
    overridden by the config's ``args`` (the same names, lower case: ``index_dir``...)."""
    make: Any = Settings  # its fields are typed; args are the config's strings, validated by it
    return build_application(make(**args))


def start(settings: Settings) -> None:
    """Connect to (or start) Ray, start Serve's HTTP proxy on host:port, deploy, return."""
    import ray
    from ray import serve

    paths = check_folder(settings)
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False}
        if settings.ray_address:
            kwargs["address"] = settings.ray_address
        else:  # logical CPUs: at least what the deployments ask for, or they could not be placed
            kwargs["num_cpus"] = max(available_cpus(), int(cpus_needed(settings, len(paths)) + 0.999))
        ray.init(**kwargs)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_application(settings), name=APP_NAME, route_prefix="/")
    log.info("serving %s on Ray Serve at http://%s:%d", settings.index_dir, settings.host, settings.port)


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def serve_on_ray(settings: Settings) -> None:
    """Deploy, then serve until SIGINT or SIGTERM; Serve stops its replicas on the way out."""
    start(settings)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    log.info("stopping the Ray Serve deployment")
    stop()
