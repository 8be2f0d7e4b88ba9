"""Build the txtai index that ``benchmarks/service_load.py`` serves. Runs in txtai's OWN venv.

    /tmp/txtai-venv/bin/python benchmarks/txtai_build_index.py --config CONFIG.yml --corpus corpus.jsonl

``CONFIG.yml`` is ``benchmarks/txtai_app.yml`` with its placeholders filled in: its ``embeddings``
section configures the index and its top-level ``path`` is where the index is saved (and where
txtai's API loads it from). The corpus is the same JSONL as ours: ``{"id", "text", "metadata"}``;
metadata fields are stored beside the text (``content: true``). Prints one JSON line with the
document count and the seconds spent indexing and saving (model load included).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import yaml
from txtai import Embeddings


def documents(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                yield {"id": row["id"], "text": row["text"], **row.get("metadata", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--corpus", required=True)
    args = ap.parse_args()
    with open(args.config, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    embeddings = Embeddings(config["embeddings"])
    docs = list(documents(args.corpus))
    started = time.perf_counter()
    embeddings.index(docs)
    embeddings.save(config["path"])
    seconds = time.perf_counter() - started
    print(json.dumps({"documents": embeddings.count(), "seconds": round(seconds, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
