"""Online writes at any index size (issue 16): the storage engine measured apart from the encoder.

The base vectors are random unit vectors (384-d, flat), so the engine is measured, not a model's
quality. Four phases, each against real files in ``--work`` (built once, reused by later runs):

1. ``put``: ``PUT /documents`` of one short document (the packaged MiniLM encodes it), the same
   with its vector given (a random unit vector: no model call, the storage engine and HTTP alone),
   ``DELETE /documents/{id}`` of every other encoded one, and ``POST /embed`` of the same text
   (the model call and HTTP, nothing stored), one request at a time, against two real
   ``semsearch serve`` processes up at once, one over 1k and one over 1M vectors, requests
   alternating between them: p50 / p99 and their ratio.
2. ``sustained``: upserts in batches of 100 random vectors through the service's own write path
   (``service.live_index.LiveIndex``: group commit, log, snapshot), encoder excluded, at 1M
   vectors, in a fresh process: documents/s, and peak RSS (VmHWM) against the FAISS file's size.
3. ``segments``: search p50 (k=10, one query per call, hits read from SQLite) with 10 delta
   segments and 5% of the base deleted, then a compaction in the background while a bounded search
   loop runs (its errors counted), then the same search after it: the ratio.

    python benchmarks/online_writes.py --work /tmp/ow [--n 1000000] [--phases put,sustained,segments]

Prints one JSON object; BENCHMARKS.md's "Online writes" table holds its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.machine import cpu_model  # noqa: E402
from harness.server_process import start_server  # noqa: E402
from harness.stats import percentile  # noqa: E402

DIM = 384
CHUNK = 50_000
DELTA_SIZES = (20_000, 8_000, 3_000, 1_200, 500, 200, 80, 30, 12, 5)  # each < half the one before


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def build(out: Path, n: int, fingerprint: str, model_dir: str) -> None:
    from core.index.doc_store import Document
    from core.index.manifest import Manifest
    from core.index.writer import IndexWriter

    if (out / "manifest.json").exists():
        return
    manifest = Manifest(model_fingerprint=fingerprint, dim=DIM, normalized=True, count=0, max_seq_length=256)
    manifest.model_dir = model_dir
    with IndexWriter(out, manifest) as writer:
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            docs = [
                Document(f"doc-{i}", f"document {i} about topic {i % 97}") for i in range(start, start + m)
            ]
            writer.add(docs, unit(m, start))
        writer.commit()


def pct(values: list[float], q: float) -> float:
    """``q`` (0-1) percentile in ms, rounded for the table."""
    return round(percentile(values, q * 100), 2)


def phase_put(small: Path, large: Path, requests: int) -> dict[str, Any]:
    """Both servers up at once, requests alternating between them: whatever the machine's load
    does to one size it does to the other, so the ratio is fair on a noisy host."""
    env = {"SEMSEARCH_DEVICE": "cpu", "SEMSEARCH_RELOAD_INTERVAL_S": "0"}
    servers = [start_server(str(small), None, env), start_server(str(large), None, env)]
    times: dict[str, list[list[float]]] = {w: [[], []] for w in ("put", "put_vector", "delete", "embed")}
    given = unit(requests + 20, seed=7).tolist()
    try:
        clients = [httpx.Client(base_url=url, timeout=30) for _, url in servers]
        before = [c.get("/ready").json()["documents"] for c in clients]
        for i in range(requests + 20):
            for side, client in enumerate(clients):
                text = f"an online document number {i}"
                body = {"documents": [{"id": f"put-{i}", "text": text}]}
                own = {"documents": [{"id": f"vec-{i}", "text": text, "vector": given[i]}]}
                for what, call in (
                    ("put", lambda c=client, b=body: c.put("/documents", json=b)),
                    ("put_vector", lambda c=client, b=own: c.put("/documents", json=b)),
                    ("delete", lambda c=client, n=i: c.delete(f"/documents/put-{n}") if n % 2 else None),
                    ("embed", lambda c=client, t=text: c.post("/embed", json={"texts": [t]})),
                ):
                    t0 = time.perf_counter()
                    resp = call()
                    elapsed = (time.perf_counter() - t0) * 1000
                    if resp is None:
                        continue
                    if resp.status_code != 200:
                        raise RuntimeError(f"{what} answered {resp.status_code}: {resp.text}")
                    if i >= 20:  # warm-up first
                        times[what][side].append(elapsed)
        after = [c.get("/ready").json()["documents"] for c in clients]
        kept = (requests + 20) // 2 + (requests + 20) % 2  # the odd ones were deleted again
        kept += requests + 20  # and every document that came with its vector
        assert after == [b + kept for b in before], (before, after)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=60)
    out: dict[str, Any] = {}
    for what, (a, b) in times.items():
        out[what] = {
            "small": {"n": len(a), "p50_ms": pct(a, 0.5), "p99_ms": pct(a, 0.99), "max_ms": round(max(a), 2)},
            "large": {"n": len(b), "p50_ms": pct(b, 0.5), "p99_ms": pct(b, 0.99), "max_ms": round(max(b), 2)},
            "p50_ratio_large_over_small": round(pct(b, 0.5) / pct(a, 0.5), 3),
        }
    return out


def vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def phase_sustained(index: Path, seconds: float, batches: int) -> dict[str, Any]:
    from core.index.doc_store import Document
    from core.index.folder import IndexFolder
    from service.live_index import LiveIndex

    folder = IndexFolder.open(index)
    faiss_bytes = (index / folder.manifest.index_file).stat().st_size
    live = LiveIndex(folder, lambda m: None)
    vecs = unit(100, 99)

    async def run() -> tuple[int, float]:
        done, t0 = 0, time.perf_counter()
        for b in range(batches):
            docs = [Document(f"s{b}-{j}", f"sustained {b} {j}") for j in range(100)]
            await live.upsert(docs, vecs)
            done += 100
            if time.perf_counter() - t0 > seconds:
                break
        return done, time.perf_counter() - t0

    done, elapsed = asyncio.run(run())
    count = live.current.count
    live.close()
    hwm = vm_kb("VmHWM") * 1024
    return {
        "documents": done,
        "seconds": round(elapsed, 2),
        "docs_per_s": round(done / elapsed),
        "count_after": count,
        "peak_rss_bytes": hwm,
        "faiss_file_bytes": faiss_bytes,
        "peak_rss_over_index": round(hwm / faiss_bytes, 3),
    }


def search_p50(live: Any, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        hits = live.current.search(q[None, :], 10)[0]
        times.append((time.perf_counter() - t0) * 1000)
        assert len(hits) == 10
    return statistics.median(times)


def phase_segments(index: Path, n: int, queries: int, loop_s: float) -> dict[str, Any]:
    from core.index.doc_store import Document
    from core.index.folder import IndexFolder
    from service.live_index import LiveIndex

    live = LiveIndex(IndexFolder.open(index), lambda m: None)

    async def writes() -> None:
        for w, size in enumerate(DELTA_SIZES):
            docs = [Document(f"seg{w}-{j}", f"delta {w} {j}") for j in range(size)]
            await live.upsert(docs, unit(size, 1000 + w))
        rng = np.random.default_rng(5)
        gone = rng.choice(n, size=n // 20, replace=False)
        await live.delete([f"doc-{i}" for i in gone])

    asyncio.run(writes())
    snap = live.current
    state = {
        "delta_segments": len(snap.segments.deltas),
        "delta_vectors": snap.segments.delta_count(),
        "deleted_ids": len(snap.dead),
        "documents": snap.count,
    }
    qs = unit(queries, 777)
    search_p50(live, qs[:10])  # warm-up
    before = search_p50(live, qs)

    errors, searched, stop = [0], [0], threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + loop_s
        i = 0
        while not stop.is_set() and time.monotonic() < deadline and i < 1_000_000:
            try:
                if len(live.current.search(qs[i % len(qs)][None, :], 10)[0]) != 10:
                    errors[0] += 1
            except Exception:
                errors[0] += 1
            i += 1
        searched[0] = i

    searcher = threading.Thread(target=loop)
    searcher.start()
    t0 = time.perf_counter()
    compactor = live.compact(full=False)
    assert compactor is not None
    compactor.join()
    while live.compactions == 0 and time.perf_counter() - t0 < 600:  # the writer thread installs it
        time.sleep(0.05)
    compaction_s = time.perf_counter() - t0
    stop.set()
    searcher.join()
    after_state = {
        "delta_segments": len(live.current.segments.deltas),
        "deleted_ids": len(live.current.dead),
        "documents": live.current.count,
    }
    after = search_p50(live, qs)
    live.close()
    return {
        "with_segments": state,
        "search_p50_ms_segments": round(before, 2),
        "compaction_s": round(compaction_s, 1),
        "searches_during_compaction": searched[0],
        "search_errors_during_compaction": errors[0],
        "after_compaction": after_state,
        "search_p50_ms_compacted": round(after, 2),
        "ratio": round(before / after, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=1_000)
    ap.add_argument("--phases", default="put,sustained,segments")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--phase", help=argparse.SUPPRESS)  # a phase in a fresh process
    args = ap.parse_args()
    if args.phase:
        index = args.work / f"idx-{args.n}"
        out = (
            phase_sustained(index, args.seconds, 10_000)
            if args.phase == "sustained"
            else phase_segments(index, args.n, args.queries, 1200)
        )
        print(json.dumps(out))
        return 0
    from core.defaults import default_model_dir
    from core.encoder import Encoder

    model = default_model_dir()
    fingerprint = Encoder.load(model, "cpu").fingerprint
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": cpu_model(), "date": time.strftime("%Y-%m-%d"), "n": args.n}
    phases = args.phases.split(",")
    for n in (args.small, args.n):
        t0 = time.perf_counter()
        build(args.work / f"base-{n}", n, fingerprint, str(model))
        result[f"build_{n}_s"] = round(time.perf_counter() - t0, 1)

    def fresh(n: int) -> Path:
        """A copy of the pristine base for one phase (phases write into their folder)."""
        target = args.work / f"idx-{n}"
        subprocess.run(["rm", "-rf", str(target)], check=True)
        subprocess.run(["cp", "-r", str(args.work / f"base-{n}"), str(target)], check=True)
        return target

    if "put" in phases:
        result["put"] = phase_put(fresh(args.small), fresh(args.n), args.requests)
    for name in ("sustained", "segments"):
        if name in phases:
            fresh(args.n)
            run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--work",
                    str(args.work),
                    "--n",
                    str(args.n),
                    "--phase",
                    name,
                    "--seconds",
                    str(args.seconds),
                    "--queries",
                    str(args.queries),
                ],
                capture_output=True,
                text=True,
            )
            if run.returncode:
                raise RuntimeError(f"phase {name} failed:\n{run.stderr[-3000:]}")
            result[name] = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
