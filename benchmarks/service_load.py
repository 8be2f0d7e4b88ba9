"""Load benchmark of the search service: latency percentiles and QPS under concurrency, service
overhead over in-process search, micro-batching on/off, txtai's API under the same load, and a
soak with upserts.

    .venv/bin/python benchmarks/service_load.py --data ../shared/data/ir-classic \\
        [--work-dir /tmp/svc-bench] [--txtai-venv /tmp/txtai-venv] \\
        [--scenarios conc,overhead,batching,txtai,soak] [--requests 2000] [--duration-s 60] \\
        [--soak-n 10000] [--json results.json]

Corpus: MEDLINE + ADI (``ir-classic``, SMART format; 1,033 + 82 documents, ``--docs N`` repeats
them with fresh ids), written as JSONL to the work dir and indexed with ``semsearch index build
--index-type flat``. Queries: the collections' own 30 + 35 queries, cycled in order.

Scenarios (each server is a subprocess bound to 127.0.0.1 on a free port, started, waited on
(``GET /ready`` for ours) with a bounded timeout, loaded, then terminated):

- ``conc``: ``POST /search`` (k=10) at each ``--concurrency`` level (1, 8, 32, 64): p50/p95/p99
  latency (client-side, HTTP included), QPS of successful requests, errors by status.
- ``overhead``: at concurrency 1, the service's p50/p99 against the in-process time of the same
  queries through ``Encoder.encode_detailed([q])`` + ``IndexFolder.search(emb, k)`` (same model
  folder, same index), measured in this process while no server runs. The service side is the
  ``conc`` scenario's concurrency-1 phase when that ran, else a phase of its own.
- ``batching``: concurrency ``--batching-concurrency`` (32) with ``SEMSEARCH_MICRO_BATCHING=true``
  then ``=false``, one server start each.
- ``txtai``: txtai's API (``uvicorn txtai.api:app`` from its own venv, see
  ``benchmarks/setup_txtai.sh``) serving the same corpus with the same model, ``GET
  /search?query=...&limit=10`` at the same concurrency levels, in this same run. Its index is
  built beforehand in a separate process (``benchmarks/txtai_build_index.py``), as ours is.
- ``soak``: ``--soak-n`` requests at concurrency ``--soak-concurrency`` (64) against ours on a
  copy of the index, one ``PUT /documents`` upsert every ``--soak-upsert-every`` (50) requests,
  the rest searches. Errors must be 0; the server's VmRSS is read at start and end.

Bounds: every request has ``--request-timeout-s``; every load phase stops at ``--requests`` or
``--duration-s``, whichever comes first (the soak at ``--soak-n`` or ``--soak-duration-s``); server
start has ``--start-timeout-s``, index builds ``--build-timeout-s``. Only 127.0.0.1 is contacted.
Each phase starts with ``--warmup`` requests (at least one per connection) excluded from stats.

The load generator runs on the same machine as the servers: on few cores it takes part of the
CPU from them (its own CPU share is reported). Both servers log at warning level (no access log).
Prints Markdown tables ready for BENCHMARKS.md; ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.smart import read_smart

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("conc", "overhead", "batching", "txtai", "soak")
LOOPBACK = "127.0.0.1"
K = 10
SAMPLE_QUERIES = 20  # queries whose top-k ids are compared between ours and txtai

# ----------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class LatencyStats:
    n: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencyStats:
        ms = [s * 1000 for s in seconds]
        mean = sum(ms) / len(ms) if ms else float("nan")
        return cls(
            len(ms),
            percentile(ms, 50),
            percentile(ms, 95),
            percentile(ms, 99),
            max(ms) if ms else float("nan"),
            mean,
        )


@dataclass
class Sample:
    kind: str  # "search" or "upsert"
    seconds: float
    status: str  # HTTP status code, or the exception's class name
    took_ms: float | None = None  # the server's own took_ms, where asked for


@dataclass
class PhaseResult:
    label: str
    concurrency: int
    requested: int
    completed: int
    ok: int
    elapsed_s: float
    qps: float  # successful requests per second of the phase
    stopped_by_time: bool
    errors: dict[str, int]  # "kind:status" -> count, non-2xx and exceptions
    latency: dict[str, LatencyStats]  # kind -> stats of its successful requests
    server_took_ms_p50: float | None = None
    server_cpu_ms_per_req: float | None = None
    client_cpu_share: float | None = None  # client CPU seconds / wall seconds (1.0 = one core)
    server_rss_mb: float | None = None  # at the end of the phase


def is_ok(status: str) -> bool:
    return status.isdigit() and 200 <= int(status) < 300


# ----------------------------------------------------------------------------- load generator

RequestFn = Callable[[httpx.AsyncClient, int], Awaitable[tuple[str, int, float | None]]]


class _KindedError(Exception):
    """A transport error of a request whose kind is not "search"."""

    def __init__(self, kind: str, status: str) -> None:
        super().__init__(f"{kind}: {status}")
        self.kind = kind
        self.status = status


async def _timed(fn: RequestFn, client: httpx.AsyncClient, i: int) -> Sample:
    t0 = time.perf_counter()
    kind = "search"
    try:
        kind, code, took = await fn(client, i)
        status = str(code)
    except httpx.HTTPError as exc:
        status, took = type(exc).__name__, None
    except _KindedError as exc:
        kind, status, took = exc.kind, exc.status, None
    return Sample(kind, time.perf_counter() - t0, status, took)


async def run_phase(
    base_url: str,
    fn: RequestFn,
    *,
    label: str,
    concurrency: int,
    requests: int,
    duration_s: float,
    warmup: int,
    timeout_s: float,
    server_pid: int | None = None,
    start_index: int = 0,
) -> PhaseResult:
    """``requests`` calls of ``fn`` by ``concurrency`` workers, stopping early at ``duration_s``;
    preceded (when ``warmup`` > 0) by a warm-up of max(warmup, concurrency) calls whose results
    are dropped. ``fn`` gets the call's index, counting from ``start_index`` (warm-up included)."""
    host = urlsplit(base_url).hostname
    if host != LOOPBACK:
        raise SystemExit(f"refusing to load {base_url}: only {LOOPBACK} is allowed")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    timeout = httpx.Timeout(timeout_s)
    counter = itertools.count(start_index)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:

        async def drive(n: int, bound_s: float) -> tuple[list[Sample], float, bool]:
            samples: list[Sample] = []
            issued = 0
            deadline = time.monotonic() + bound_s
            hit_deadline = False

            async def worker() -> None:
                nonlocal issued, hit_deadline
                while issued < n:
                    if time.monotonic() >= deadline:
                        hit_deadline = True
                        return
                    issued += 1
                    samples.append(await _timed(fn, client, next(counter)))

            t0 = time.perf_counter()
            tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
            try:
                # Safety net over the per-request timeouts: nothing outlives bound + one timeout.
                await asyncio.wait_for(asyncio.gather(*tasks), bound_s + timeout_s + 5)
            except TimeoutError:
                hit_deadline = True
            return samples, time.perf_counter() - t0, hit_deadline

        if warmup > 0:  # 0: no warm-up at all (the soak warms up with searches beforehand)
            await drive(max(warmup, concurrency), max(30.0, duration_s))
        cpu0 = _proc_cpu_s(server_pid)
        client0 = time.process_time()
        samples, elapsed, stopped = await drive(requests, duration_s)
        client_cpu = time.process_time() - client0
        cpu1 = _proc_cpu_s(server_pid)
    ok = [s for s in samples if is_ok(s.status)]
    errors = Counter(f"{s.kind}:{s.status}" for s in samples if not is_ok(s.status))
    kinds = sorted({s.kind for s in samples})
    took = [s.took_ms for s in ok if s.took_ms is not None]
    return PhaseResult(
        label=label,
        concurrency=concurrency,
        requested=requests,
        completed=len(samples),
        ok=len(ok),
        elapsed_s=elapsed,
        qps=len(ok) / elapsed if elapsed > 0 else 0.0,
        stopped_by_time=stopped,
        errors=dict(errors),
        latency={k: LatencyStats.of([s.seconds for s in ok if s.kind == k]) for k in kinds},
        server_took_ms_p50=percentile(took, 50) if took else None,
        server_cpu_ms_per_req=(
            (cpu1 - cpu0) * 1000 / len(samples) if cpu0 is not None and cpu1 is not None and samples else None
        ),
        client_cpu_share=client_cpu / elapsed if elapsed > 0 else None,
        server_rss_mb=rss_mb(server_pid),
    )


