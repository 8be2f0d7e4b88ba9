"""Latency of sequential ``POST /search`` calls against a running semsearch service.

    python benchmarks/search_latency.py --url http://127.0.0.1:8000 --n 100

Bounded: at most ``--n`` requests and ``--max-seconds`` of wall time. Prints p50/p90/p99/max in ms
(client-side, including HTTP) and the server's own ``took_ms`` median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import httpx
from harness.stats import percentile

QUERIES = [
    "how do I open a file for writing",
    "sort a list in place",
    "read environment variables",
    "parse command line arguments",
    "regular expression match at the start of a string",
    "convert a string to an integer",
    "what does the with statement do",
    "run a subprocess and capture its output",
    "serialize an object to JSON",
    "current date and time",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    args = ap.parse_args()

    client_ms: list[float] = []
    server_ms: list[float] = []
    deadline = time.monotonic() + args.max_seconds
    with httpx.Client(base_url=args.url, timeout=30.0) as client:
        for i in range(args.warmup + args.n):
            if time.monotonic() > deadline:
                print(
                    f"stopped at the {args.max_seconds:.0f} s bound after {len(client_ms)} calls",
                    file=sys.stderr,
                )
                break
            body = {"query": QUERIES[i % len(QUERIES)], "k": args.k}
            t0 = time.perf_counter()
            r = client.post("/search", json=body)
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            if i >= args.warmup:
                client_ms.append(elapsed)
                server_ms.append(float(r.json()["took_ms"]))
    if not client_ms:
        return 1
    print(f"{len(client_ms)} sequential /search calls, k={args.k}")
    print(
        f"client ms: p50 {percentile(client_ms, 50):.1f}  p90 {percentile(client_ms, 90):.1f}  "
        f"p99 {percentile(client_ms, 99):.1f}  max {max(client_ms):.1f}"
    )
    print(f"server took_ms: median {statistics.median(server_ms):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
