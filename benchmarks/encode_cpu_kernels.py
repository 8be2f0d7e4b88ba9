"""What each CPU inference measure adds: token budget, allocator tuning, oneDNN linears.

    python benchmarks/encode_cpu_kernels.py --data ../shared/data --docs 400 --rounds 2

Embeds the first ``--docs`` MEDLINE abstracts (``ir-classic/med``, about 194 tokens each, up to
MiniLM's 256) with the packaged all-MiniLM-L6-v2, batch 64, in fp32 and bf16 (where the CPU
has native bf16). Each variant runs in its own process, since the allocator setting is
process-wide; the variants run in turn, the order reversed every other round, and the table
gives each one's median docs/s over rounds (each round: the best of 2 timed passes):

- ``none``: no token budget (batches of 64 rows, ~12k tokens), glibc's default allocator
  (``SEMSEARCH_MALLOC_TUNE=0``), torch's default linear (``SEMSEARCH_ONEDNN=0``);
- ``+budget``: the default CPU token budget (:func:`core.token_batches.cpu_max_batch_tokens`);
- ``+allocator``: and :func:`core.device.tune_cpu_allocator`;
- ``+onednn``: and oneDNN linears with GELU fused (:func:`core.fast_bert.dense`): the default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "none": {"SEMSEARCH_MALLOC_TUNE": "0", "SEMSEARCH_ONEDNN": "0", "budget": "0"},
    "+budget": {"SEMSEARCH_MALLOC_TUNE": "0", "SEMSEARCH_ONEDNN": "0", "budget": "1"},
    "+allocator": {"SEMSEARCH_MALLOC_TUNE": "1", "SEMSEARCH_ONEDNN": "0", "budget": "1"},
    "+onednn": {"SEMSEARCH_MALLOC_TUNE": "1", "SEMSEARCH_ONEDNN": "1", "budget": "1"},
}
BATCH = 64


def child(data: Path, docs: int, precision: str, budget: bool) -> float:
    from core.defaults import default_model_dir
    from core.encoder import Encoder
    from core.smart import read_smart

    texts = [t for _, t in read_smart(data / "ir-classic" / "med" / "MED.ALL")][:docs]
    enc = Encoder.load(default_model_dir(), device="cpu")
    enc.to_precision(precision)
    max_batch_tokens = None if budget else BATCH * enc.max_seq_length  # rows alone bound the batch
    enc.encode(texts[:BATCH], BATCH, max_batch_tokens)  # warm-up
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        enc.encode(texts, BATCH, max_batch_tokens)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the results here too")
    ap.add_argument("--child", nargs=2, metavar=("PRECISION", "BUDGET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps({"docs_s": child(args.data, args.docs, args.child[0], args.child[1] == "1")}))
        return 0
    import torch

    from core.device import bf16_supported

    precisions = ["fp32"] + (["bf16"] if bf16_supported(torch.device("cpu")) else [])
    runs: dict[str, dict[str, list[float]]] = {p: {v: [] for v in VARIANTS} for p in precisions}
    for r in range(args.rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        for precision in precisions:
            for name in order:
                settings = VARIANTS[name]
                env = {**os.environ, **{k: v for k, v in settings.items() if k.startswith("SEMSEARCH_")}}
                cmd = [sys.executable, __file__, "--data", str(args.data), "--docs", str(args.docs)]
                cmd += ["--child", precision, settings["budget"]]
                done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                speed = json.loads(done.stdout.strip().splitlines()[-1])["docs_s"]
                runs[precision][name].append(speed)
                print(f"round {r + 1} {precision} {name}: {speed:.1f} docs/s", flush=True)
    table = {p: {v: statistics.median(xs) for v, xs in by.items()} for p, by in runs.items()}
    print("| precision | " + " | ".join(VARIANTS) + " | all ÷ none |")
    print("| --- |" + " --- |" * (len(VARIANTS) + 1))
    for p, by in table.items():
        cells = " | ".join(f"{by[v]:.1f}" for v in VARIANTS)
        print(f"| {p} | {cells} | {by['+onednn'] / by['none']:.2f}× |")
    result = {
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "docs": args.docs,
        "runs": runs,
        "medians": table,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
