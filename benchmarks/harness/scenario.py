"""What every service-load scenario gets: the run's arguments, corpus, index and model, and a
way to start our server and drive one load phase against it."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ir_corpus import Collection
from harness.load import RequestFn, run_phase
from harness.server_process import LOOPBACK, Server, free_port
from harness.stats import PhaseResult


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
