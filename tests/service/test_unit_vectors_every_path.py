"""A model folder without a Normalize module, through every write path: `index build`,
`index add`, `PUT /documents` with text and with a given vector. The manifest says
``normalized``, so every stored vector must have norm 1 whatever the encoder returned, or inner
product search stops being cosine for some documents and not others."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from core.encoder import Encoder
from core.index.folder import IndexFolder
from core.model_folder import ST_NORMALIZE
from indexer.build import BuildConfig, build_index
from indexer.update import add_corpus


def _without_normalize(model_dir: Path, out: Path) -> Path:
    shutil.copytree(model_dir, out)
    modules = json.loads((out / "modules.json").read_text())
    kept = [m for m in modules if m["type"] != ST_NORMALIZE]
    assert len(kept) < len(modules), "the fixture model normalises; this test needs it not to"
    (out / "modules.json").write_text(json.dumps(kept))
    return out


def _stored_norms(index: Path, ids: list[str]) -> np.ndarray:
    folder = IndexFolder.open(index)
    try:
        iids = folder.store.live_iids(ids)
        assert set(iids) == set(ids), f"missing: {set(ids) - set(iids)}"
        vectors = folder.segments.reconstruct(np.array([iids[i] for i in ids], dtype=np.int64))
        return np.linalg.norm(vectors.astype(np.float64), axis=1)
    finally:
        folder.close()


def test_every_write_path_stores_unit_vectors_from_a_non_normalising_model(
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_docs: list[dict[str, Any]],
    jsonl_writer: Callable[..., Path],
    make_client: Callable[..., TestClient],
) -> None:
    raw_dir = _without_normalize(tiny_model_dir, tmp_path / "raw-model")
    raw = Encoder.load(raw_dir, device="cpu")
    assert not raw.normalize
    raw_norms = np.linalg.norm(raw.encode([d["text"] for d in tiny_docs[:8]]), axis=1)
    assert np.abs(raw_norms - 1).max() > 0.01, "the raw model's vectors are not unit already"

    index = tmp_path / "idx"
    corpus = jsonl_writer(tmp_path / "built.jsonl", tiny_docs[:10])
    build_index(
        BuildConfig(model=str(raw_dir), corpus=str(corpus), output=str(index), progress=False), encoder=raw
    )
    added = jsonl_writer(tmp_path / "added.jsonl", tiny_docs[10:14])
    add_corpus(index, added, str(raw_dir), device="cpu")

    client = make_client(index, model_dir=raw_dir)
    r = client.put("/documents", json={"documents": [{"id": "put-text", "text": tiny_docs[20]["text"]}]})
    assert r.status_code == 200, r.text
    vector = (3.0 * np.ones(raw.dim) / np.sqrt(raw.dim)).tolist()  # norm 3
    r = client.put("/documents", json={"documents": [{"id": "put-vec", "text": "given", "vector": vector}]})
    assert r.status_code == 200, r.text
    client.__exit__(None, None, None)

    ids = [d["id"] for d in tiny_docs[:14]] + ["put-text", "put-vec"]
    norms = _stored_norms(index, ids)
    assert np.allclose(norms, 1.0, atol=1e-4), dict(zip(ids, norms.round(4).tolist(), strict=True))
