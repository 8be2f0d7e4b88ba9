"""IVF indexes whose inverted lists live on disk (``semsearch index build --on-disk``).

Such a folder holds ``index.faiss`` (the trained quantizer and each list's size and offset) and
``index.ivfdata`` (the lists themselves: codes and int64 ids), written by
``faiss.contrib.ondisk.merge_ondisk`` at build time (``indexer/ondisk_merge.py``). At search time the
ivfdata file is mmapped read-only, so the vectors stay on disk and only the lists a query probes
are paged in.

FAISS stores the ivfdata file's *name* inside ``index.faiss``; the build stores a bare file name
and :func:`read_on_disk` resolves it inside the folder being opened, so a folder that is
published by rename, moved or copied keeps working. (``faiss.IO_FLAG_ONDISK_SAME_DIR`` does the
same re-pointing, but prints a line to the process's C stdout on every load, which would corrupt
``index stats --json`` and the service's output; hence the explicit re-pointing here.)

The mapping is read-only: FAISS would abort the whole process (an exception inside an OpenMP
region) if vectors were added to it, so every mutation is refused first with
:func:`refuse_if_on_disk`. In-place updates (``index add/delete/compact``, the service's
``PUT``/``DELETE /documents``) are not supported on such an index: rebuild it instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss

from core.errors import ConflictError, IndexFormatError

IVFDATA_FILE = "index.ivfdata"
# faiss's bundled stubs lag its SWIG classes: reach these through getattr.
_ONDISK_LISTS: Any = getattr(faiss, "OnDiskInvertedLists")  # noqa: B009
_READ_FLAGS: int = getattr(faiss, "IO_FLAG_SKIP_IVF_DATA") | getattr(faiss, "IO_FLAG_READ_ONLY")  # noqa: B009


def on_disk_lists(index: Any) -> Any:
    """The ``OnDiskInvertedLists`` of an IVF ``index`` (bare or inside a wrapper), else None."""
    if isinstance(index, faiss.IndexBinary):
        return None
    ivf = getattr(faiss, "try_extract_index_ivf")(index)  # noqa: B009
    if ivf is None:
        return None
    lists = getattr(faiss, "downcast_InvertedLists")(ivf.invlists)  # noqa: B009
    return lists if isinstance(lists, _ONDISK_LISTS) else None


def refusal(folder: Path | str, ivfdata: str | None = IVFDATA_FILE) -> str:
    """The message every in-place update of an on-disk index gets."""
    return (
        f"{folder}: this index keeps its IVF lists on disk ({ivfdata}, built with --on-disk) and "
        "cannot be updated in place (index add / delete / compact, online document writes); "
        "rebuild it from the updated corpus with `semsearch index build --on-disk`, or build it "
        "without --on-disk to allow in-place updates"
    )


def refuse_if_on_disk(index: Any, what: str) -> None:
    if on_disk_lists(index) is not None:
        raise ConflictError(
            f"cannot {what} an index whose IVF lists are on disk (built with --on-disk): they are "
            "mapped read-only; rebuild the index instead"
        )


def read_on_disk(index_path: Path, ivfdata: Path, expected_bytes: int | None = None) -> Any:
    """Read ``index_path`` and attach its inverted lists from ``ivfdata``, mmapped read-only.
    A missing, truncated or mismatched ivfdata file is an :class:`IndexFormatError`; a file
    shorter than the lists would otherwise crash the process (SIGBUS) on the first search."""
    if not ivfdata.is_file():
        raise IndexFormatError(f"{ivfdata}: missing (the on-disk IVF lists of {index_path.name})")
    size = ivfdata.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        raise IndexFormatError(
            f"{ivfdata}: {size} bytes but manifest.json says {expected_bytes}; "
            "the file is truncated or corrupt"
        )
    try:
        index = faiss.read_index(str(index_path), _READ_FLAGS)
    except (RuntimeError, MemoryError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise IndexFormatError(f"{index_path}: not a readable FAISS index ({first})") from exc
    lists = on_disk_lists(index)
    if lists is None:
        raise IndexFormatError(f"{index_path}: manifest.json says on-disk IVF lists, but the file has none")
    if size < int(lists.totsize):
        raise IndexFormatError(
            f"{ivfdata}: {size} bytes but the index needs {int(lists.totsize)}; the file is truncated"
        )
    lists.filename = str(ivfdata.resolve())  # resolved here, never the path written at build time
    try:
        lists.do_mmap()
    except RuntimeError as exc:
        raise IndexFormatError(f"{ivfdata}: cannot map the on-disk IVF lists ({exc})") from exc
    return index
