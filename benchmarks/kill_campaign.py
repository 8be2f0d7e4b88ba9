"""Kill campaign: a writer process streams acknowledged upserts and deletes into an index folder,
compacting now and then; it is killed with SIGKILL at random moments (some of them while a
compaction runs), restarted, and after every kill the folder is checked by a fresh reader:

- every acknowledged write is present (an upsert's documents, with their own vectors; a delete's
  absence);
- the one batch in flight at the kill is wholly visible or wholly absent, never half;
- nothing later is visible; the store, the vectors and the counts agree (the reader's own checks
  at open, plus a search by each batch's vectors).

Batch n upserts ``b<n>-0`` .. ``b<n>-9`` (metadata ``{"batch": n}``) and deletes ``b<n-5>-0`` ..
``b<n-5>-4``. The writer prints ``ACK n`` only after batch n committed: a line the campaign read
is an acknowledged write. Prints one JSON object with the figures; exits 1 if a write was lost.

    python benchmarks/kill_campaign.py [--kills 20] [--index-type flat] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 32
BASE = 1_000
PER_BATCH = 10
DELETE_LAG = 5  # batch n deletes half of batch n - DELETE_LAG
COMPACT_EVERY = 12  # batches


def vectors(batch: int) -> np.ndarray:
    v = np.random.default_rng(1_000_003 * batch + 7).standard_normal((PER_BATCH, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build(out: Path, index_type: str) -> None:
    from core.index.doc_store import Document
    from core.index.manifest import Manifest
    from core.index.vectors import plan_index
    from core.index.writer import IndexWriter

    plan = plan_index(index_type, BASE, DIM)
    manifest = Manifest(model_fingerprint="k" * 64, dim=DIM, normalized=True, count=0, max_seq_length=16)
    manifest.index_type, manifest.search_params = index_type, plan.search_params or {}
    base = np.random.default_rng(0).standard_normal((BASE, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    with IndexWriter(out, manifest, plan.factory) as writer:
        if plan.train_size:
            writer.vectors.train(base[: plan.train_size])
        writer.add([Document(f"base-{i}", "base") for i in range(BASE)], base)
        writer.commit()


def child(folder: Path, start: int) -> None:
    """The writer: batches from ``start`` on, forever (until killed)."""
    from core.index.compaction import prepare
    from core.index.doc_store import Document
    from core.index.mutable import MutableIndex

    batch = start
    while True:
        with MutableIndex(folder, seal=False) as index:
            docs = [
                Document(f"b{batch}-{j}", f"doc {j} of batch {batch}", {"batch": batch})
                for j in range(PER_BATCH)
            ]
            index.upsert(docs, vectors(batch), commit=False)
            if batch >= DELETE_LAG:
                index.delete([f"b{batch - DELETE_LAG}-{j}" for j in range(PER_BATCH // 2)], commit=False)
            index.commit()
        print(f"ACK {batch}", flush=True)
        if batch % COMPACT_EVERY == COMPACT_EVERY - 1:
            print("COMPACT", flush=True)
            with MutableIndex(folder, seal=False) as index:
                snapshot = index.snapshot()
            new = prepare(snapshot, full=batch % (2 * COMPACT_EVERY) == 2 * COMPACT_EVERY - 1)
            snapshot.close()
            with MutableIndex(folder, seal=False) as index:
                index.install_base(new)
            print("COMPACTED", flush=True)
        batch += 1


def expected_present(doc: str, committed: int) -> bool:
    """Whether document ``b<n>-<j>`` is live once batches 0..committed have committed."""
    n, j = (int(x) for x in doc[1:].split("-"))
    if n > committed:
        return False
    return not (j < PER_BATCH // 2 and n + DELETE_LAG <= committed)


def check(folder_path: Path, acked: int, in_flight_max: int) -> tuple[int, list[str]]:
    """The newest committed batch (``acked`` or, if it landed whole, one past it) and the
    problems found."""
    from core.index.folder import IndexFolder

    problems: list[str] = []
    folder = IndexFolder.open(folder_path)  # a fresh reader: no writer recovery first
    try:
        committed = acked
        nxt = acked + 1
        if nxt <= in_flight_max:
            seen = [folder.get(f"b{nxt}-{j}") is not None for j in range(PER_BATCH)]
            if any(seen) and not all(seen):
                problems.append(f"batch {nxt} is half visible ({sum(seen)} of {PER_BATCH})")
            if all(seen):
                committed = nxt
            gone = nxt >= DELETE_LAG and all(
                folder.get(f"b{nxt - DELETE_LAG}-{j}") is None for j in range(PER_BATCH // 2)
            )
            if nxt >= DELETE_LAG and all(seen) != gone:
                problems.append(f"batch {nxt}'s upserts and deletes are not visible together")
        for n in range(0, committed + 3):
            for j in range(PER_BATCH):
                doc = f"b{n}-{j}"
                want = expected_present(doc, committed)
                got = folder.get(doc)
                if want and got is None:
                    problems.append(f"{doc} acknowledged but missing")
                elif not want and got is not None:
                    problems.append(f"{doc} visible but it should not be")
            if n <= committed:
                hits = folder.search(vectors(n), 1, params={"ef_search": 256, "nprobe": 64})
                for j, row in enumerate(hits):
                    if expected_present(f"b{n}-{j}", committed) and (not row or row[0].id != f"b{n}-{j}"):
                        problems.append(f"b{n}-{j}: its own vector does not find it")
        live = BASE + sum(
            expected_present(f"b{n}-{j}", committed) for n in range(committed + 1) for j in range(PER_BATCH)
        )
        if folder.count != live:
            problems.append(f"count {folder.count}, expected {live}")
    finally:
        folder.close()
    return committed, problems


def campaign(kills: int, index_type: str, seed: int, work: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    folder = work / "idx"
    build(folder, index_type)
    committed, acked_total, lost, during_compaction, problems = -1, 0, 0, 0, []
    started = time.monotonic()
    for kill in range(kills):
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(folder), "--start", str(committed + 1)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        aim_compaction = kill % 3 == 2  # a third of the kills wait for a compaction to start
        deadline = time.monotonic() + rng.uniform(0.3, 2.5)
        acked, compacting, ready = committed, False, False
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if ready and not aim_compaction else 30.0
            r, _, _ = select.select([proc.stdout], [], [], timeout)
            if not r:
                break  # the random moment came
            line = proc.stdout.readline()
            if not line:
                break  # the child died on its own: counted as a problem below
            if line.startswith("ACK "):
                acked, ready = int(line.split()[1]), True
            elif line.startswith("COMPACT"):
                compacting = line.strip() == "COMPACT"
                if aim_compaction and compacting:
                    time.sleep(rng.uniform(0.0, 0.05))
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for line in proc.stdout.read().splitlines():  # acknowledged before the kill, read only now
            if line.startswith("ACK "):
                acked = int(line.split()[1])
            elif line.startswith("COMPACT"):
                compacting = line.strip() == "COMPACT"
        proc.stdout.close()
        if proc.returncode != -signal.SIGKILL:
            problems.append(f"kill {kill}: the writer exited with {proc.returncode} before the kill")
        during_compaction += compacting
        acked_total += max(0, acked - committed)
        committed, found = check(folder, acked, acked + 1)
        lost += sum("acknowledged but missing" in p for p in found)
        problems += [f"kill {kill}: {p}" for p in found]
    return {
        "kills": kills,
        "kills_during_compaction": during_compaction,
        "index_type": index_type,
        "batches_acknowledged": acked_total,
        "writes_acknowledged": acked_total * (PER_BATCH + PER_BATCH // 2),
        "writes_lost": lost,
        "problems": problems[:20],
        "seconds": round(time.monotonic() - started, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--index-type", default="flat")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.start)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = campaign(args.kills, args.index_type, args.seed, work)
    print(json.dumps(result, indent=2))
    return 0 if not result["problems"] else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
