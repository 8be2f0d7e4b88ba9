"""The benchmarks' shared harness: one percentile for every table, and results that read back."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
from harness.report import phase_from_dict, phase_row
from harness.stats import LatencyStats, PhaseResult, percentile


def test_percentile_is_numpys_linear_interpolation() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 100):
        values = list(rng.exponential(10.0, n))
        for q in (0, 50, 90, 99, 100):
            assert np.isclose(percentile(values, q), np.percentile(values, q)), (n, q)
    assert np.isnan(percentile([], 50))


def test_a_phase_reads_back_from_its_json_form() -> None:
    phase = PhaseResult(
        label="ours",
        concurrency=8,
        requested=10,
        completed=10,
        ok=9,
        elapsed_s=1.0,
        qps=9.0,
        stopped_by_time=False,
        errors={"search:503": 1},
        latency={"search": LatencyStats.of([0.01] * 9)},
    )
    again = phase_from_dict(json.loads(json.dumps(asdict(phase))))
    assert again == phase
    assert "| 8 | 9/10 | **9.0** | 10.0 |" in phase_row(again) and "search:503 ×1" in phase_row(again)
