"""``semsearch index build|add|delete|stats|compact``: the indexer's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from core.index.sharding import ShardedManifest
from core.precision_names import DEFAULT_MAX_DRIFT, PRECISIONS

if TYPE_CHECKING:
    from indexer.build import BuildReport
    from indexer.sharded import ShardedBuildReport


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``build`` and the update commands under ``semsearch index``."""
    _add_build(sub)
    _add_update(sub)


def _add_build(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("build", help="embed a corpus into a new index folder (published atomically)")
    p.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument(
        "--corpus", required=True, help="JSONL ({id, text, metadata}) or CSV/TSV with id,text columns"
    )
    p.add_argument("--output", required=True, help="index folder to create or replace")
    p.add_argument(
        "--format", dest="corpus_format", default="auto", choices=["auto", "jsonl", "csv", "tsv", "smart"]
    )
    p.add_argument(
        "--index-type",
        default="auto",
        choices=["auto", "flat", "hnsw", "ivf", "ivfpq", "sq8", "binary"],
        help="auto: flat up to 100k docs, IVF above, IVF-PQ past --memory-budget; "
        "sq8 (int8, 4x smaller) and binary (sign bits, 32x smaller, rescored) only when named",
    )
    p.add_argument(
        "--memory-budget",
        type=int,
        default=0,
        metavar="MB",
        help="with auto: use IVF-PQ when the float32 vectors would exceed this many MB",
    )
    p.add_argument(
        "--on-disk",
        action="store_true",
        help="ivf/ivfpq (and auto when it picks them): add the vectors shard by shard and merge the "
        "IVF lists into index.ivfdata, mmapped at search time, for indexes larger than RAM "
        "(such an index cannot be updated in place: rebuild it)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--max-batch-tokens",
        type=int,
        default=None,
        help="also cap each forward pass at this many padded tokens (similar lengths batch together; "
        "default on CPU: what keeps activations under 24 MiB)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=0,
        help="documents embedded and checkpointed per step (default: 4096 locally, 50,000 on Ray)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--skip-bad-lines", action="store_true", help="skip (and count) bad corpus rows instead of stopping"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted build (also the default when its corpus and settings match)",
    )
    p.add_argument("--fresh", action="store_true", help="discard an interrupted build and start over")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="encoder precision (default auto: the fastest this hardware runs whose measured drift "
        "from fp32 on the corpus's first texts is within --max-precision-drift)",
    )
    p.add_argument(
        "--max-precision-drift",
        type=float,
        default=DEFAULT_MAX_DRIFT,
        help=f"largest 1 - mean cosine to fp32 that auto accepts (default {DEFAULT_MAX_DRIFT:g})",
    )
    p.add_argument(
        "--engine", default="local", choices=["local", "ray"], help="ray: embed on a Ray actor pool"
    )
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--ray-actors", type=int, default=2, help="actors, one model each")
    p.add_argument("--ray-cpus-per-actor", type=int, default=1)
    p.add_argument(
        "--shards",
        type=int,
        default=1,
        help="split the index into this many shard folders, each document in the one a stable hash "
        "of its id names (default 1: one ordinary index folder)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from indexer.build import BuildConfig, build_index
    from indexer.sharded import build_sharded

    cfg = BuildConfig(
        model=args.model or str(default_model_dir()),
        corpus=args.corpus,
        output=args.output,
        corpus_format=args.corpus_format,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        chunk_size=args.chunk_size,
        device=args.device,
        skip_bad_lines=args.skip_bad_lines,
        index_type=args.index_type,
        memory_budget_mb=args.memory_budget,
        on_disk=args.on_disk,
        resume=not args.fresh,
        engine=args.engine,
        precision=args.precision,
        max_precision_drift=args.max_precision_drift,
        ray_address=args.ray_address,
        ray_actors=args.ray_actors,
        ray_cpus_per_actor=args.ray_cpus_per_actor,
        progress=not args.no_progress,
        shards=args.shards,
    )
    report = build_sharded(cfg) if cfg.shards > 1 else build_index(cfg)
    if report.resumed_from:
        print(f"resumed: {report.resumed_from} documents were already embedded", file=sys.stderr)
    for err in report.skipped[:20]:
        print(f"skipped {err.message}", file=sys.stderr)
    if report.skipped:
        print(f"skipped {len(report.skipped)} bad line(s)", file=sys.stderr)
    print(summary(report, cfg.output))
    return 0


def summary(report: BuildReport | ShardedBuildReport, output: str | Path) -> str:
    m = report.manifest
    if isinstance(m, ShardedManifest):
        counts = ", ".join(str(r.documents) for r in report.shards)  # type: ignore[union-attr]
        return (
            f"indexed {report.documents} documents in {report.seconds:.1f} s "
            f"({report.docs_per_s:.1f} docs/s) -> {Path(output).resolve()} "
            f"({m.shards} shards of {counts} documents, generation {m.generation}, dim {m.dim})"
        )
    return (
        f"indexed {report.documents} documents in {report.seconds:.1f} s "
        f"({report.docs_per_s:.1f} docs/s) -> {Path(output).resolve()} "
        f"({m.index_type} {m.faiss_factory}, generation {m.generation}, dim {m.dim})"
    )


def _add_update(index_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = index_sub.add_parser("add", help="upsert a corpus into an index (one new generation)")
    p.add_argument("--index", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--model", help="default: the model that built the index")
    p.add_argument(
        "--format", dest="corpus_format", default="auto", choices=["auto", "jsonl", "csv", "tsv", "smart"]
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--chunk-size", type=int, default=4096)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--skip-bad-lines", action="store_true")
    p.set_defaults(func=_cmd_add)
    p = index_sub.add_parser("delete", help="delete documents by id")
    p.add_argument("--index", required=True)
    p.add_argument("--ids", required=True, nargs="+", help="a file with one id per line, or the ids")
    p.set_defaults(func=_cmd_delete)
    p = index_sub.add_parser("stats", help="counts, type, dim, model, generation, size on disk")
    p.add_argument("--index", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_stats)
    p = index_sub.add_parser("compact", help="rewrite the index without deleted documents and tombstones")
    p.add_argument("--index", required=True)
    p.set_defaults(func=_cmd_compact)


def _cmd_add(args: argparse.Namespace) -> int:
    from indexer.update import add_corpus

    r = add_corpus(
        args.index,
        args.corpus,
        args.model,
        args.corpus_format,
        args.batch_size,
        args.chunk_size,
        args.device,
        args.skip_bad_lines,
    )
    for err in r.skipped[:20]:
        print(f"skipped {err.message}", file=sys.stderr)
    print(
        f"added {r.added}, replaced {r.replaced} (generation {r.generation})"
        + (f"; skipped {len(r.skipped)} bad line(s)" if r.skipped else "")
    )
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    from indexer.update import delete_ids, read_ids

    r = delete_ids(args.index, read_ids(args.ids))
    print(
        f"deleted {r.deleted} (generation {r.generation})"
        + (f"; not found: {len(r.missing)}" if r.missing else "")
    )
    for doc_id in r.missing[:20]:
        print(f"not found: {doc_id}", file=sys.stderr)
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    import json

    from indexer.update import stats

    info = stats(args.index)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:18} {value}")
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    from indexer.update import compact

    manifests = compact(args.index)
    documents = sum(m.count for m in manifests)
    if len(manifests) == 1:
        print(f"compacted to {documents} documents (generation {manifests[0].generation})")
    else:
        generations = ", ".join(str(m.generation) for m in manifests)
        print(f"compacted {len(manifests)} shards to {documents} documents (generations {generations})")
    return 0
