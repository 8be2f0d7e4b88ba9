"""Our siamese trainer against sentence-transformers' SoftmaxLoss, same weights, data and settings.

    python benchmarks/train_vs_sentence_transformers.py --data ../shared/data --out /tmp/bench-train

Both start from the packaged all-MiniLM-L6-v2 and train 1 epoch on SICK TRAIN + SNLI dev + SNLI
test (NLI labels), batch 16, lr 2e-5, 10% warm-up, seed 42. Reported: STS-B test Spearman of the
stock model, ours and theirs, and the training examples/s of both, measured in this one run.
``--objective cosine`` runs the second experiment: cosine regression on STS-B train.
sentence-transformers is a benchmark-only dependency (``pip install sentence-transformers``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from core.defaults import default_model_dir
from training.bi_encoder import BiEncoderConfig, train_bi_encoder
from training.data import PairExample, build_label_map, read_pairs
from training.evaluate import eval_sts_file


def nli_files(data: Path) -> tuple[list[str], str | None]:
    snli = data / "snli-dev-test-esnli"
    return [str(data / "sick" / "SICK.txt"), str(snli / "s1.dev"), str(snli / "s1.test")], "TRAIN"


def load_train(files: list[str], split: str | None) -> list[PairExample]:
    rows: list[PairExample] = []
    for f in files:
        rows.extend(read_pairs(f, "auto", split))
    return rows


def run_theirs(args: argparse.Namespace, model_dir: Path, train: list[PairExample], out: Path) -> float:
    """Returns examples/s of sentence-transformers' own training loop."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.losses import CosineSimilarityLoss, SoftmaxLoss
    from sentence_transformers.training_args import SentenceTransformerTrainingArguments

    model = SentenceTransformer(str(model_dir), device="cpu")
    if args.objective == "softmax":
        label_map = build_label_map(train)
        ds = Dataset.from_dict(
            {
                "sentence1": [e.s1 for e in train],
                "sentence2": [e.s2 for e in train],
                "label": [label_map[e.label or ""] for e in train],
            }
        )
        loss = SoftmaxLoss(model, model.get_sentence_embedding_dimension(), num_labels=len(label_map))
    else:
        ds = Dataset.from_dict(
            {
                "sentence1": [e.s1 for e in train],
                "sentence2": [e.s2 for e in train],
                "score": [float(e.score or 0.0) for e in train],
            }
        )
        loss = CosineSimilarityLoss(model)
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st-run"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        learning_rate=2e-5,
        warmup_ratio=0.1,
        seed=args.seed,
        save_strategy="no",
        report_to="none",
        logging_steps=100,
        use_cpu=True,
        max_steps=args.max_steps or -1,
        dataloader_drop_last=False,
    )
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds, loss=loss)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model.save(str(out / "theirs"))
    steps = trainer.state.global_step
    return min(steps * 16, len(train) * args.epochs) / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="the shared data folder")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--objective", default="softmax", choices=["softmax", "cosine"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-steps", type=int, default=0, help="cap both runs (smoke test); 0 = full epoch")
    ap.add_argument("--precision", default="auto", help="our precision (auto picks bf16 where native)")
    ap.add_argument(
        "--weight-decay", type=float, default=0.01, help="ours; sentence-transformers' trainer default is 0.0"
    )
    ap.add_argument("--no-smart-batching", action="store_true", help="ours with random batches, as theirs")
    ap.add_argument("--skip-theirs", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model_dir = default_model_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    test = args.data / "stsbenchmark" / "sts-test.csv"
    if args.objective == "softmax":
        files, split = nli_files(args.data)
    else:
        files, split = [str(args.data / "stsbenchmark" / "sts-train.csv")], None
    train = load_train(files, split)

    results: dict[str, object] = {
        "objective": args.objective,
        "train_pairs": len(train),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
    }
    results["stock_spearman"] = eval_sts_file(model_dir, test).spearman

    cfg = BiEncoderConfig(
        model=str(model_dir),
        train=files,
        split=split,
        output=str(args.out / "ours"),
        objective=args.objective,
        epochs=args.epochs,
        batch_size=16,
        lr=2e-5,
        warmup_ratio=0.1,
        seed=args.seed,
        checkpoint_steps=0,
        max_steps=args.max_steps,
        weight_decay=args.weight_decay,
        smart_batching=not args.no_smart_batching,
        precision=args.precision,
        progress=False,
    )
    summary = train_bi_encoder(cfg)
    results["ours_examples_per_s"] = summary["examples_per_s"]
    results["ours_precision"] = summary["precision"]
    results["ours_weight_decay"] = args.weight_decay
    results["ours_smart_batching"] = not args.no_smart_batching
    results["ours_spearman"] = eval_sts_file(args.out / "ours", test).spearman
    if not args.skip_theirs:
        results["theirs_examples_per_s"] = run_theirs(args, model_dir, train, args.out)
        results["theirs_spearman"] = eval_sts_file(args.out / "theirs", test).spearman
        results["speed_ratio"] = results["ours_examples_per_s"] / results["theirs_examples_per_s"]  # type: ignore[operator]
    print(json.dumps(results, indent=2))
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
