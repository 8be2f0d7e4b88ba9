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

Scenarios, one script each: ``load_conc.py`` (``POST /search`` at each ``--concurrency``
level), ``load_overhead.py`` (the service against in-process encode + search),
``load_batching.py`` (micro-batching on and off), ``load_txtai.py`` (txtai's API under the same
load) and ``load_soak.py`` (searches with upserts); each script's docstring says what it
measures. Each runs alone with this script's flags; this script runs several in one go, so that
their figures, and the ratios between them, come from the same run. Every server is a
subprocess bound to 127.0.0.1 on a free port, started, waited on (``GET /ready`` for ours) with
a bounded timeout, loaded, then terminated. The shared parts are in ``harness/``.

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
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import load_batching
import load_conc
import load_overhead
import load_soak
import load_txtai
from harness.ir_corpus import load_collection, write_corpus
from harness.load import K
from harness.machine import machine_info
from harness.report import loads
from harness.scenario import Ctx
from harness.server_process import REPO, build_stamp, default_semsearch, ensure_built

# In the order they run: txtai's report compares against conc's phases of the same run.
SCENARIOS: dict[str, Any] = {
    "conc": load_conc,
    "overhead": load_overhead,
    "batching": load_batching,
    "txtai": load_txtai,
    "soak": load_soak,
}


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
        + f"; commit {m.get('git', '?')}. Load average at start {loads(m['loadavg_start'])}"
        + (f", at end {loads(m['loadavg_end'])}" if "loadavg_end" in m else "")
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
    for name in SCENARIOS:
        if name in res:
            lines += SCENARIOS[name].report(res, args)
    return "\n".join(lines) + "\n"


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
        ap.error(f"unknown scenario(s) {sorted(bad)}; choose from {', '.join(SCENARIOS)}")
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
            if name in ("conc", "txtai"):
                await SCENARIOS[name].run(ctx, levels)
            else:
                await SCENARIOS[name].run(ctx)
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
