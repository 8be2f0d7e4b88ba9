"""``semsearch serve`` and ``semsearch demo``: the service's command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.precision_names import SERVE_PRECISIONS
from semsearch.cli_index import summary

if TYPE_CHECKING:
    from service.settings import Settings


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_serve(sub)
    _add_demo(sub)


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the HTTP search service (settings also from SEMSEARCH_* env)")
    p.add_argument("--index", help="index folder (env SEMSEARCH_INDEX_DIR)")
    p.add_argument(
        "--model", help="model folder (default: the one that built the index, else the packaged MiniLM)"
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--precision",
        choices=SERVE_PRECISIONS,
        help="query encoder precision (default index: as the index was built; auto: the fastest within "
        "the drift bound, SEMSEARCH_MAX_PRECISION_DRIFT); one drifting too far from the index's is refused",
    )
    p.add_argument("--read-only", action="store_const", const=True, help="refuse document writes (403)")
    p.add_argument("--reranker", help="cross-encoder folder for rerank, /rerank and /classify")
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="local (default): this process; ray: deploy on Ray Serve (an ingress, a model deployment "
        "and one searcher deployment per shard; SEMSEARCH_RAY_* set their replicas)",
    )
    p.add_argument(
        "--ray-address", help="with --engine ray: the Ray cluster to join (default: start a local Ray)"
    )
    p.set_defaults(func=_cmd_serve)


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    from service.settings import Settings

    overrides = {
        "index_dir": getattr(args, "index", None),
        "model_dir": getattr(args, "model", None),
        "host": args.host,
        "port": args.port,
        "device": getattr(args, "device", None),
        "precision": getattr(args, "precision", None),
        "read_only": getattr(args, "read_only", None),
        "reranker_dir": getattr(args, "reranker", None),
        "engine": getattr(args, "engine", None),
        "ray_address": getattr(args, "ray_address", None),
        **extra,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.engine == "ray":
        from service.ray_serve.launch import serve_on_ray

        serve_on_ray(settings)
        return 0
    from service.server import serve

    serve(settings)
    return 0


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="index the bundled demo corpus (Python's own docs) once, then serve it")
    p.add_argument("--cache-dir", default=os.environ.get("SEMSEARCH_CACHE_DIR", "~/.cache/semsearch"))
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--rebuild", action="store_true", help="rebuild the demo index even if cached")
    p.add_argument("--build-only", action="store_true", help="build (or reuse) the index and exit")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    import platform

    from core.defaults import default_model_dir
    from core.encoder import Encoder
    from indexer.build import BuildConfig, build_index
    from indexer.demo_corpus import write_demo_corpus
    from service.server import serve

    model_dir = default_model_dir()
    encoder = Encoder.load(model_dir)
    cache = Path(args.cache_dir).expanduser()
    tag = f"py{platform.python_version()}-{(encoder.fingerprint or 'model')[:12]}"
    index_dir = cache / f"demo-index-{tag}"
    if args.rebuild or not (index_dir / "manifest.json").exists():
        corpus = cache / f"demo-corpus-py{platform.python_version()}.jsonl"
        n = write_demo_corpus(corpus)
        print(f"demo corpus: {n} passages from this Python's documentation -> {corpus}", file=sys.stderr)
        cfg = BuildConfig(model=str(model_dir), corpus=str(corpus), output=str(index_dir))
        report = build_index(cfg, encoder)
        print(summary(report, index_dir), file=sys.stderr)
    else:
        print(f"using cached demo index {index_dir} (--rebuild to make it again)", file=sys.stderr)
    if args.build_only:
        print(index_dir)
        return 0
    settings = _settings(args, index_dir=index_dir, model_dir=model_dir)
    print(
        f"try: curl -s {settings.host}:{settings.port}/search -H 'content-type: application/json' "
        """-d '{"query":"how do I open a file for writing","k":5}'""",
        file=sys.stderr,
    )
    serve(settings, encoder)
    return 0
