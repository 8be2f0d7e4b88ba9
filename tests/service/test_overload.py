"""The overload campaign (benchmarks/overload_campaign.py) against a real ``semsearch serve``
process, with small limits so that a short bounded burst is far over capacity: every answer is
200, 429 or 503 with Retry-After, none is dropped, memory stays bounded, and the service answers
normally right after the burst."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overload_campaign.py"


def test_a_burst_over_capacity_gets_only_200_429_or_503_and_recovers(
    tiny_index: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    index = tmp_path / "idx"
    shutil.copytree(tiny_index, index)
    limits = {
        "SEMSEARCH_DEVICE": "cpu",
        "SEMSEARCH_MAX_CONCURRENT_REQUESTS": "12",
        "SEMSEARCH_QUEUE_MAX_INPUTS": "300",
        "SEMSEARCH_QUEUE_TIMEOUT_S": "0.5",
    }
    cmd = [sys.executable, str(SCRIPT), "--index", str(index), "--model", str(tiny_model_dir)]
    cmd += ["--requests", "240", "--concurrency", "32", "--seconds", "90"]
    cmd += [arg for k, v in limits.items() for arg in ("--env", f"{k}={v}")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    figures = json.loads(done.stdout)
    assert done.returncode == 0, (figures["problems"], done.stderr[-2000:])
    statuses = figures["statuses"]
    assert figures["dropped"] == 0 and figures["server_errors_5xx_other_than_503"] == 0
    assert set(statuses) <= {"200", "404", "429", "503"}, statuses  # 404: reads of ids never written
    assert statuses.get("200", 0) > 0 and statuses.get("429", 0) + statuses.get("503", 0) > 0, statuses
    assert figures["sent"] == 240 and figures["server_alive_after"]
    assert figures["recovered_s"] is not None and figures["recovered_s"] < 5
    assert figures["peak_rss_mb"] < 2_000  # the tiny model's server: torch + a small index
