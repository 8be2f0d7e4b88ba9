"""The corpus-only recipe on MEDLINE and ADI: a bi-encoder adapted to one collection's documents
with no query or judgment read, its settings chosen on one collection and reported on the other.

    python benchmarks/corpus_recipe.py --data ../shared/data/ir-classic --tune adi \\
        [--lr 2e-5,5e-5] [--epochs 1,2] [--hard-negatives 0,1] [--work-dir DIR] [--json out.json]

Per collection, as the README's recipe runs it (every step is the ``semsearch`` CLI, timed):

1. ``train pseudo-queries`` on that collection's ``.ALL`` alone: per document its title and one
   random sentence as queries, the document without that sentence as the positive;
2. ``train bi-encoder --objective mnrl`` from the packaged all-MiniLM-L6-v2 on those positives
   (in-batch negatives, plus ``--hard-negatives`` of each query's BM25 negatives), one run per
   setting of the grid (``--lr`` x ``--epochs`` x ``--hard-negatives``);
3. ``index build`` with the adapted model, then ``eval retrieval`` dense, hybrid without feedback
   and with no mode flag (serve's default: hybrid + feedback), against the packaged model's same
   three runs.

The grid runs on the ``--tune`` collection only; the setting with the best nDCG@10 of the default
search there is then trained on the other collection, where the table reports it. Nothing reads
the reported collection's queries or judgments before its one evaluation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.machine import cpu_model

REPO = Path(__file__).resolve().parent.parent
SEMSEARCH = str(Path(sys.executable).parent / "semsearch")
COLLECTIONS = {"adi": "ADI", "med": "MED"}
NAMES = {"adi": "ADI", "med": "MEDLINE"}
SEARCHES = {"dense": ["--dense"], "hybrid": ["--hybrid", "--feedback", "0"], "default": []}


def run(cmd: list[str], log: Path) -> float:
    """One CLI step, its output to ``log``; its wall time in seconds."""
    t0 = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - t0


def files(data: Path, name: str) -> tuple[Path, Path, Path]:
    stem = data / name / COLLECTIONS[name]
    return stem.with_suffix(".ALL"), stem.with_suffix(".QRY"), stem.with_suffix(".REL")


def pseudo_queries(data: Path, name: str, work: Path, seed: int) -> tuple[Path, float]:
    out = work / name / "pq.jsonl"  # run() makes the folder for its log beside it
    corpus = files(data, name)[0]
    cmd = [SEMSEARCH, "train", "pseudo-queries", "--corpus", str(corpus), "--output", str(out)]
    return out, run([*cmd, "--seed", str(seed)], work / name / "pq.log")


def train(pq: Path, out: Path, lr: float, epochs: int, negatives: int, args: argparse.Namespace) -> float:
    if (out / "train_config.json").is_file() and (out / "config.json").is_file():
        return float(json.loads((out / "recipe_time.json").read_text())["train_s"])
    cmd = [SEMSEARCH, "train", "bi-encoder", "--train", str(pq), "--objective", "mnrl", "--output", str(out)]
    cmd += ["--lr", str(lr), "--epochs", str(epochs), "--hard-negatives", str(negatives)]
    cmd += ["--batch-size", str(args.batch_size)]
    cmd += ["--max-seq-length", str(args.max_seq_length), "--seed", str(args.seed), "--no-progress"]
    seconds = run(cmd, out.parent / f"{out.name}.log")
    (out / "recipe_time.json").write_text(json.dumps({"train_s": seconds}) + "\n")
    return seconds


def evaluate(data: Path, name: str, model: Path | None, work: Path, label: str) -> dict[str, Any]:
    """Index the collection with ``model`` (None: the packaged one) and evaluate its searches."""
    corpus, queries, qrels = files(data, name)
    index = work / name / f"{label}-index"
    build_s = 0.0
    if not (index / "manifest.json").is_file():
        cmd = [SEMSEARCH, "index", "build", "--corpus", str(corpus), "--output", str(index)]
        cmd += ["--index-type", "flat", *(["--model", str(model)] if model else [])]
        build_s = run(cmd, work / name / f"{label}-index.log")
    result: dict[str, Any] = {"build_s": build_s}
    for search, flags in SEARCHES.items():
        out = work / name / f"{label}-{search}.json"
        cmd = [SEMSEARCH, "eval", "retrieval", "--index", str(index), "--queries", str(queries)]
        run(
            [*cmd, "--qrels", str(qrels), *flags, "--output", str(out)], work / name / f"{label}-{search}.log"
        )
        result[search] = float(json.loads(out.read_text())["means"]["ndcg@10"])
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the ir-classic folder")
    ap.add_argument(
        "--tune", choices=sorted(COLLECTIONS), default="adi", help="the collection the grid runs on"
    )
    ap.add_argument("--lr", default="2e-5,5e-5")
    ap.add_argument("--epochs", default="1,2")
    ap.add_argument("--hard-negatives", default="0,1")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/corpus-recipe"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    tune = args.tune
    report = next(n for n in COLLECTIONS if n != tune)
    grid = list(
        itertools.product(
            [float(x) for x in args.lr.split(",")],
            [int(x) for x in args.epochs.split(",")],
            [int(x) for x in args.hard_negatives.split(",")],
        )
    )

    base = {name: evaluate(args.data, name, None, args.work_dir, "base") for name in (tune, report)}
    for name in (tune, report):
        print(
            f"{NAMES[name]} packaged model: " + "  ".join(f"{s} {base[name][s]:.4f}" for s in SEARCHES),
            flush=True,
        )

    pq, pq_s = pseudo_queries(args.data, tune, args.work_dir, args.seed)
    tuned: list[dict[str, Any]] = []
    for lr, epochs, negatives in grid:
        label = f"lr{lr:g}-ep{epochs}-hn{negatives}"
        model = args.work_dir / tune / label
        train_s = train(pq, model, lr, epochs, negatives, args)
        row = {
            "label": label,
            "lr": lr,
            "epochs": epochs,
            "hard_negatives": negatives,
            "train_s": train_s,
            **evaluate(args.data, tune, model, args.work_dir, label),
        }
        tuned.append(row)
        print(
            f"{NAMES[tune]} {label}: train {train_s:.0f} s  "
            + "  ".join(f"{s} {row[s]:.4f}" for s in SEARCHES),
            flush=True,
        )
    best = max(tuned, key=lambda r: r["default"])
    label = best["label"]

    pq_r, pq_r_s = pseudo_queries(args.data, report, args.work_dir, args.seed)
    model = args.work_dir / report / label
    train_s = train(pq_r, model, best["lr"], best["epochs"], best["hard_negatives"], args)
    reported = {
        "train_s": train_s,
        "pq_s": pq_r_s,
        **evaluate(args.data, report, model, args.work_dir, label),
    }

    lines = [
        f"Tuned on {NAMES[tune]} ({len(grid)} settings), chosen `{label}`, reported on {NAMES[report]}.",
        "",
        "| collection | model | dense | hybrid, no feedback | default (hybrid + feedback) "
        "| default vs packaged dense | train s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]

    def line(name: str, what: str, r: dict[str, Any], train_s: float | None) -> str:
        gain = r["default"] - base[name]["dense"]
        cells = [NAMES[name], what, *(f"{r[s]:.4f}" for s in SEARCHES), f"{gain:+.4f}"]
        return "| " + " | ".join([*cells, "" if train_s is None else f"{train_s:.0f}"]) + " |"

    for name in (tune, report):
        lines.append(line(name, "packaged", base[name], None))
    for r in tuned:
        what = f"adapted lr {r['lr']:g} ep {r['epochs']} hn {r['hard_negatives']} (grid)"
        lines.append(line(tune, what, r, r["train_s"]))
    lines.append(line(report, f"**adapted {label} (reported)**", reported, reported["train_s"]))
    print("\n" + "\n".join(lines))
    if args.json:
        out = {"cpu": cpu_model(), "tune": tune, "report": report, "chosen": label, "base": base}
        out |= {"grid": tuned, "reported": reported, "pseudo_queries_s": {tune: pq_s, report: pq_r_s}}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
