"""``semsearch eval sts|cross-encoder|retrieval``: evaluation from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.fusion_names import (
    DEFAULT_ALPHA,
    DEFAULT_FEEDBACK_DOCS,
    DEFAULT_FUSION,
    DEFAULT_SEARCH_MODE,
    FUSIONS,
)
from core.precision_names import CROSS_ENCODER_PRECISIONS, SERVE_PRECISIONS


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p = ev_sub.add_parser(
        "pairs", help="accuracy and F1 of a bi-encoder's cosine on 0/1-labelled pairs (LCQMC's protocol)"
    )
    p.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    p.add_argument("--data", required=True, help="labelled pair file to report on")
    p.add_argument(
        "--threshold-from",
        help="pair file the cosine threshold is chosen on (default: --data, an upper bound)",
    )
    p.add_argument("--format", default="auto", choices=["auto", "pairs", "lcqmc", "snli", "mrpc"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_eval_pairs)
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
    p.add_argument(
        "--mode",
        choices=["dense", "bm25", "hybrid"],
        default=DEFAULT_SEARCH_MODE,
        help=f"default {DEFAULT_SEARCH_MODE}: what `semsearch serve` searches with by default",
    )
    p.add_argument(
        "--hybrid", action="store_const", const="hybrid", dest="mode", help="same as --mode hybrid"
    )
    p.add_argument("--dense", action="store_const", const="dense", dest="mode", help="same as --mode dense")
    p.add_argument(
        "--feedback",
        type=int,
        default=DEFAULT_FEEDBACK_DOCS,
        help=f"hybrid: pseudo-relevance feedback documents, 0 for none (default {DEFAULT_FEEDBACK_DOCS}, "
        "as serve's SEMSEARCH_SEARCH_FEEDBACK)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        help=f"hybrid, convex fusion: weight of the dense score (default {DEFAULT_ALPHA})",
    )
    p.add_argument(
        "--fusion",
        choices=FUSIONS,
        default=DEFAULT_FUSION,
        help="hybrid: normalised scores mixed by --alpha, or reciprocal rank fusion (as /search's fusion)",
    )
    p.add_argument("--model", help="encoder folder (default: the one that built the index)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--rerank", help="cross-encoder folder: re-score each query's top --rerank-k")
    p.add_argument("--rerank-k", type=int, default=50)
    p.add_argument(
        "--rerank-weight",
        type=float,
        help="cross-encoder share when fused with the first-stage score (default: the model's own)",
    )
    p.add_argument(
        "--precision",
        default="index",
        choices=SERVE_PRECISIONS,
        help="query encoder precision, as for serve (default index: as the index was built)",
    )
    p.add_argument(
        "--reranker-precision", default="auto", choices=CROSS_ENCODER_PRECISIONS, help="as for serve"
    )
    p.add_argument("--output", help="write the means and per-query metrics as JSON here")
    p.set_defaults(func=_cmd_eval_retrieval)


def _cmd_eval_retrieval(args: argparse.Namespace) -> int:
    import json

    from core.errors import InvalidInputError
    from evaluation.retrieval import evaluate_files, report_json

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
        args.precision,
        args.reranker_precision,
        args.fusion,
        args.feedback,
    )
    m = r.means
    print(
        f"{r.mode}: ndcg@10 {m['ndcg@10']:.4f}  recall@100 {m['recall@100']:.4f}  mrr@10 {m['mrr@10']:.4f}  "
        f"({r.queries} judged queries, {len(r.unjudged_queries)} without judgments, "
        f"{r.queries_per_s:.1f} queries/s{f', {r.precision}' if r.precision else ''})"
    )
    if args.output:
        Path(args.output).write_text(json.dumps(report_json(r), indent=2) + "\n", encoding="utf-8")
    return 0


def _cmd_eval_cross(args: argparse.Namespace) -> int:
    import time

    from core.cross_encoder import CrossEncoder
    from training.data import read_pairs
    from training.train_cross_encoder import evaluate_pairs

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


def _cmd_eval_pairs(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from training.pair_eval import eval_pairs_file

    model = args.model or str(default_model_dir())
    r = eval_pairs_file(model, args.data, args.threshold_from, args.format, args.batch_size, args.device)
    head = f"  softmax head accuracy {r.head_accuracy:.2f}" if r.head_accuracy is not None else ""
    print(
        f"accuracy {r.accuracy:.2f}  f1 {r.f1:.2f}  at cosine >= {r.threshold:.4f} (chosen on "
        f"{r.threshold_from})  pairs {r.pairs}{head}"
    )
    return 0
