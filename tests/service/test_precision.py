"""The service's query precision: measured against the index's, shown in /ready and /metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from core.device import int8_supported


def test_ready_and_metrics_show_fp32_and_threads(
    tiny_index: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(tiny_index)
    body: dict[str, Any] = client.get("/ready").json()
    assert body["precision"] == "fp32" and body["threads"] == torch.get_num_threads()
    metrics = client.get("/metrics").text
    assert 'semsearch_encoder_info{device="cpu",drift_vs_fp32="0.00e+00",precision="fp32"' in metrics


@pytest.mark.skipif(not int8_supported(torch.device("cpu")), reason="no int8 on this CPU")
def test_query_precision_other_than_the_index_is_measured(
    tiny_index: Path, make_client: Callable[..., TestClient]
) -> None:
    client = make_client(tiny_index, precision="int8", max_precision_drift=0.5)
    body = client.get("/ready").json()
    assert body["precision"] == "int8"
    quality = body["precision_quality"]
    assert quality["against"] == "fp32" and quality["texts"] == 32  # the index's own documents
    assert 0.5 < quality["mean_cosine_vs_against"] <= 1.0 + 1e-6
    assert 'precision="int8"' in client.get("/metrics").text
    hits = client.post("/search", json={"query": "cat", "k": 3}).json()["hits"]
    assert len(hits) == 3
