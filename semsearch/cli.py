"""``semsearch``: one command with subcommands. App modules are imported lazily, per subcommand,
so ``semsearch --help`` is instant and a subcommand pays only for what it uses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import DataError, InvalidInputError, SemsearchError

if TYPE_CHECKING:
    from indexer.build import BuildReport
    from service.settings import Settings

EXIT_DATA = 2
EXIT_ERROR = 1


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
        help="also cap each forward pass at this many padded tokens (similar lengths batch together)",
    )
    p.add_argument(
        "--chunk-size", type=int, default=4096, help="documents embedded and checkpointed per step"
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
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="encoder precision (default auto: the fastest this hardware runs whose measured drift "
        "from fp32 on the corpus's first texts is within --max-precision-drift)",
    )
    p.add_argument(
        "--max-precision-drift",
        type=float,
        default=0.01,
        help="largest 1 - mean cosine to fp32 that auto accepts (default 0.01)",
    )
    p.add_argument(
        "--engine", default="local", choices=["local", "ray"], help="ray: embed on a Ray actor pool"
    )
    p.add_argument("--ray-address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--ray-actors", type=int, default=2, help="actors, one model each")
    p.add_argument("--ray-cpus-per-actor", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from indexer.build import BuildConfig, build_index
    from indexer.ray_engine import RAY_CHUNK_SIZE

    cfg = BuildConfig(
        model=args.model or str(default_model_dir()),
        corpus=args.corpus,
        output=args.output,
        corpus_format=args.corpus_format,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        chunk_size=args.chunk_size or (RAY_CHUNK_SIZE if args.engine == "ray" else 4096),
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
    )
    report = build_index(cfg)
    if report.resumed_from:
        print(f"resumed: {report.resumed_from} documents were already embedded", file=sys.stderr)
    for err in report.skipped[:20]:
        print(f"skipped {err.message}", file=sys.stderr)
    if report.skipped:
        print(f"skipped {len(report.skipped)} bad line(s)", file=sys.stderr)
    print(_summary(report, cfg.output))
    return 0


def _summary(report: BuildReport, output: str | Path) -> str:
    m = report.manifest
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

    m = compact(args.index)
    print(f"compacted to {m.count} documents (generation {m.generation})")
    return 0


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
        choices=["index", "auto", "fp32", "bf16", "fp16", "int8"],
        help="query encoder precision (default index: as the index was built; auto: the fastest within "
        "the drift bound, SEMSEARCH_MAX_PRECISION_DRIFT); one drifting too far from the index's is refused",
    )
    p.add_argument("--read-only", action="store_const", const=True, help="refuse document writes (403)")
    p.add_argument("--reranker", help="cross-encoder folder for rerank, /rerank and /classify")
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
        **extra,
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _cmd_serve(args: argparse.Namespace) -> int:
    from service.server import serve

    serve(_settings(args))
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
        print(_summary(report, index_dir), file=sys.stderr)
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


def _add_run_args(p: argparse.ArgumentParser, lr: float) -> None:
    """The flags every training command shares (``training.loop.RunConfig``)."""
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--checkpoint-steps", type=int, default=500)
    p.add_argument("--max-steps", type=int, default=0, help="stop after N optimiser steps (0: all)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    p.add_argument("--skip-bad-lines", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = sub.add_parser("train", help="train models")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    p = train_sub.add_parser(
        "bi-encoder", help="siamese SBERT fine-tuning (softmax / cosine / mnrl objectives)"
    )
    _add_pair_args(p)
    p.add_argument("--objective", default="softmax", choices=["softmax", "cosine", "mnrl"])
    p.add_argument(
        "--focal-gamma", type=float, default=0.0, help="focal loss gamma for softmax (0: plain CE)"
    )
    p.add_argument("--use-product", action="store_true", help="add u*v to the classifier input")
    p.add_argument(
        "--no-smart-batching",
        dest="smart_batching",
        action="store_false",
        help="random batches instead of length-bucketed ones",
    )
    _add_run_args(p, lr=2e-5)
    p.set_defaults(func=_cmd_train_bi)
    p = train_sub.add_parser("cross-encoder", help="BERT pair classifier / scorer (the reranker)")
    _add_pair_args(p)
    p.add_argument("--problem", default="single_label", choices=["single_label", "multi_label", "regression"])
    p.add_argument("--num-labels", type=int, help="default: the labels found in the training data")
    p.add_argument(
        "--loss",
        default="pointwise",
        choices=["pointwise", "listwise"],
        help="listwise: softmax over each query's group (positive first, then negatives)",
    )
    p.add_argument(
        "--rerank-weight",
        type=float,
        help="stored with the model: its share (0..1) when reranking fuses its score with retrieval's",
    )
    _add_run_args(p, lr=2e-5)
    p.set_defaults(func=_cmd_train_cross)
    _add_mlm(train_sub)
    _add_pseudo_queries(train_sub)


def _add_pseudo_queries(train_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = train_sub.add_parser(
        "pseudo-queries",
        help="relevance pairs for a reranker from an unlabelled corpus (titles and sentences as "
        "queries, BM25 hard negatives)",
    )
    p.add_argument("--corpus", required=True, nargs="+", help="corpus file(s): JSONL, CSV, TSV or SMART .ALL")
    p.add_argument("--output", required=True, help="training pairs JSONL (sentence1, sentence2, label)")
    p.add_argument("--dev-output", help="dev pairs JSONL, from --dev-fraction of the documents")
    p.add_argument("--dev-fraction", type=float, default=0.0)
    p.add_argument("--extra-queries", type=int, default=1, help="random sentences per document as queries")
    p.add_argument("--hard-negatives", type=int, default=3)
    p.add_argument("--random-negatives", type=int, default=1)
    p.add_argument("--skip", type=int, default=3, help="BM25 ranks skipped before hard negatives")
    p.add_argument("--pool", type=int, default=30, help="hard negatives come from BM25 ranks skip..pool")
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=_cmd_pseudo_queries)


def _cmd_pseudo_queries(args: argparse.Namespace) -> int:
    from training.pseudo_queries import PseudoQueryConfig, generate

    values = {k: v for k, v in vars(args).items() if k in PseudoQueryConfig.__dataclass_fields__}
    pairs = generate(PseudoQueryConfig(**values))
    dev = f", {len(pairs.dev)} dev pairs ({args.dev_output})" if args.dev_output else ""
    print(
        f"{pairs.documents} documents -> {pairs.queries} pseudo-queries -> {len(pairs.train)} "
        f"training pairs ({args.output}){dev}"
    )
    return 0


def _add_pair_args(p: argparse.ArgumentParser) -> None:
    """The data flags both pair trainers share."""
    formats = ["auto", "pairs", "stsb", "sick", "snli", "lcqmc", "mrpc"]
    p.add_argument("--model", help="starting model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--train", required=True, nargs="+", help="training pair file(s)")
    p.add_argument("--dev", help="dev pair file: scored pairs give Spearman, labelled pairs accuracy")
    p.add_argument("--output", required=True, help="output model folder")
    p.add_argument("--format", dest="train_format", default="auto", choices=formats, help="format of --train")
    p.add_argument("--dev-format", default="auto", choices=formats)
    p.add_argument("--split", help="SICK split of the training files: TRAIN, TRIAL or TEST")
    p.add_argument("--dev-split", help="SICK split of the dev file")
    p.add_argument("--max-seq-length", type=int, help="truncate here (default: the model's)")
    p.add_argument("--eval-steps", type=int, default=0, help="evaluate every N steps (0: at epoch ends)")


def _train_summary(summary: dict[str, Any]) -> None:
    best = f", best dev {summary['best']:.2f}" if summary["best"] is not None else ""
    print(
        f"trained {summary['steps']} steps on {summary['train_pairs']} pairs "
        f"({summary['examples_per_s']:.1f} examples/s, {summary['precision']}){best} -> {summary['output']}"
    )


def _cmd_train_cross(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from training.cross_encoder import CrossEncoderConfig, train_cross_encoder

    values = {k: v for k, v in vars(args).items() if k in CrossEncoderConfig.__dataclass_fields__}
    values["model"] = args.model or str(default_model_dir())
    values["progress"] = not args.no_progress
    _train_summary(train_cross_encoder(CrossEncoderConfig(**values)))
    return 0


def _cmd_train_bi(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from training.bi_encoder import BiEncoderConfig, train_bi_encoder

    values = {k: v for k, v in vars(args).items() if k in BiEncoderConfig.__dataclass_fields__}
    values["model"] = args.model or str(default_model_dir())
    values["progress"] = not args.no_progress
    _train_summary(train_bi_encoder(BiEncoderConfig(**values)))
    return 0


def _add_mlm(train_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = train_sub.add_parser("mlm", help="masked-LM domain adaptation on your own corpus")
    p.add_argument("--model", help="BERT-family model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--corpus", required=True, help=".txt (one passage per line), JSONL, CSV or TSV corpus")
    p.add_argument("--output", required=True)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--mask-prob", type=float, default=0.15)
    _add_run_args(p, lr=5e-5)
    p.set_defaults(func=_cmd_train_mlm)


def _cmd_train_mlm(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from training.mlm import MlmConfig, train_mlm

    values = {k: v for k, v in vars(args).items() if k in MlmConfig.__dataclass_fields__}
    values["model"] = args.model or str(default_model_dir())
    values["progress"] = not args.no_progress
    summary = train_mlm(MlmConfig(**values))
    print(f"trained {summary['steps']} MLM steps on {summary['texts']} texts -> {summary['output']}")
    return 0


def _add_eval(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("eval", help="evaluate models")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    p = ev_sub.add_parser("sts", help="Spearman/Pearson (x100) of cosine vs gold scores")
    p.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--data", required=True, help="scored pair file")
    p.add_argument("--format", default="auto", choices=["auto", "stsb", "sick", "pairs"])
    p.add_argument("--split", help="SICK split: TRAIN, TRIAL or TEST")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_eval_sts)
    _add_eval_retrieval(ev_sub)
    p = ev_sub.add_parser("cross-encoder", help="Spearman, or accuracy and F1, of a cross-encoder on pairs")
    p.add_argument("--model", required=True, help="cross-encoder folder")
    p.add_argument("--data", required=True, help="pair file")
    p.add_argument(
        "--format", default="auto", choices=["auto", "pairs", "stsb", "sick", "snli", "lcqmc", "mrpc"]
    )
    p.add_argument("--split", help="SICK split: TRAIN, TRIAL or TEST")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_eval_cross)


def _add_eval_retrieval(ev_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = ev_sub.add_parser("retrieval", help="nDCG@10, Recall@100 and MRR@10 of an index (pytrec_eval)")
    p.add_argument("--index", required=True, help="index folder (document ids = the qrels' doc ids)")
    p.add_argument("--queries", required=True, help="SMART .QRY, TSV qid<TAB>text, or JSONL {id, text}")
    p.add_argument("--qrels", required=True, help="TREC 'qid 0 docid grade' or SMART .REL")
    p.add_argument("--mode", choices=["dense", "bm25", "hybrid"], default="dense")
    p.add_argument(
        "--hybrid", action="store_const", const="hybrid", dest="mode", help="same as --mode hybrid"
    )
    p.add_argument("--alpha", type=float, help="hybrid: weight of the dense score (default: rank fusion)")
    p.add_argument("--model", help="encoder folder (default: the one that built the index)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--rerank", help="cross-encoder folder: re-score each query's top --rerank-k")
    p.add_argument("--rerank-k", type=int, default=50)
    p.add_argument(
        "--rerank-weight",
        type=float,
        help="cross-encoder share when fused with the first-stage score (default: the model's own)",
    )
    p.add_argument("--output", help="write the means and per-query metrics as JSON here")
    p.set_defaults(func=_cmd_eval_retrieval)


def _cmd_eval_retrieval(args: argparse.Namespace) -> int:
    import json

    from core.errors import InvalidInputError
    from training.retrieval import evaluate_files, report_json

    if args.alpha is not None and not 0 <= args.alpha <= 1:
        raise InvalidInputError("--alpha must be between 0 and 1")
    if args.rerank_weight is not None and not 0 <= args.rerank_weight <= 1:
        raise InvalidInputError("--rerank-weight must be between 0 and 1")
    r = evaluate_files(
        args.index,
        args.queries,
        args.qrels,
        args.mode,
        args.model,
        args.alpha,
        args.device,
        args.rerank,
        args.rerank_k,
        args.rerank_weight,
    )
    m = r.means
    print(
        f"{r.mode}: ndcg@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}  mrr@10 {m['mrr@10']:.4f}  "
        f"({r.queries} judged queries, {len(r.unjudged_queries)} without judgments, "
        f"{r.queries_per_s:.1f} queries/s)"
    )
    if args.output:
        Path(args.output).write_text(json.dumps(report_json(r), indent=2) + "\n", encoding="utf-8")
    return 0


def _cmd_eval_cross(args: argparse.Namespace) -> int:
    import time

    from core.cross_encoder import CrossEncoder
    from training.cross_encoder import evaluate_pairs
    from training.data import read_pairs

    model = CrossEncoder.load(args.model, args.device)
    examples = read_pairs(args.data, args.format, args.split)
    started = time.perf_counter()
    metrics = evaluate_pairs(model, examples)
    rate = len(examples) / max(time.perf_counter() - started, 1e-9)
    shown = "  ".join(f"{k} {v:.2f}" for k, v in metrics.items())
    print(f"{shown}  pairs {len(examples)}  ({model.problem}, {rate:.0f} pairs/s)")
    return 0


def _cmd_eval_sts(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from training.evaluate import eval_sts_file

    model = args.model or str(default_model_dir())
    r = eval_sts_file(model, args.data, args.format, args.split, args.batch_size, args.device)
    print(
        f"spearman {r.spearman:.2f}  pearson {r.pearson:.2f}  pairs {r.pairs}  "
        f"encode {r.sentences_per_s:.0f} sentences/s"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semsearch", description="Sentence-embedding semantic search")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    index = sub.add_parser("index", help="build and manage index folders")
    index_sub = index.add_subparsers(dest="index_command", required=True)
    _add_build(index_sub)
    _add_update(index_sub)
    _add_serve(sub)
    _add_demo(sub)
    _add_train(sub)
    _add_eval(sub)
    return parser


def _threads() -> None:
    """torch intra-op threads: SEMSEARCH_THREADS, else the CPUs this process may use (its affinity
    and cgroup quota; torch's own default counts the host's cores and oversubscribes a container)."""
    from core.device import available_cpus, configure_threads

    raw = os.environ.get("SEMSEARCH_THREADS", "").strip() or "0"
    if not raw.isdigit():
        raise InvalidInputError(f"SEMSEARCH_THREADS must be a whole number, got {raw!r}")
    n = configure_threads(int(raw))
    logging.getLogger("semsearch").debug("torch threads %d (available CPUs %d)", n, available_cpus())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        _threads()
        return int(args.func(args))
    except DataError as exc:
        print(f"semsearch: error: {exc.message}", file=sys.stderr)
        return EXIT_DATA
    except SemsearchError as exc:
        print(f"semsearch: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
