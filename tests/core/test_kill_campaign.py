"""The kill campaign (benchmarks/kill_campaign.py): a writer process killed with SIGKILL at random
moments, compactions included; after each kill every acknowledged write is there, the batch in
flight is whole or absent, and the store, the vectors and the counts agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "kill_campaign.py"


@pytest.mark.slow
@pytest.mark.parametrize(("index_type", "kills"), [("flat", 20), ("hnsw", 8)])
def test_no_acknowledged_write_is_lost_across_kills(tmp_path: Path, index_type: str, kills: int) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--kills",
            str(kills),
            "--index-type",
            index_type,
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(run.stdout)
    assert run.returncode == 0, result["problems"]
    assert result["writes_lost"] == 0 and result["kills"] == kills
    assert result["batches_acknowledged"] > kills  # the writer got going between the kills
    assert result["kills_during_compaction"] >= 1