# ----------------------------------------------------------------------------- /proc


def _proc_status(pid: int | None, key: str) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        return None
    return None


def rss_mb(pid: int | None) -> float | None:
    return _proc_status(pid, "VmRSS")


def hwm_mb(pid: int | None) -> float | None:
    return _proc_status(pid, "VmHWM")


def _proc_cpu_s(pid: int | None) -> float | None:
    """utime + stime of the whole process (all threads), in seconds."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """A server subprocess: started in its own session, logs to a file, waited on until
    ``ready_path`` answers 200 (bounded), then SIGTERM (SIGKILL after a grace period) on exit."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], port: int, ready_path: str, log: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.ready_path = ready_path
        self.log_path = log
        self.url = f"http://{LOOPBACK}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_body: Any = None
        self.start_s = 0.0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def start(self, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = t0 + timeout_s
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode} before ready; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    r = client.get(self.ready_path)
                    if r.status_code == 200:
                        self.start_s = time.monotonic() - t0
                        with contextlib.suppress(ValueError):
                            self.ready_body = r.json()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready within {timeout_s:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace_s: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- data


@dataclass
class Collection:
    docs: list[dict[str, Any]]
    queries: list[str]


def load_collection(data: Path, docs: int) -> Collection:
    root = data / "ir-classic" if (data / "ir-classic").is_dir() else data
    base: list[dict[str, Any]] = []
    queries: list[str] = []
    for name, stem in (("med", "MED"), ("adi", "ADI")):
        for doc_id, text in read_smart(root / name / f"{stem}.ALL"):
            if text.strip():
                base.append({"id": f"{name}-{doc_id}", "text": text, "metadata": {"collection": name}})
        queries += [q for _, q in read_smart(root / name / f"{stem}.QRY") if q.strip()]
    if docs <= 0 or docs == len(base):
        return Collection(base, queries)
    out = []
    for i in range(docs):
        doc = base[i % len(base)]
        rep = i // len(base)
        out.append({**doc, "id": doc["id"] if rep == 0 else f"{doc['id']}-r{rep}"})
    return Collection(out, queries)


def write_corpus(coll: Collection, path: Path) -> str:
    """Write the JSONL corpus (only when it changed) and return its sha256."""
    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in coll.docs).encode()
    digest = hashlib.sha256(body).hexdigest()
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        path.write_bytes(body)
    return digest


