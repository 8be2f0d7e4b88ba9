"""Queries/s of the encoder over real queries, by precision and forward-pass shape.

Shows why the service caps each forward pass by padded tokens (``SEMSEARCH_MAX_BATCH_TOKENS``):
a micro-batch of 32 queries padded to its longest member wastes most of its compute on padding.

    python benchmarks/encode_batching.py --data ../shared/data/ir-classic
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from core.defaults import default_model_dir
from core.encoder import Encoder
from core.smart import read_smart


def best_rate(n: int, fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True, help="ir-classic folder (med/MED.QRY, adi/ADI.QRY)")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--group", type=int, default=32, help="queries per model call (a micro-batch)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    queries = [t for _, t in read_smart(args.data / "med" / "MED.QRY")]
    queries += [t for _, t in read_smart(args.data / "adi" / "ADI.QRY")]
    encoder = Encoder.load(args.model or default_model_dir(), "cpu")
    lengths = [len(e.ids) for e in encoder.tokenize(queries)]
    print(f"## Encoder queries/s by forward-pass shape ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads; {len(queries)} MEDLINE + ADI queries, {np.mean(lengths):.1f} tokens on average "
        f"(max {max(lengths)}); groups of {args.group} queries per call; best of {args.reps}.\n"
    )
    print("| precision | forward passes | queries/s |\n| --- | --- | --- |")
    for precision in ("fp32", "bf16"):
        if encoder.to_precision(precision) != precision:
            print(f"| {precision} | not native here | — |")
            continue
        encoder.encode(queries[:8])  # warm-up
        rate = best_rate(len(queries), lambda: [encoder.encode([q]) for q in queries], args.reps)
        print(f"| {precision} | one query per call | {rate:.1f} |")
        groups = [queries[i : i + args.group] for i in range(0, len(queries), args.group)]
        for max_batch_tokens in (None, 256, 512, 1024, 2048):
            rate = best_rate(
                len(queries),
                lambda m=max_batch_tokens, gs=groups: [encoder.encode(g, 64, m) for g in gs],
                args.reps,
            )
            shape = (
                "whole group padded to its longest"
                if max_batch_tokens is None
                else f"≤ {max_batch_tokens} padded tokens"
            )
            print(f"| {precision} | {shape} | {rate:.1f} |")


if __name__ == "__main__":
    main()
