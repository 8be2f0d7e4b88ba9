"""Sentences/s and STS-B quality of every encoding path, ours and sentence-transformers', in one run.

All STS-B test sentences (2,758), batch 32, a fixed thread count. Each path runs in its own
worker process (so its peak RSS is its own, and a peer's packages stay in its own venv); the
workers stay loaded and the timed passes alternate between them, round by round, so machine
noise falls on every path alike. Reported per path: median sentences/s over the rounds, STS-B
test Spearman (cosine x 100), the fraction of the bf16 matmul limit reached, and peak RSS.

The limit: all-MiniLM-L6-v2 spends 2 x (4 H^2 + 2 H I) = 3.54 MFLOP per token per layer in its
dense layers (H 384, I 1536), 21.2 MFLOP per token over 6 layers (attention adds under 1% at
these lengths). With the measured bf16 matmul peak P (FLOP/s, same threads) and the mean real
tokens per sentence T, the limit is P / (21.2e6 x T) sentences/s: what a kernel doing nothing but
dense bf16 matmuls on real tokens, with no padding, would reach.

    python benchmarks/encode_throughput.py --data ../shared/data \\
        --peer-python /tmp/stbench/bin/python --rounds 5

Paths: ``ours:PRECISION`` (fp32, bf16, int8, auto) and ``st:fp32``, ``st:onnx-qint8``,
``st:openvino`` (sentence-transformers 6 with its ONNX / OpenVINO backends, run with
``--peer-python``, a venv made by benchmarks/setup_st_backends.sh). ``:bN`` sets a batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FLOP_PER_TOKEN = 6 * 2 * (4 * 384**2 + 2 * 384 * 1536)
DEFAULT_PATHS = "ours:fp32,ours:bf16,ours:int8,ours:auto,st:fp32,st:onnx-qint8,st:openvino"


def read_sts(data: Path) -> tuple[list[str], list[str], list[float]]:
    a, b, gold = [], [], []
    with (data / "stsbenchmark" / "sts-test.csv").open(encoding="utf-8") as fh:
        for line in fh:
            cols = line.rstrip("\n").split("\t")
            gold.append(float(cols[4]))
            a.append(cols[5])
            b.append(cols[6])
    return a, b, gold


# ----------------------------------------------------------------- worker side
def _load(path: str, model: str, threads: int, work: Path) -> tuple[Any, int]:
    import torch

    torch.set_num_threads(threads)
    kind, _, rest = path.partition(":")
    precision, _, batch = rest.partition(":b")
    bs = int(batch) if batch else 32
    if kind == "ours":
        sys.path.insert(0, str(ROOT))
        from core.encoder import Encoder

        enc = Encoder.load(model, device="cpu")
        enc.to_precision(precision)
        return (lambda texts: enc.encode(texts, batch_size=bs)), enc.precision
    from sentence_transformers import SentenceTransformer

    if precision == "fp32":
        st = SentenceTransformer(model, device="cpu")
    else:  # the backends export into the model folder: work on a copy
        copy = work / f"st-{precision}"
        if not copy.exists():
            shutil.copytree(model, copy)
        if precision == "onnx-qint8":
            name = "onnx/model_qint8_avx512_vnni.onnx"
            if not (copy / name).exists():
                from sentence_transformers import export_dynamic_quantized_onnx_model

                export_dynamic_quantized_onnx_model(
                    SentenceTransformer(str(copy), device="cpu", backend="onnx"), "avx512_vnni", str(copy)
                )
            kwargs = {"file_name": name}
            st = SentenceTransformer(str(copy), device="cpu", backend="onnx", model_kwargs=kwargs)
        elif precision == "openvino":
            st = SentenceTransformer(str(copy), device="cpu", backend="openvino")
        else:
            raise SystemExit(f"unknown path {path}")
    return (lambda texts: st.encode(texts, batch_size=bs, convert_to_numpy=True)), precision


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    from scipy.stats import spearmanr

    a, b, gold = read_sts(Path(args.data))
    sentences = a + b
    encode, precision = _load(args.worker, args.model, args.threads, Path(args.work))
    encode(sentences[:256])  # warm-up: kernel selection and first-call allocation are not speed
    print(json.dumps({"ready": True, "precision": precision}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "run":
            start = time.perf_counter()
            encode(sentences)
            out: dict[str, Any] = {"seconds": time.perf_counter() - start}
        elif cmd == "quality":
            ea, eb = np.asarray(encode(a)), np.asarray(encode(b))
            cos = (ea * eb).sum(1) / (np.linalg.norm(ea, axis=1) * np.linalg.norm(eb, axis=1))
            out = {"spearman": 100 * float(spearmanr(cos, gold).statistic)}
        elif cmd == "rss":
            out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            break
        print(json.dumps(out), flush=True)


# ----------------------------------------------------------------- driver side
def matmul_peak(threads: int) -> dict[str, float]:
    """Best-of GFLOP/s of square torch matmuls at fp32 and bf16, on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = 0.0
        for n in (1024, 2048):
            x, y = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
            torch.mm(x, y)
            for _ in range(5):
                start = time.perf_counter()
                torch.mm(x, y)
                best = max(best, 2 * n**3 / (time.perf_counter() - start))
        peaks[name] = best / 1e9
    return peaks