def build_stamp(corpus_sha: str, model_dir: Path, what: str) -> str:
    return json.dumps({"corpus_sha256": corpus_sha, "model": str(model_dir), "what": what}, sort_keys=True)


def ensure_built(
    out: Path, stamp: str, argv: list[str], env: dict[str, str], timeout_s: float, log: Path
) -> float | None:
    """Run ``argv`` to (re)build ``out`` unless its stamp matches; returns the build's seconds."""
    stamp_file = out.parent / f"{out.name}.stamp.json"
    if out.is_dir() and stamp_file.is_file() and stamp_file.read_text() == stamp:
        return None
    print(f"building {out} ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    with log.open("wb") as fh:
        try:
            subprocess.run(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout_s, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"building {out} failed ({exc}); log {log}:\n{tail}") from exc
    stamp_file.write_text(stamp)
    return time.monotonic() - t0


# ----------------------------------------------------------------------------- requests


def ours_search(queries: list[str], with_took: bool = False) -> RequestFn:
    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        r = await client.post("/search", json={"query": queries[i % len(queries)], "k": K})
        took = None
        if with_took and r.status_code == 200:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                took = float(r.json()["took_ms"])
        return "search", r.status_code, took

    return fn


def txtai_search(queries: list[str]) -> RequestFn:
    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        r = await client.get("/search", params={"query": queries[i % len(queries)], "limit": K})
        return "search", r.status_code, None

    return fn


def soak_text(texts: list[str], n: int) -> str:
    """A corpus text made unique, so that searching for it must find ``soak-<n>`` first."""
    return f"soak document {n}: {texts[n % len(texts)]}"


def soak_mix(queries: list[str], texts: list[str], upsert_every: int) -> RequestFn:
    """Every ``upsert_every``-th request is ``PUT /documents`` with a new id ``soak-<n>``."""
    upserts = itertools.count()

    async def fn(client: httpx.AsyncClient, i: int) -> tuple[str, int, float | None]:
        if upsert_every > 0 and i % upsert_every == upsert_every - 1:
            n = next(upserts)
            doc = {"id": f"soak-{n}", "text": soak_text(texts, n), "metadata": {"source": "soak"}}
            try:
                r = await client.put("/documents", json={"documents": [doc]})
            except httpx.HTTPError as exc:
                raise _KindedError("upsert", type(exc).__name__) from exc
            return "upsert", r.status_code, None
        r = await client.post("/search", json={"query": queries[i % len(queries)], "k": K})
        return "search", r.status_code, None

    return fn


async def top_ids(url: str, queries: list[str], txtai: bool, timeout_s: float) -> list[list[str]]:
    """Top-k ids of the first queries, one at a time (outside the measured phases): the two
    servers must return the same documents for the comparison to be fair."""
    out: list[list[str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
        for q in queries:
            try:
                if txtai:
                    r = await client.get("/search", params={"query": q, "limit": K})
                    out.append([str(h["id"]) for h in r.json()])
                else:
                    r = await client.post("/search", json={"query": q, "k": K})
                    out.append([str(h["id"]) for h in r.json()["hits"]])
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                out.append([])
    return out


def agreement(a: list[list[str]], b: list[list[str]]) -> float | None:
    """Mean share of top-k ids two servers have in common, over the queries both answered."""
    pairs = [(x, y) for x, y in zip(a, b, strict=False) if x and y]
    if not pairs:
        return None
    return sum(len(set(x) & set(y)) / max(len(x), len(y)) for x, y in pairs) / len(pairs)


# ----------------------------------------------------------------------------- in-process


def in_process(
    model_dir: Path, index_dir: Path, queries: list[str], n: int, warmup: int, duration_s: float
) -> dict[str, Any]:
    """``encode_detailed([q])`` + ``index.search(emb, k)`` per query, as the service does."""
    from core.encoder import Encoder
    from core.index.folder import IndexFolder

    encoder = Encoder.load(model_dir, "auto")
    index = IndexFolder.open(index_dir)
    try:
        for i in range(warmup):
            index.search(encoder.encode_detailed([queries[i % len(queries)]]).embeddings, K)
        total: list[float] = []
        encode: list[float] = []
        deadline = time.monotonic() + duration_s
        for i in range(n):
            if time.monotonic() >= deadline:
                break
            q = queries[i % len(queries)]
            t0 = time.perf_counter()
            emb = encoder.encode_detailed([q]).embeddings
            t1 = time.perf_counter()
            hits = index.search(emb, K)
            t2 = time.perf_counter()
            if len(hits[0]) != min(K, index.count):
                raise RuntimeError(f"in-process search returned {len(hits[0])} hits")
            total.append(t2 - t0)
            encode.append(t1 - t0)
        return {
            "total": asdict(LatencyStats.of(total)),
            "encode": asdict(LatencyStats.of(encode)),
            "device": str(encoder.device),
            "precision": encoder.precision,
            "stopped_by_time": len(total) < n,
        }
    finally:
        index.close()


# ----------------------------------------------------------------------------- machine


def machine_info(txtai_python: Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Flags"):
                if key.strip() == "Flags":
                    value = " ".join(f for f in value.split() if f.startswith(("avx512_bf16", "amx")))
                info[f"lscpu {key.strip()}"] = value.strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        info["git"] = head + ("+dirty" if dirty else "")
    from importlib import metadata

    for pkg in ("torch", "faiss-cpu", "fastapi", "uvicorn", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[pkg] = metadata.version(pkg)
    if txtai_python is not None and txtai_python.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            code = "import importlib.metadata as m;print(m.version('txtai'), m.version('torch'))"
            done = subprocess.run([str(txtai_python), "-c", code], capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                txtai_v, torch_v = done.stdout.split()
                info["txtai"] = txtai_v
                info["txtai venv torch"] = torch_v
    return info


# ----------------------------------------------------------------------------- markdown


def _f(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{x:,.{digits}f}"


def _p(stats: LatencyStats | None, name: str) -> float | None:
    return None if stats is None else float(getattr(stats, name))


def _errors(r: PhaseResult) -> str:
    if not r.errors:
        return "0"
    return ", ".join(f"{k} ×{v}" for k, v in sorted(r.errors.items()))


def _phase_row(r: PhaseResult, kind: str = "search") -> str:
    s = r.latency.get(kind)
    bound = " (time bound)" if r.stopped_by_time else ""
    return (
        f"| {r.concurrency} | {r.ok:,}/{r.completed:,}{bound} | **{_f(r.qps)}** | {_f(_p(s, 'p50_ms'))} | "
        f"{_f(_p(s, 'p95_ms'))} | {_f(_p(s, 'p99_ms'))} | {_f(_p(s, 'max_ms'))} | {_errors(r)} | "
        f"{_f(r.server_cpu_ms_per_req)} | {_f(r.client_cpu_share and r.client_cpu_share * 100, 0)}% |"
    )


PHASE_HEAD = (
    "| concurrency | ok / completed | QPS | p50 ms | p95 ms | p99 ms | max ms | errors | "
    "server CPU ms/req | client CPU |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def _loads(values: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or a != a or b != b:
        return "–"
    return f"{a / b:.2f}×"


def markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    m = res["machine"]
    cmd = " ".join(["python", "benchmarks/service_load.py", *sys.argv[1:]])
    lines = [
        f"## Service load: POST /search under concurrency ({m['date']})",
        "",
        f"Machine: {m.get('lscpu Model name', '?')}, {m.get('cpus')} CPUs "
        f"({m.get('lscpu Flags') or 'no avx512_bf16/amx'}), {m.get('mem_gib')} GiB, Python {m['python']}, "
        f"torch {m.get('torch')}, faiss-cpu {m.get('faiss-cpu')}, uvicorn {m.get('uvicorn')}"
        + (f", txtai {m['txtai']} (torch {m.get('txtai venv torch')})" if "txtai" in m else "")
        + f"; commit {m.get('git', '?')}. Load average at start {_loads(m['loadavg_start'])}"
        + (f", at end {_loads(m['loadavg_end'])}" if "loadavg_end" in m else "")
        + ".",
        "",
        f"Corpus: MEDLINE + ADI, {res['corpus']['documents']:,} documents, exact flat index; "
        f"{res['corpus']['queries']} queries cycled; k = {K}. Client (httpx, asyncio) and server share "
        f"the machine. Each phase: up to {args.requests:,} requests or {args.duration_s:.0f} s after a "
        f"warm-up of max({args.warmup}, concurrency) requests; latency is client-side, HTTP included, over "
        "successful requests.",
        "",
        "```sh",
        cmd,
        "```",
    ]
    if "conc" in res:
        lines += ["", "### Concurrency sweep, ours (`POST /search`)", "", PHASE_HEAD]
        lines += [_phase_row(PhaseResult(**_phase(r))) for r in res["conc"]]
        srv = res.get("conc_server", {})
        lines += [
            "",
            f"Server start to ready: {_f(srv.get('start_s'))} s; "
            f"RSS at ready {_f(srv.get('rss_ready_mb'), 0)} MB.",
        ]
    if "overhead" in res:
        o = res["overhead"]
        ip, sv = o["in_process"]["total"], o["service"]["latency"]["search"]
        enc = o["in_process"]["encode"]
        lines += [
            "",
            "### Service overhead at concurrency 1",
            "",
            "| measure | p50 ms | p99 ms |",
            "| --- | --- | --- |",
            f"| in-process `encode_detailed([q])` + `IndexFolder.search` ({ip['n']} queries) | "
            f"{_f(ip['p50_ms'], 2)} | {_f(ip['p99_ms'], 2)} |",
            f"| of which encode | {_f(enc['p50_ms'], 2)} | {_f(enc['p99_ms'], 2)} |",
            f"| service `POST /search`, client-side ({sv['n']} requests) | {_f(sv['p50_ms'], 2)} | "
            f"{_f(sv['p99_ms'], 2)} |",
            f"| service's own `took_ms` (p50) | {_f(o['service'].get('server_took_ms_p50'), 2)} | |",
            f"| ratio service / in-process | {_ratio(sv['p50_ms'], ip['p50_ms'])} | "
            f"{_ratio(sv['p99_ms'], ip['p99_ms'])} |",
            "| **service p99 / in-process p50** (target ≤ 1.5×) | "
            f"**{_ratio(sv['p99_ms'], ip['p50_ms'])}** | |",
        ]
    if "batching" in res:
        b = res["batching"]
        on, off = PhaseResult(**_phase(b["on"])), PhaseResult(**_phase(b["off"]))
        lines += [
            "",
            f"### Micro-batching at concurrency {on.concurrency}",
            "",
            "| `SEMSEARCH_MICRO_BATCHING` | `/ready` says | ok / completed | QPS | p50 ms | p99 ms "
            "| errors | server CPU ms/req |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, key, r in (("true", "on", on), ("false", "off", off)):
            s = r.latency.get("search")
            ready = b.get(f"{key}_ready")
            says = ready.get("micro_batching", "–") if isinstance(ready, dict) else "–"
            lines.append(
                f"| {name} | {says} | {r.ok:,}/{r.completed:,} | **{_f(r.qps)}** | {_f(_p(s, 'p50_ms'))} | "
                f"{_f(_p(s, 'p99_ms'))} | {_errors(r)} | {_f(r.server_cpu_ms_per_req)} |"
            )
        lines += ["", f"QPS on / off: **{_ratio(on.qps, off.qps)}**."]
    if "txtai" in res:
        t = res["txtai"]
        lines += [
            "",
            "### txtai's API under the same load (`GET /search?query=…&limit=10`)",
            "",
            PHASE_HEAD,
        ]
        lines += [_phase_row(PhaseResult(**_phase(r))) for r in t["phases"]]
        lines += [
            "",
            f"txtai server start to first answer: {_f(t['server'].get('start_s'))} s; RSS after load "
            f"{_f(t['phases'][-1].get('server_rss_mb') if t['phases'] else None, 0)} MB"
            + (f"; index built in {_f(t['build_s'])} s" if t.get("build_s") else "")
            + ".",
        ]
        if "top_ids_ours" in res:
            agree = agreement(res["top_ids_ours"], t.get("top_ids", []))
            lines += [
                "",
                f"Same documents returned: top-{K} ids in common between ours and txtai, mean over the first "
                f"{SAMPLE_QUERIES} queries: **{_f(agree and agree * 100)}%**.",
            ]
        if "conc" in res:
            ours = {r["concurrency"]: PhaseResult(**_phase(r)) for r in res["conc"]}
            lines += [
                "",
                "| concurrency | ours QPS | txtai QPS | QPS ours / txtai | ours p50 ms | txtai p50 ms "
                "| ours p99 ms | txtai p99 ms |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for raw in t["phases"]:
                th = PhaseResult(**_phase(raw))
                o_ = ours.get(th.concurrency)
                if o_ is None:
                    continue
                os_, ts = o_.latency.get("search"), th.latency.get("search")
                lines.append(
                    f"| {th.concurrency} | {_f(o_.qps)} | {_f(th.qps)} | **{_ratio(o_.qps, th.qps)}** | "
                    f"{_f(_p(os_, 'p50_ms'))} | {_f(_p(ts, 'p50_ms'))} | {_f(_p(os_, 'p99_ms'))} | "
                    f"{_f(_p(ts, 'p99_ms'))} |"
                )
    if "soak" in res:
        s = res["soak"]
        r = PhaseResult(**_phase(s["phase"]))
        sl, ul = r.latency.get("search"), r.latency.get("upsert")
        searches = sl.n if sl else 0
        upserts = ul.n if ul else 0
        lines += [
            "",
            f"### Soak: {r.requested:,} requests at concurrency {r.concurrency}, 1 upsert per "
            f"{args.soak_upsert_every}",
            "",
            "| measure | value |",
            "| --- | --- |",
            f"| completed (ok searches + ok upserts) | {r.completed:,} ({searches:,} + {upserts:,})"
            + (" — stopped by the time bound" if r.stopped_by_time else "")
            + " |",
            f"| **errors** | **{sum(r.errors.values())}** ({_errors(r)}) |",
            f"| duration, QPS | {_f(r.elapsed_s)} s, {_f(r.qps)} req/s |",
            f"| search p50 / p99 ms | {_f(_p(sl, 'p50_ms'))} / {_f(_p(sl, 'p99_ms'))} |",
            f"| upsert p50 / p99 ms | {_f(_p(ul, 'p50_ms'))} / {_f(_p(ul, 'p99_ms'))} |",
            f"| server RSS at ready / after warm-up / at end | {_f(s['rss_ready_mb'], 0)} / "
            f"{_f(s['rss_after_warmup_mb'], 0)} / **{_f(s['rss_end_mb'], 0)} MB** |",
            f"| server peak RSS (VmHWM) | {_f(s['hwm_end_mb'], 0)} MB |",
            f"| `/ready` after the soak | {s.get('ready_after')} |",
            f"| last upserted document found by searching its text | {s.get('last_upsert_found')} |",
        ]
    return "\n".join(lines) + "\n"


def _phase(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    out["latency"] = {k: LatencyStats(**v) for k, v in raw["latency"].items()}
    return out


# ----------------------------------------------------------------------------- scenarios


@dataclass
class Ctx:
    args: argparse.Namespace
    coll: Collection
    work: Path
    corpus: Path
    model_dir: Path
    index_dir: Path
    semsearch: Path
    results: dict[str, Any] = field(default_factory=dict)

    def ours_server(self, name: str, index_dir: Path | None = None, **env: str) -> Server:
        port = free_port()
        argv = [
            str(self.semsearch),
            "serve",
            "--index",
            str(index_dir or self.index_dir),
            "--model",
            str(self.model_dir),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ]
        full_env = {**os.environ, "SEMSEARCH_LOG_LEVEL": self.args.server_log_level, **env}
        return Server(name, argv, full_env, port, "/ready", self.work / "logs" / f"{name}.log")

    async def phase(self, server: Server, fn: RequestFn, label: str, concurrency: int) -> PhaseResult:
        a = self.args
        print(f"  {label}: concurrency {concurrency} ...", file=sys.stderr, flush=True)
        r = await run_phase(
            server.url,
            fn,
            label=label,
            concurrency=concurrency,
            requests=a.requests,
            duration_s=a.duration_s,
            warmup=a.warmup,
            timeout_s=a.request_timeout_s,
            server_pid=server.pid,
        )
        s = r.latency.get("search")
        print(
            f"    {r.ok}/{r.completed} ok, {r.qps:.1f} QPS, p50 {s.p50_ms if s else float('nan'):.1f} ms, "
            f"p99 {s.p99_ms if s else float('nan'):.1f} ms, errors {r.errors or 0}",
            file=sys.stderr,
            flush=True,
        )
        return r


async def scenario_conc(ctx: Ctx, levels: list[int]) -> None:
    with ctx.ours_server("ours-default") as srv:
        srv.start(ctx.args.start_timeout_s)
        ctx.results["conc_server"] = {
            "start_s": srv.start_s,
            "rss_ready_mb": rss_mb(srv.pid),
            "ready": srv.ready_body,
        }
        ctx.results["top_ids_ours"] = await top_ids(
            srv.url, ctx.coll.queries[:SAMPLE_QUERIES], False, ctx.args.request_timeout_s
        )
        phases = []
        for c in levels:
            r = await ctx.phase(srv, ours_search(ctx.coll.queries, with_took=c == 1), "ours", c)
            phases.append(asdict(r))
        ctx.results["conc"] = phases


async def scenario_overhead(ctx: Ctx) -> None:
    a = ctx.args
    print("  in-process encode + search ...", file=sys.stderr, flush=True)
    ip = await asyncio.to_thread(
        in_process, ctx.model_dir, ctx.index_dir, ctx.coll.queries, a.requests, a.warmup, a.duration_s
    )
    service: dict[str, Any] | None = next(
        (r for r in ctx.results.get("conc", []) if r["concurrency"] == 1), None
    )
    if service is None:
        with ctx.ours_server("ours-overhead") as srv:
            srv.start(a.start_timeout_s)
            service = asdict(await ctx.phase(srv, ours_search(ctx.coll.queries, with_took=True), "ours", 1))
    ctx.results["overhead"] = {"in_process": ip, "service": service}


async def scenario_batching(ctx: Ctx) -> None:
    c = ctx.args.batching_concurrency
    out: dict[str, Any] = {}
    for name, value in (("on", "true"), ("off", "false")):
        with ctx.ours_server(f"ours-batching-{name}", SEMSEARCH_MICRO_BATCHING=value) as srv:
            srv.start(ctx.args.start_timeout_s)
            out[name] = asdict(
                await ctx.phase(srv, ours_search(ctx.coll.queries), f"micro-batching {value}", c)
            )
            out[f"{name}_ready"] = srv.ready_body
    ctx.results["batching"] = out


async def scenario_txtai(ctx: Ctx, levels: list[int]) -> None:
    a = ctx.args
    venv = Path(a.txtai_venv)
    py, uvicorn = venv / "bin" / "python", venv / "bin" / "uvicorn"
    if not uvicorn.exists():
        raise RuntimeError(f"no txtai venv at {venv}: run `bash benchmarks/setup_txtai.sh {venv}` first")
    index_dir = ctx.work / "txtai-index"
    template = Template((REPO / "benchmarks" / "txtai_app.yml").read_text())
    config = ctx.work / "txtai_app.yml"
    config.write_text(template.substitute(TXTAI_INDEX_DIR=str(index_dir), MODEL_DIR=str(ctx.model_dir)))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("VIRTUAL_ENV", None)
    settings = "\n".join(x for x in config.read_text().splitlines() if x.strip() and not x.startswith("#"))
    stamp = build_stamp(
        hashlib.sha256(ctx.corpus.read_bytes()).hexdigest() + hashlib.sha256(settings.encode()).hexdigest(),
        ctx.model_dir,
        "txtai",
    )
    build_s = ensure_built(
        index_dir,
        stamp,
        [
            str(py),
            str(REPO / "benchmarks" / "txtai_build_index.py"),
            "--config",
            str(config),
            "--corpus",
            str(ctx.corpus),
        ],
        env,
        a.build_timeout_s,
        ctx.work / "logs" / "txtai-build.log",
    )
    port = free_port()
    argv = [
        str(uvicorn),
        "txtai.api:app",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--log-level",
        a.server_log_level,
        "--no-access-log",
    ]
    ready = f"/search?query=ready&limit={K}"
    with Server(
        "txtai", argv, {**env, "CONFIG": str(config)}, port, ready, ctx.work / "logs" / "txtai.log"
    ) as srv:
        srv.start(a.start_timeout_s)
        rss_ready = rss_mb(srv.pid)
        if not isinstance(srv.ready_body, list) or len(srv.ready_body) != min(K, len(ctx.coll.docs)):
            raise RuntimeError(f"txtai's /search answered {str(srv.ready_body)[:300]}")
        ids = await top_ids(srv.url, ctx.coll.queries[:SAMPLE_QUERIES], True, a.request_timeout_s)
        phases = []
        for c in levels:
            phases.append(asdict(await ctx.phase(srv, txtai_search(ctx.coll.queries), "txtai", c)))
        ctx.results["txtai"] = {
            "phases": phases,
            "server": {"start_s": srv.start_s, "rss_ready_mb": rss_ready},
            "build_s": build_s,
            "config": config.read_text(),
            "top_ids": ids,
        }


async def scenario_soak(ctx: Ctx) -> None:
    a = ctx.args
    soak_index = ctx.work / "soak-index"
    if soak_index.exists():
        shutil.rmtree(soak_index)
    shutil.copytree(ctx.index_dir, soak_index)  # upserts must not change the index the others use
    texts = [d["text"] for d in ctx.coll.docs]
    try:
        with ctx.ours_server("ours-soak", soak_index) as srv:
            srv.start(a.start_timeout_s)
            rss_ready = rss_mb(srv.pid)
            fn = soak_mix(ctx.coll.queries, texts, a.soak_upsert_every)
            # Warm-up: searches only, so that the upserts' ids all fall in the measured phase.
            await run_phase(
                srv.url,
                ours_search(ctx.coll.queries),
                label="soak warm-up",
                concurrency=a.soak_concurrency,
                requests=0,
                duration_s=60,
                warmup=a.warmup,
                timeout_s=a.request_timeout_s,
            )
            rss_warm = rss_mb(srv.pid)
            print(
                f"  soak: {a.soak_n} requests at concurrency {a.soak_concurrency} ...",
                file=sys.stderr,
                flush=True,
            )
            r = await run_phase(
                srv.url,
                fn,
                label="soak",
                concurrency=a.soak_concurrency,
                requests=a.soak_n,
                duration_s=a.soak_duration_s,
                warmup=0,
                timeout_s=a.request_timeout_s,
                server_pid=srv.pid,
            )
            print(f"    {r.ok}/{r.completed} ok, {r.qps:.1f} QPS, errors {r.errors or 0}", file=sys.stderr)
            ready_after, found = "?", "?"
            n_upserts = sum(
                1 for i in range(r.completed) if i % a.soak_upsert_every == a.soak_upsert_every - 1
            )
            async with httpx.AsyncClient(base_url=srv.url, timeout=a.request_timeout_s) as client:
                with contextlib.suppress(httpx.HTTPError):
                    ready_after = str((await client.get("/ready")).status_code)
                if n_upserts and not any(k.startswith("upsert:") for k in r.errors):
                    last = n_upserts - 1
                    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                        resp = await client.post("/search", json={"query": soak_text(texts, last), "k": K})
                        ids = [h["id"] for h in resp.json()["hits"]]
                        found = "yes" if f"soak-{last}" in ids else f"no (top ids {ids[:3]})"
            ctx.results["soak"] = {
                "phase": asdict(r),
                "rss_ready_mb": rss_ready,
                "rss_after_warmup_mb": rss_warm,
                "rss_end_mb": rss_mb(srv.pid),
                "hwm_end_mb": hwm_mb(srv.pid),
                "ready_after": ready_after,
                "last_upsert_found": found,
            }
    finally:
        if not a.keep_soak_index:
            shutil.rmtree(soak_index, ignore_errors=True)


# ----------------------------------------------------------------------------- main


def default_semsearch() -> Path:
    for cand in (REPO / ".venv" / "bin" / "semsearch", Path(sys.prefix) / "bin" / "semsearch"):
        if cand.exists():
            return cand
    found = shutil.which("semsearch")
    return Path(found) if found else REPO / ".venv" / "bin" / "semsearch"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="the ir-classic folder (or its parent)")
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/svc-bench"))
    ap.add_argument("--txtai-venv", default=os.environ.get("TXTAI_VENV", "/tmp/txtai-venv"))
    ap.add_argument("--semsearch", type=Path, default=None, help="our CLI (default: the repo's .venv)")
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the packaged MiniLM)")
    ap.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {','.join(SCENARIOS)}"
    )
    ap.add_argument("--concurrency", default="1,8,32,64", help="levels of the conc and txtai scenarios")
    ap.add_argument("--requests", type=int, default=2000, help="requests per phase (after warm-up)")
    ap.add_argument("--duration-s", type=float, default=60.0, help="time bound per phase")
    ap.add_argument(
        "--warmup", type=int, default=10, help="warm-up requests per phase (at least concurrency)"
    )
    ap.add_argument(
        "--docs", type=int, default=0, help="repeat the corpus with fresh ids up to N docs (0: as is)"
    )
    ap.add_argument("--batching-concurrency", type=int, default=32)
    ap.add_argument("--soak-n", type=int, default=10_000)
    ap.add_argument("--soak-concurrency", type=int, default=64)
    ap.add_argument("--soak-upsert-every", type=int, default=50, help="one PUT /documents per N requests")
    ap.add_argument("--soak-duration-s", type=float, default=1200.0)
    ap.add_argument("--keep-soak-index", action="store_true")
    ap.add_argument("--request-timeout-s", type=float, default=30.0)
    ap.add_argument("--start-timeout-s", type=float, default=180.0)
    ap.add_argument("--build-timeout-s", type=float, default=1800.0)
    ap.add_argument("--server-log-level", default="warning", help="both servers' log level (no access log)")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    bad = set(args.scenarios.split(",")) - set(SCENARIOS)
    if bad:
        ap.error(f"unknown scenario(s) {sorted(bad)}; choose from {SCENARIOS}")
    if args.requests < 1 or args.duration_s <= 0 or args.soak_n < 0:
        ap.error("--requests must be >= 1, --duration-s > 0 and --soak-n >= 0")
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    from core.defaults import default_model_dir

    scenarios = [s for s in SCENARIOS if s in args.scenarios.split(",")]
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    work: Path = args.work_dir.expanduser().resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit(f"--work-dir {work} is inside the repository; use a folder outside it")
    (work / "logs").mkdir(parents=True, exist_ok=True)
    model_dir = (args.model or default_model_dir()).resolve()
    semsearch = args.semsearch or default_semsearch()
    txtai_py = Path(args.txtai_venv) / "bin" / "python" if "txtai" in scenarios else None

    coll = load_collection(args.data, args.docs)
    corpus = work / "corpus.jsonl"
    corpus_sha = write_corpus(coll, corpus)
    index_dir = work / "ours-index"
    ours_build_s = ensure_built(
        index_dir,
        build_stamp(corpus_sha, model_dir, "ours-flat"),
        [
            str(semsearch),
            "index",
            "build",
            "--corpus",
            str(corpus),
            "--output",
            str(index_dir),
            "--model",
            str(model_dir),
            "--index-type",
            "flat",
            "--no-progress",
        ],
        dict(os.environ),
        args.build_timeout_s,
        work / "logs" / "ours-build.log",
    )
    ctx = Ctx(args, coll, work, corpus, model_dir, index_dir, semsearch)
    ctx.results["machine"] = machine_info(txtai_py)
    ctx.results["corpus"] = {
        "documents": len(coll.docs),
        "queries": len(coll.queries),
        "sha256": corpus_sha,
        "ours_build_s": ours_build_s,
        "model_dir": str(model_dir),
    }
    ctx.results["args"] = {k: str(v) for k, v in vars(args).items()}
    for name in scenarios:
        print(f"scenario {name}", file=sys.stderr, flush=True)
        try:
            if name == "conc":
                await scenario_conc(ctx, levels)
            elif name == "overhead":
                await scenario_overhead(ctx)
            elif name == "batching":
                await scenario_batching(ctx)
            elif name == "txtai":
                await scenario_txtai(ctx, levels)
            elif name == "soak":
                await scenario_soak(ctx)
        except RuntimeError as exc:  # a server that did not start, a failed build: go on with the rest
            print(f"scenario {name} failed: {exc}", file=sys.stderr, flush=True)
            ctx.results.setdefault("failed", {})[name] = str(exc)
    ctx.results["machine"]["loadavg_end"] = os.getloadavg()
    return ctx.results


def iter_failures(results: dict[str, Any]) -> Iterator[str]:
    for name, why in results.get("failed", {}).items():
        yield f"- scenario `{name}` failed: {why.splitlines()[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(amain(args))
    md = markdown(results, args)
    failures = list(iter_failures(results))
    if failures:
        md += "\n" + "\n".join(failures) + "\n"
    print(md)
    (args.work_dir / "results.md").write_text(md)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
