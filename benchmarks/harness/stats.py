"""Latency statistics: the one percentile every benchmark reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
