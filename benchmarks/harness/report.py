"""Markdown cells and rows for BENCHMARKS.md tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.stats import LatencyStats, PhaseResult


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or x != x else f"{x:,.{digits}f}"


def lat(stats: LatencyStats | None, name: str) -> float | None:
    return None if stats is None else float(getattr(stats, name))


def errors_cell(r: PhaseResult) -> str:
    if not r.errors:
        return "0"
    return ", ".join(f"{k} ×{v}" for k, v in sorted(r.errors.items()))


def phase_row(r: PhaseResult, kind: str = "search") -> str:
    s = r.latency.get(kind)
    bound = " (time bound)" if r.stopped_by_time else ""
    return (
        f"| {r.concurrency} | {r.ok:,}/{r.completed:,}{bound} | **{fmt(r.qps)}** | {fmt(lat(s, 'p50_ms'))} | "
        f"{fmt(lat(s, 'p95_ms'))} | {fmt(lat(s, 'p99_ms'))} | {fmt(lat(s, 'max_ms'))} | {errors_cell(r)} | "
        f"{fmt(r.server_cpu_ms_per_req)} | {fmt(r.client_cpu_share and r.client_cpu_share * 100, 0)}% |"
    )


PHASE_HEAD = (
    "| concurrency | ok / completed | QPS | p50 ms | p95 ms | p99 ms | max ms | errors | "
    "server CPU ms/req | client CPU |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def loads(values: Sequence[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or a != a or b != b:
        return "–"
    return f"{a / b:.2f}×"


def phase_from_dict(raw: dict[str, Any]) -> PhaseResult:
    """A phase read back from the results' JSON form (``dataclasses.asdict``)."""
    latency = {k: LatencyStats(**v) for k, v in raw["latency"].items()}
    return PhaseResult(**{**raw, "latency": latency})
