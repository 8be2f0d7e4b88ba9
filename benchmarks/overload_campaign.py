"""Overload campaign: a bounded burst of valid requests, from tiny to the largest the limits allow,
well over capacity, against a real ``semsearch serve`` process.

Every answer must be 200, 429 or 503 (those two with ``Retry-After``); none may be dropped; the
server's resident memory is sampled all along; after the burst, a small search must answer 200
within a few seconds. Prints one JSON object with the figures (and exits 1 if a rule broke).

    python benchmarks/overload_campaign.py --index IDX [--model DIR] [--requests 2000] \
        [--concurrency 96] [--seconds 240] [--env SEMSEARCH_X=Y ...]

The burst is bounded in count (``--requests``) and time (``--seconds``); the server binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from harness.machine import cpu_model
from harness.server_process import start_server

WORDS = [
    *("index", "search", "vector", "query", "document", "model", "cat", "dog", "river", "mountain"),
    *("bread", "cheese", "star", "sun", "protein", "cell", "heart", "study", "patients", "results"),
    *("effect", "treatment", "growth", "data", "system", "method"),
]


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def make_requests(n: int, seed: int, max_texts: int = 256) -> list[tuple[str, str, str, Any]]:
    """(kind, method, path, json body) for n requests, mixed from tiny to the largest allowed."""
    rng = random.Random(seed)
    kinds = [
        ("search_tiny", 30),
        ("search_k1000", 8),
        ("batch_max", 6),
        ("embed_max", 6),
        ("openai_32", 10),
        ("similarity", 8),
        ("upsert", 8),
        ("get_doc", 14),
        ("hybrid", 10),
    ]
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    out: list[tuple[str, str, str, Any]] = []
    for i in range(n):
        kind = rng.choices(names, weights)[0]
        if kind == "search_tiny":
            out.append((kind, "POST", "/search", {"query": _text(rng, 20), "k": 5}))
        elif kind == "search_k1000":
            out.append((kind, "POST", "/search", {"query": _text(rng, 2_000), "k": 1000}))
        elif kind == "batch_max":  # max_texts queries x k just under the default hit bound
            body = {"queries": [_text(rng, 60) for _ in range(max_texts)], "k": 10_000 // max_texts}
            out.append((kind, "POST", "/search/batch", body))
        elif kind == "embed_max":  # max_texts texts, as long as the 1 MB body allows
            per = 900_000 // max_texts - 8
            out.append((kind, "POST", "/embed", {"texts": [_text(rng, per) for _ in range(max_texts)]}))
        elif kind == "openai_32":
            body = {"input": [_text(rng, 200) for _ in range(32)], "model": "any"}
            out.append((kind, "POST", "/v1/embeddings", body))
        elif kind == "similarity":
            pairs = [[_text(rng, 80), _text(rng, 80)] for _ in range(64)]
            out.append((kind, "POST", "/similarity", {"pairs": pairs}))
        elif kind == "upsert":
            docs = [{"id": f"burst-{i}-{j}", "text": _text(rng, 300), "metadata": {"i": i}} for j in range(8)]
            out.append((kind, "PUT", "/documents", {"documents": docs}))
        elif kind == "get_doc":
            out.append((kind, "GET", f"/documents/burst-{rng.randrange(max(1, i))}-0", None))
        else:
            out.append((kind, "POST", "/search", {"query": _text(rng, 40), "k": 20, "hybrid": True}))
    return out


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_kb = 0
        self.stop = threading.Event()

    def rss_kb(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, self.rss_kb())
            time.sleep(self.every_s)


def run_campaign(
    url: str, pid: int, requests: int, concurrency: int, seconds: float, seed: int
) -> dict[str, Any]:
    plan = make_requests(requests, seed)
    sampler = RssSampler(pid)
    baseline_kb = sampler.rss_kb()
    sampler.start()
    statuses: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    problems: list[str] = []
    lock = threading.Lock()
    local = threading.local()
    stop_at = time.monotonic() + seconds

    def one(item: tuple[str, str, str, Any]) -> None:
        kind, method, path, body = item
        if time.monotonic() > stop_at:
            with lock:
                statuses["not_sent"] += 1
            return
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, timeout=120)
        try:
            resp = client.request(method, path, json=body)
            code = str(resp.status_code)
            retry = resp.headers.get("retry-after")
            ok = resp.status_code in (200, 429, 503) or (kind == "get_doc" and resp.status_code == 404)
            if not ok:
                problem = f"{kind}: {resp.status_code} {resp.text[:200]}"
            elif resp.status_code in (429, 503) and not retry:
                problem = f"{kind}: {resp.status_code} without Retry-After"
            else:
                problem = None
        except httpx.HTTPError as exc:  # no HTTP answer at all
            code, problem = "dropped", f"{kind}: {type(exc).__name__}: {exc}"
        with lock:
            statuses[code] += 1
            by_kind.setdefault(kind, Counter())[code] += 1
            if problem:
                problems.append(problem)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, plan))
    burst_s = time.perf_counter() - started
    # Recovery: the first small search that answers 200 after the burst.
    recovered_s = None
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.perf_counter() - t0 < 30:
            try:
                if client.post("/search", json={"query": "cat", "k": 3}).status_code == 200:
                    recovered_s = time.perf_counter() - t0
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    sampler.stop.set()
    sampler.join()
    return {
        "requests": requests,
        "sent": requests - statuses["not_sent"],
        "concurrency": concurrency,
        "statuses": dict(sorted(statuses.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "dropped": statuses["dropped"],
        "server_errors_5xx_other_than_503": sum(
            n for c, n in statuses.items() if c.isdigit() and int(c) >= 500 and c != "503"
        ),
        "problems": problems[:20],
        "problem_count": len(problems),
        "burst_s": round(burst_s, 1),
        "recovered_s": None if recovered_s is None else round(recovered_s, 2),
        "baseline_rss_mb": round(baseline_kb / 1024, 1),
        "peak_rss_mb": round(sampler.peak_kb / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--model")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--env", action="append", default=[], help="SEMSEARCH_X=Y for the server")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("SEMSEARCH_RELOAD_INTERVAL_S", "0")
    proc, url = start_server(args.index, args.model, env)
    try:
        figures = run_campaign(url, proc.pid, args.requests, args.concurrency, args.seconds, args.seed)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    figures.update(
        server_alive_after=alive,
        server_env=env,
        cpu=cpu_model(),
        date=time.strftime("%Y-%m-%d"),
    )
    print(json.dumps(figures, indent=2))
    bad = figures["dropped"] or figures["problem_count"] or not alive or figures["recovered_s"] is None
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
