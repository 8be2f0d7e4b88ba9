"""Chinese for the English MiniLM: the [UNK] rate before and after ``train extend-vocab``, and which
start for the new embedding rows MLM adaptation learns from fastest.

    python benchmarks/vocab_extension.py --data ../shared/data [--mlm-texts 6000] [--work-dir DIR]

The vocabulary comes from every Chinese pair file under ``chinese-*`` except LCQMC, whose dev set
is held out: its [UNK] rate is the figure that says whether the vocabulary generalises. Then, for
each ``--init`` (mean, random, unk), the same short MLM run (``--mlm-texts`` AFQMC train
sentences, one epoch, seed 42) starts from the extended model, and the table gives the mean loss
of its last 20% of steps: the lower, the better a start for the new rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from harness.machine import cpu_model

from core.defaults import default_model_dir
from training.data import pair_sentences
from training.mlm import MlmConfig, train_mlm
from training.vocab import INITS, extend_vocab

PAIR_FILES = [
    "chinese-csts/AFQMC/train.txt",
    "chinese-csts/AFQMC/dev.txt",
    "chinese-atec-bq/ATEC-raw/atec_nlp_sim_train.csv",
    "chinese-atec-bq/ATEC-senteval_cn/ATEC.valid.data",
    "chinese-atec-bq/ATEC-senteval_cn/ATEC.test.data",
    "chinese-atec-bq/BQ/dev.csv",
    "chinese-atec-bq/BQ/test.csv",
    "chinese-csts/CINLID/Idiom_NLI.txt",
    "chinese-csts/Chinese-MNLI/dev.txt",
    "chinese-csts/Chinese-SNLI/dev.txt",
    "chinese-csts/Chinese-SNLI/test.txt",
    "chinese-csts/Chinese-STS-B/sts-b-train.txt",
    "chinese-csts/Chinese-STS-B/sts-b-dev.txt",
    "chinese-csts/Chinese-STS-B/sts-b-test.txt",
    "chinese-ocnli/train.10k.json",
    "chinese-ocnli/dev.json",
    "chinese-csts/OPPO-xiaobu/dev.txt",
    "chinese-csts/PAWS-X/dev_2k.tsv",
]
HELD_OUT = "chinese-csts/LCQMC/dev.txt"


def texts_of(data: Path, files: list[str]) -> list[str]:
    return pair_sentences(data / f for f in files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/vocab-extension"))
    ap.add_argument("--mlm-texts", type=int, default=6000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    texts = texts_of(args.data, PAIR_FILES)
    held_out = texts_of(args.data, [HELD_OUT])
    mlm_corpus = args.work_dir / "mlm.txt"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    afqmc = texts_of(args.data, ["chinese-csts/AFQMC/train.txt"])[: args.mlm_texts]
    mlm_corpus.write_text("".join(t + "\n" for t in afqmc), encoding="utf-8")
    result: dict[str, object] = {
        "machine": cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
        "texts": len(texts),
    }
    rows = []
    for init in INITS:
        started = time.perf_counter()
        model = args.work_dir / f"zh-{init}"
        report = extend_vocab(default_model_dir(), texts, model, init=init, measure={"LCQMC dev": held_out})
        vocab_s = time.perf_counter() - started
        out = args.work_dir / f"mlm-{init}"
        started = time.perf_counter()
        cfg = MlmConfig(model=str(model), corpus=str(mlm_corpus), output=str(out), batch_size=32)
        cfg.max_seq_length, cfg.progress, cfg.checkpoint_steps = 64, False, 0
        train_mlm(cfg)
        mlm_s = time.perf_counter() - started
        losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses = [x for x in losses if x is not None]
        tail = losses[-max(1, len(losses) // 5) :]
        rows.append(
            {
                "init": init,
                "added": report.added,
                "unk_before": report.unk_rate_before,
                "unk_after": report.unk_rate_after,
                "lcqmc_dev_before": report.measured_on["LCQMC dev"]["before"],
                "lcqmc_dev_after": report.measured_on["LCQMC dev"]["after"],
                "first_loss": losses[0],
                "last_fifth_loss": sum(tail) / len(tail),
                "vocab_s": round(vocab_s, 1),
                "mlm_s": round(mlm_s, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result["rows"] = rows
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
