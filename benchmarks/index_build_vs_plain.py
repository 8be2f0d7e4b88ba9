"""``semsearch index build`` against a plain sentence-transformers ``encode`` + ``faiss.IndexFlatIP.add``.

    python benchmarks/index_build_vs_plain.py --data ../shared/data --docs 20000 --out /tmp/bench-index

The corpus is MEDLINE + ADI (``ir-classic``), repeated with fresh ids up to ``--docs`` documents.
Every contender embeds the same texts with the same all-MiniLM-L6-v2 weights on the same machine,
one after the other in this run, each in its own fresh process (so that nothing one contender
sets process-wide, such as our allocator tuning in ``core.device.tune_cpu_allocator``, reaches
another):
- plain fp32: ``SentenceTransformer.encode(batch_size=32)`` then ``IndexFlatIP.add``;
- plain bf16: the same inside ``torch.autocast("cpu", dtype=torch.bfloat16)``;
- ours: ``build_index`` (read + validate + embed + shards + SQLite + FAISS + atomic publish) at
  ``--precision fp32`` and ``bf16``.
With ``--rounds N`` the contenders run N times (order reversed every other round) and each
one's median is reported. Reported: docs/s of each and the ratios of ours to the plain
scripts. The plain scripts keep only vectors in memory; ours also writes the document store
and a published index.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

from core.defaults import default_model_dir
from core.device import bf16_supported
from core.smart import read_smart
from indexer.build import BuildConfig, build_index


def make_corpus(data: Path, n: int, out: Path) -> list[str]:
    base = [t for _, t in read_smart(data / "ir-classic" / "med" / "MED.ALL")]
    base += [t for _, t in read_smart(data / "ir-classic" / "adi" / "ADI.ALL")]
    texts = [base[i % len(base)] for i in range(n)]
    with out.open("w") as fh:
        for i, text in enumerate(texts):
            fh.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return texts


def plain(texts: list[str], bf16: bool) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_dir()), device="cpu")
    t0 = time.perf_counter()
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    with ctx:
        emb = model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(np.ascontiguousarray(emb, dtype=np.float32))
    return len(texts) / (time.perf_counter() - t0)


def ours(corpus: Path, out: Path, precision: str, batch_size: int) -> float:
    cfg = BuildConfig(
        model=str(default_model_dir()),
        corpus=str(corpus),
        output=str(out),
        precision=precision,
        batch_size=batch_size,
        progress=False,
        index_type="flat",
    )
    t0 = time.perf_counter()
    report = build_index(cfg)
    seconds = time.perf_counter() - t0  # includes model load, unlike the plain scripts
    return report.documents / seconds


CONTENDERS = ("plain_fp32", "ours_fp32", "plain_bf16", "ours_bf16")


def run_one(name: str, corpus: Path, out: Path, batch_size: int) -> float:
    """One contender in this process: docs/s."""
    kind, precision = name.split("_")
    if kind == "plain":
        texts = [json.loads(line)["text"] for line in corpus.open()]
        return plain(texts, bf16=precision == "bf16")
    return ours(corpus, out / f"idx-{precision}", precision, batch_size)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--docs", type=int, default=20_000)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--batch-size", type=int, default=64, help="our encode batch size")
    ap.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    ap.add_argument(
        "--rounds", type=int, default=1, help="run the contenders this many times, order reversed each round"
    )
    ap.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    corpus = args.out / "corpus.jsonl"
    if args.child:
        print(json.dumps({"docs_s": run_one(args.child, corpus, args.out, args.batch_size)}))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    texts = make_corpus(args.data, args.docs, corpus)
    bf16 = bf16_supported(torch.device("cpu"))
    r: dict[str, object] = {
        "docs": len(texts),
        "mean_words": float(np.mean([len(t.split()) for t in texts])),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, bf16 native: {bf16}",
        "date": time.strftime("%Y-%m-%d"),
    }
    names = [c for c in args.contenders if bf16 or c.endswith("fp32")]
    speeds: dict[str, list[float]] = {name: [] for name in names}
    for round_no in range(args.rounds):
        for name in names if round_no % 2 == 0 else reversed(names):
            cmd = [sys.executable, __file__, "--data", str(args.data), "--out", str(args.out)]
            cmd += ["--child", name, "--batch-size", str(args.batch_size)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            speeds[name].append(json.loads(done.stdout.strip().splitlines()[-1])["docs_s"])
            print(f"round {round_no + 1} {name}: {speeds[name][-1]:.1f} docs/s", flush=True)
    for name, xs in speeds.items():
        r[f"{name}_docs_s"] = statistics.median(xs)
        r[f"{name}_rounds"] = xs
    for ours_name in ("ours_fp32", "ours_bf16"):
        for plain_name in ("plain_fp32", "plain_bf16"):
            if f"{ours_name}_docs_s" in r and f"{plain_name}_docs_s" in r:
                ratio = r[f"{ours_name}_docs_s"] / r[f"{plain_name}_docs_s"]  # type: ignore[operator]
                r[f"{ours_name}_vs_{plain_name}"] = ratio
    print(json.dumps(r, indent=2))
    (args.out / "results.json").write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
