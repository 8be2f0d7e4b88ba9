"""Peak memory of ``semsearch index build`` as the corpus grows 10x (default 20k -> 200k docs).

    python benchmarks/index_memory.py --data ../shared/data --sizes 20000 200000 --out /tmp/bench-mem

The corpus is real sentences (SNLI dev/test premises and hypotheses, about 14 tokens each),
repeated with fresh ids to each size. Each build runs as its own process, with the packaged
all-MiniLM-L6-v2, ``--index-type flat`` (or ``--index-type``, with ``--on-disk``) and
``--precision auto``; its peak RSS comes from
``getrusage(RUSAGE_CHILDREN)``. A flat index must hold its vectors in memory (n x 384 x 4 bytes),
so that part grows by design; the rest (reader, shards, SQLite, batches) should not.

``--trace`` also samples the build's ``/proc/PID/status`` every 0.2 s and reports, per phase
(the last log line the build had written), the peak anonymous memory (``RssAnon``: heap, numpy,
FAISS) and the peak file-backed resident pages (``RssFile``: mmapped shards, ``index.ivfdata``,
shared libraries), which ``ru_maxrss`` adds together.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PHASE_CHARS = 90


def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmRSS"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _last_line(path: Path) -> str:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:PHASE_CHARS] if lines else "(start)"


def wait_traced(proc: subprocess.Popen[str], log_path: Path) -> tuple[int, Any, dict[str, dict[str, int]]]:
    """Wait for ``proc``, sampling its memory per phase: (status, rusage, {phase: peaks in kB});
    the samples go to ``<log>-rss.json``."""
    phases: dict[str, dict[str, int]] = {}
    series: list[list[float]] = []  # [seconds, RssAnon kB, RssFile kB], every 0.2 s
    t0 = time.perf_counter()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            (log_path.parent / f"{log_path.stem}-rss.json").write_text(json.dumps(series) + "\n")
            return status, usage, phases
        sample = _status_kb(proc.pid)
        if sample:
            series.append(
                [round(time.perf_counter() - t0, 1), sample.get("RssAnon", 0), sample.get("RssFile", 0)]
            )
            peaks = phases.setdefault(_last_line(log_path), {})
            for key, kb in sample.items():
                peaks[key] = max(peaks.get(key, 0), kb)
        time.sleep(0.2)


def sentences(data: Path) -> list[str]:
    snli = data / "snli-dev-test-esnli"
    out: list[str] = []
    for name in ("s1.dev", "s2.dev", "s1.test", "s2.test"):
        out.extend(line.strip() for line in (snli / name).read_text().splitlines() if line.strip())
    return list(dict.fromkeys(out))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--index-type", default="flat")
    ap.add_argument("--on-disk", action="store_true", help="build ivf/ivfpq with --on-disk (merged lists)")
    ap.add_argument("--trace", action="store_true", help="peak RssAnon / RssFile per build phase")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = sentences(args.data)
    rows = []
    for n in args.sizes:
        corpus = args.out / f"corpus-{n}.jsonl"
        with corpus.open("w") as fh:
            for i in range(n):
                fh.write(json.dumps({"id": f"d{i}", "text": base[i % len(base)]}) + "\n")
        t0 = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "semsearch.cli",
            "index",
            "build",
            "--corpus",
            str(corpus),
            "--output",
            str(args.out / f"idx-{n}"),
            "--index-type",
            args.index_type,
            "--precision",
            args.precision,
            "--no-progress",
            *(["--on-disk"] if args.on_disk else []),
        ]
        log_path = args.out / f"build-{n}.log"
        log = log_path.open("w")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        phases: dict[str, dict[str, int]] = {}
        if args.trace:
            status, usage, phases = wait_traced(proc, log_path)
        else:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - t0
        summary = proc.stdout.read().strip() if proc.stdout else ""
        if status != 0:
            print(f"build of {n} docs failed; see {log.name}", file=sys.stderr)
            return 1
        rows.append(
            {
                "docs": n,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "vectors_mb": n * 384 * 4 / 2**20,
                "seconds": seconds,
                "summary": summary,
                **({"phases_kb": phases} if args.trace else {}),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "machine": f"{platform.machine()}",
        "date": time.strftime("%Y-%m-%d"),
        "index_type": args.index_type,
        "on_disk": args.on_disk,
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