def mean_real_tokens(model: str, sentences: list[str]) -> float:
    sys.path.insert(0, str(ROOT))
    from core.encoder import Encoder

    enc = Encoder.load(model, device="cpu")
    return statistics.fmean(len(e.ids) for e in enc.tokenize(sentences))


def machine_line(threads: int) -> str:
    flags = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        name = next(ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name"))
        have = set(next(ln for ln in cpuinfo.splitlines() if ln.startswith("flags")).split())
        flags = ", ".join(f for f in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni") if f in have)
    except (OSError, StopIteration):
        name = platform.processor()
    return f"{name} ({flags}), {os.cpu_count()} CPUs, {threads} threads, Python {platform.python_version()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--model", help="model folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--paths", default=DEFAULT_PATHS)
    ap.add_argument("--peer-python", help="python of a venv with sentence-transformers[onnx,openvino]")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/encode-throughput")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model is None:
        sys.path.insert(0, str(ROOT))
        from core.defaults import default_model_dir

        args.model = str(default_model_dir())
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args)
        return
    a, b, _ = read_sts(Path(args.data))
    tokens = mean_real_tokens(args.model, a + b)
    peaks = matmul_peak(args.threads)
    limit = peaks["bf16"] * 1e9 / (FLOP_PER_TOKEN * tokens)
    workers: dict[str, subprocess.Popen[str]] = {}
    info: dict[str, dict[str, Any]] = {}
    for path in args.paths.split(","):
        python = sys.executable if path.startswith("ours") else args.peer_python
        if python is None:
            print(f"skipping {path}: no --peer-python", file=sys.stderr)
            continue
        cmd = [python, __file__, "--worker", path, "--data", args.data, "--model", args.model]
        cmd += ["--threads", str(args.threads), "--work", args.work]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        hello = proc.stdout.readline()
        if not hello:
            print(f"skipping {path}: worker failed to start", file=sys.stderr)
            continue
        workers[path] = proc
        info[path] = {**json.loads(hello), "seconds": []}

    def ask(path: str, cmd: str) -> dict[str, Any]:
        proc = workers[path]
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(cmd + "\n")
        proc.stdin.flush()
        reply: dict[str, Any] = json.loads(proc.stdout.readline())
        return reply

    n = len(a) + len(b)
    for r in range(args.rounds):
        order = list(workers) if r % 2 == 0 else list(reversed(workers))  # alternate the order too
        for path in order:
            info[path]["seconds"].append(ask(path, "run")["seconds"])
    for path in workers:
        info[path].update(ask(path, "quality"), **ask(path, "rss"))
        workers[path].stdin.close()  # type: ignore[union-attr]
        workers[path].wait(timeout=60)
        info[path]["sentences_per_s"] = n / statistics.median(info[path]["seconds"])
    base = info.get("st:fp32", {}).get("sentences_per_s")
    print(f"\n{machine_line(args.threads)}; {date.today()}; {args.rounds} rounds, batch 32")
    print(
        f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s; "
        f"{tokens:.1f} real tokens per sentence x {FLOP_PER_TOKEN / 1e6:.1f} MFLOP/token -> "
        f"bf16 limit {limit:.0f} sentences/s\n"
    )
    print("| path | precision | sentences/s | vs ST fp32 | STS-B Spearman | % of bf16 limit | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path, row in info.items():
        if "sentences_per_s" not in row:
            continue
        speed = row["sentences_per_s"]
        ratio = f"{speed / base:.2f}x" if base else "n/a"
        print(
            f"| {path} | {row['precision']} | {speed:.0f} | {ratio} | {row['spearman']:.2f} | "
            f"{100 * speed / limit:.0f}% | {row['peak_rss_mb']:.0f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"peaks": peaks, "tokens": tokens, "paths": info}, indent=2))


if __name__ == "__main__":
    main()
