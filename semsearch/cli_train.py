"""``semsearch train bi-encoder|cross-encoder|pseudo-queries|mlm``: the trainer's command line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.errors import InvalidInputError
from core.precision_names import TRAIN_PRECISIONS


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
    p.add_argument("--precision", default="auto", choices=TRAIN_PRECISIONS)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    p.add_argument("--skip-bad-lines", action="store_true")
    p.add_argument("--no-progress", action="store_true")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "--hard-negatives",
        type=int,
        default=0,
        help="mnrl: up to N of each anchor's labelled negatives (same first sentence, negative "
        "label: train pseudo-queries' BM25 negatives) join the in-batch candidates",
    )
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
    _add_extend_vocab(train_sub)
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
    from training.train_cross_encoder import CrossEncoderConfig, train_cross_encoder

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


def _add_text_sources(p: argparse.ArgumentParser) -> None:
    """--corpus and --pairs: the text mlm and extend-vocab read (training.mlm.corpus_texts)."""
    p.add_argument(
        "--corpus", nargs="*", default=[], help=".txt (one passage per line), JSONL, CSV or TSV corpora"
    )
    p.add_argument(
        "--pairs", nargs="*", default=[], help="pair files (any format eval and train read): both sides"
    )


def _add_mlm(train_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = train_sub.add_parser("mlm", help="masked-LM domain adaptation on your own corpus")
    p.add_argument("--model", help="BERT-family model folder (default: the packaged all-MiniLM-L6-v2)")
    _add_text_sources(p)
    p.add_argument(
        "--exclude", nargs="*", default=[], help="pair files whose sentences are never trained on (dev, test)"
    )
    p.add_argument(
        "--dev-size",
        type=int,
        default=2000,
        help="texts held out for the masked-token accuracy, before and after (0: none)",
    )
    p.add_argument("--output", required=True)
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--mask-prob", type=float, default=0.15)
    p.add_argument(
        "--eval-steps", type=int, default=0, help="held-out accuracy every N steps (0: at epoch ends)"
    )
    _add_run_args(p, lr=5e-5)
    p.set_defaults(func=_cmd_train_mlm)


def _cmd_train_mlm(args: argparse.Namespace) -> int:
    from core.defaults import default_model_dir
    from training.mlm import MlmConfig, train_mlm

    values = {k: v for k, v in vars(args).items() if k in MlmConfig.__dataclass_fields__}
    values["model"] = args.model or str(default_model_dir())
    values["progress"] = not args.no_progress
    if not args.corpus and not args.pairs:
        raise InvalidInputError("train mlm: give --corpus or --pairs (or both)")
    summary = train_mlm(MlmConfig(**values))
    print(f"trained {summary['steps']} MLM steps on {summary['texts']} texts -> {summary['output']}")
    if "before" in summary:
        b, a = summary["before"]["masked_accuracy"], summary["after"]["masked_accuracy"]
        print(f"masked-token accuracy on {summary['held_out']} held-out texts: {b:.2%} -> {a:.2%}")
    return 0


def _add_extend_vocab(train_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = train_sub.add_parser(
        "extend-vocab",
        help="add the pieces a corpus needs and the vocabulary lacks (one token per CJK character)",
    )
    p.add_argument("--model", help="WordPiece model folder (default: the packaged all-MiniLM-L6-v2)")
    _add_text_sources(p)
    p.add_argument(
        "--measure", nargs="*", default=[], help="pair files whose [UNK] rate is reported, not learnt from"
    )
    p.add_argument("--output", required=True)
    p.add_argument("--min-count", type=int, default=1, help="add a piece seen at least this often")
    p.add_argument(
        "--init",
        choices=["unk", "random", "mean"],
        default="unk",
        help="new rows' start (see training/vocab.py)",
    )
    p.set_defaults(func=_cmd_extend_vocab)


def _cmd_extend_vocab(args: argparse.Namespace) -> int:
    import time

    from core.defaults import default_model_dir
    from training.data import pair_sentences
    from training.mlm import corpus_texts
    from training.vocab import extend_vocab

    started = time.perf_counter()
    texts = corpus_texts(args.corpus, args.pairs)  # each distinct text once
    measure = {f"{Path(path).parent.name}/{Path(path).name}": pair_sentences([path]) for path in args.measure}
    report = extend_vocab(
        args.model or default_model_dir(), texts, args.output, args.min_count, args.init, measure=measure
    )
    print(
        f"added {report.added} pieces (vocabulary {report.vocab_size}) from {len(texts)} distinct texts; "
        f"[UNK] {100 * report.unk_rate_before:.2f}% -> {100 * report.unk_rate_after:.2f}% of "
        f"{report.tokens} tokens; {time.perf_counter() - started:.0f} s -> {args.output}"
    )
    for name, rates in report.measured_on.items():
        print(f"  {name}: [UNK] {100 * rates['before']:.2f}% -> {100 * rates['after']:.2f}%")
    return 0
