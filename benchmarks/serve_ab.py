"""Two checkouts of semsearch served side by side, requests alternating: a before/after figure that
a noisy host cannot bias (whatever the machine does to one server it does to the other).

Each checkout serves its own copy of ``--index`` (so writes do not meet); every round sends one
``PUT /documents``, one ``POST /embed`` and one ``POST /search`` (k 10) to each server in turn.

    git worktree add /tmp/before <commit>
    python benchmarks/serve_ab.py --index /tmp/ow/idx-1000 /tmp/before .

Prints one JSON object: p50 / p99 per route and checkout, and each route's ratio of p50s (the last
checkout over the first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from harness.machine import cpu_model
from harness.server_process import start_server
from harness.stats import percentile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True, help="an index folder (copied per checkout)")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("roots", type=Path, nargs=2, help="the two checkouts, before then after")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve-ab-"))
    servers = []
    try:
        for n, root in enumerate(args.roots):
            copy = work / f"index-{n}"
            shutil.copytree(args.index, copy)
            root = root.resolve()
            env = {"SEMSEARCH_DEVICE": "cpu", "SEMSEARCH_RELOAD_INTERVAL_S": "0", "PYTHONPATH": str(root)}
            servers.append(start_server(str(copy), None, env, cwd=root))
        clients = [httpx.Client(base_url=url, timeout=60) for _, url in servers]
        routes = ("put", "embed", "search")
        times: dict[str, list[list[float]]] = {r: [[] for _ in servers] for r in routes}
        for i in range(args.rounds + args.warmup):
            text = f"an online document number {i}"
            for side, client in enumerate(clients):
                for route in routes:
                    t0 = time.perf_counter()
                    if route == "put":
                        resp = client.put("/documents", json={"documents": [{"id": f"ab-{i}", "text": text}]})
                    elif route == "embed":
                        resp = client.post("/embed", json={"texts": [text]})
                    else:
                        resp = client.post("/search", json={"query": text, "k": 10})
                    elapsed = (time.perf_counter() - t0) * 1000
                    if resp.status_code != 200:
                        raise RuntimeError(f"{route} answered {resp.status_code}: {resp.text}")
                    if i >= args.warmup:
                        times[route][side].append(elapsed)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    out: dict[str, Any] = {"machine": cpu_model(), "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds}
    for route, sides in times.items():
        out[route] = {
            str(root): {"p50_ms": round(statistics.median(v), 2), "p99_ms": round(percentile(v, 99), 2)}
            for root, v in zip(args.roots, sides, strict=True)
        }
        out[route]["p50_ratio_after_over_before"] = round(
            statistics.median(sides[1]) / statistics.median(sides[0]), 3
        )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
