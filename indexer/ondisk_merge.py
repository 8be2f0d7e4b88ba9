"""``index build --on-disk``: IVF lists built shard by shard and merged on disk.

For corpora whose vectors do not fit in memory, as ``faiss.contrib.ondisk.merge_ondisk`` is
meant to be used:

1. the IVF / IVF-PQ index is trained on the seeded sample as in any build; then, for each
   embedding shard of the work folder, one shard at a time, an empty copy of it
   (``faiss.clone_index``) gets that shard's vectors with the int ids the in-memory build gives
   them (consecutive, in corpus order) and is written to ``ivf-parts/part-NNNNN.faiss``;
2. ``merge_ondisk`` maps the parts (``IO_FLAG_MMAP``) and concatenates them list by list, in
   shard order, into one ``OnDiskInvertedLists`` file, ``index.ivfdata``, beside ``index.faiss``.
   Each list then holds the same entries in the same order as after the in-memory build's adds,
   so both return the same ids (and, for ``ivf``, the same scores) for the same trained index;
3. the ivfdata name is stored bare in ``index.faiss`` (``core.index.ondisk`` resolves it inside
   the folder that opens it: the folder is published by rename and may be moved or copied),
   and the parts are deleted.

Memory holds one shard's vectors and the trained index; the lists go from the mapped parts to
the mapped ivfdata file through the page cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

from core.index.folder import INDEX_FILE
from core.index.ondisk import IVFDATA_FILE, on_disk_lists
from core.index.vectors import VectorIndex

log = logging.getLogger(__name__)
ON_DISK_TYPES = ("ivf", "ivfpq")
PARTS = "ivf-parts"


def merge_on_disk(trained: VectorIndex, shards: Iterable[tuple[int, np.ndarray]], folder: Path) -> Path:
    """Fill ``trained`` (a trained, empty IVF index) from ``shards`` ((first int id, vectors)
    each) through per-shard indexes merged on disk; write ``folder/index.faiss`` and
    ``folder/index.ivfdata`` and return the latter. ``trained`` then maps the ivfdata file
    read-write: drop it once the files are written."""
    ivf = None if trained.binary else faiss.try_extract_index_ivf(trained.index)
    if ivf is None or not trained.is_trained or trained.count or on_disk_lists(trained.index) is not None:
        raise ValueError("merge_on_disk needs a trained, empty in-memory IVF index")
    parts_dir = folder / PARTS
    shutil.rmtree(parts_dir, ignore_errors=True)  # a killed earlier attempt's parts
    parts_dir.mkdir(parents=True)
    parts: list[str] = []
    for n, (start, arr) in enumerate(shards):
        part = VectorIndex(faiss.clone_index(trained.index), trained.factory)
        part.add(np.arange(start, start + len(arr), dtype=np.int64), np.asarray(arr, dtype=np.float32))
        path = parts_dir / f"part-{n:05d}.faiss"
        part.save(path)
        parts.append(str(path))
        del part  # one shard's vectors in memory at a time
    ivfdata = folder / IVFDATA_FILE
    ivfdata.unlink(missing_ok=True)
    log.info("merging %d IVF parts into %s", len(parts), ivfdata)
    with _c_stdout_to_stderr():
        merge_ondisk(trained.index, parts, str(ivfdata))
    lists = on_disk_lists(trained.index)
    lists.filename = IVFDATA_FILE  # bare: resolved in whatever folder opens the index
    # The direct map made when ``trained`` was wrapped is empty and stale after the lists were
    # replaced: save without one; the loading VectorIndex builds it from the merged lists.
    ivf.set_direct_map_type(getattr(faiss, "DirectMap").NoMap)  # noqa: B009
    trained.save(folder / INDEX_FILE)
    # merge_ondisk keeps the parts mapped (it never frees their lists): their disk space comes
    # back when this process exits.
    shutil.rmtree(parts_dir, ignore_errors=True)
    return ivfdata


@contextlib.contextmanager
def _c_stdout_to_stderr() -> Iterator[None]:
    """FAISS printf()s "resizing <file> to N bytes" while it merges: keep that off stdout, which
    carries the CLI's own output (a build summary, ``--json``)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout to protect
        saved = -1
    try:
        if saved >= 0:
            with contextlib.suppress(OSError):  # no stderr: FAISS's line goes to stdout after all
                os.dup2(2, 1)
        yield
    finally:
        if saved >= 0:
            ctypes.CDLL(None).fflush(None)  # what FAISS buffered goes to stderr, not later to stdout
            os.dup2(saved, 1)
            os.close(saved)
