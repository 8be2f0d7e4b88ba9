"""MEDLINE + ADI (``ir-classic``, SMART format) as a JSONL corpus and a query list."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.smart import read_smart


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
