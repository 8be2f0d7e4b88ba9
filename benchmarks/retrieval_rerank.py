"""Retrieval quality with and without the cross-encoder: BM25, dense, hybrid, dense + rerank and
hybrid + rerank on MEDLINE and ADI, one table (nDCG@10, Recall@100, MRR@10 by pytrec_eval).

    .venv/bin/python benchmarks/retrieval_rerank.py --data ../shared/data --reranker CE_DIR \\
        [--weights 1.0,0.5] [--rerank-k 50] [--work-dir /tmp/retrieval-bench] [--json out.json]

Each collection is indexed from its SMART ``.ALL`` file (``semsearch index build --index-type
flat``, ids = the ``.I`` ids the judgments use), once per work dir. ``--weights``: the
cross-encoder's share in the fused score (``core.cross_encoder.fuse_scores``; 1.0 = its order
alone); every weight gets its own rerank rows. The weights are compared on every collection at
once, so a weight picked from this table is picked on the test queries: pick it on other data
(the README of the reranker recipe says how) and report that one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.cross_encoder import CrossEncoder
from core.defaults import default_model_dir
from core.encoder import Encoder
from core.index.folder import IndexFolder
from evaluation.retrieval import evaluate, read_qrels, read_queries

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = {"MEDLINE": ("med", "MED"), "ADI": ("adi", "ADI")}


def _index(data: Path, folder: str, stem: str, work: Path, model: str) -> Path:
    out = work / f"{stem.lower()}-index"
    if not (out / "manifest.json").is_file():
        corpus = data / "ir-classic" / folder / f"{stem}.ALL"
        cmd = [str(Path(sys.executable).parent / "semsearch"), "index", "build", "--corpus", str(corpus)]
        cmd += ["--output", str(out), "--index-type", "flat", "--model", model]
        subprocess.run(cmd, check=True, cwd=REPO)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--reranker", required=True)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--weights", default="1.0")
    ap.add_argument("--rerank-k", type=int, default=50)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/retrieval-bench"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    args.work_dir.mkdir(parents=True, exist_ok=True)
    encoder = Encoder.load(args.model, args.device)
    reranker = CrossEncoder.load(args.reranker, args.device)
    reranker.to_precision("auto")
    rows: list[dict[str, Any]] = []
    for name, (folder_name, stem) in COLLECTIONS.items():
        base = args.data / "ir-classic" / folder_name
        queries, qrels = read_queries(base / f"{stem}.QRY"), read_qrels(base / f"{stem}.REL")
        folder = IndexFolder.open(_index(args.data, folder_name, stem, args.work_dir, args.model))
        try:
            runs: list[tuple[str, dict[str, Any]]] = [
                (mode, {"mode": mode}) for mode in ("bm25", "dense", "hybrid")
            ]
            for mode in ("dense", "hybrid"):
                for w in weights:
                    runs.append(
                        (
                            f"{mode} + rerank (w {w:g})",
                            {"mode": mode, "reranker": reranker, "rerank_weight": w},
                        )
                    )
            for label, kw in runs:
                report = evaluate(
                    folder,
                    encoder,
                    queries,
                    qrels,
                    rerank_k=args.rerank_k,
                    **kw,
                )
                rows.append({"collection": name, "run": label, **report.means, "queries": report.queries})
                print(
                    f"{name} {label}: " + "  ".join(f"{k} {v:.4f}" for k, v in report.means.items()),
                    flush=True,
                )
        finally:
            folder.close()
    print("\n| collection | run | nDCG@10 | Recall@100 | MRR@10 |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        cells = [r["collection"], r["run"], *(f"{r[m]:.4f}" for m in ("ndcg@10", "recall@100", "mrr@10"))]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(
            json.dumps({"reranker": args.reranker, "rerank_k": args.rerank_k, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
