"""Durable files and folders: the one write protocol every writer follows (index builds and
updates, training checkpoints, generated data).

- A file is written to a temporary name, fsynced, renamed over its final name, and the folder
  fsynced (:func:`replace_file`): a reader sees the old file or the new one, never half of one.
- A folder is written into a hidden staging folder beside its final path (:func:`staging_dir`),
  fsynced, and swapped into place (:func:`publish`). When the output already exists,
  ``renameat2(RENAME_EXCHANGE)`` swaps them, so the path always holds a complete folder (old or
  new) with no instant where it is missing; where the kernel or libc lacks it, two renames.
- A full disk, however it shows up, becomes one error (:func:`as_disk_full`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

from core.errors import DiskFullError

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NEARLY_FULL_BYTES = 1 << 20  # under 1 MiB free: an I/O error while writing is the disk filling
# How a full disk reads when it does not come as an OSError: SQLite's SQLITE_FULL, and FAISS's
# C++ writer, whose fwrite failure is a RuntimeError carrying strerror's text.
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _nearly_full(folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL_BYTES


def as_disk_full(
    exc: BaseException, what: str = "the write", folder: Path | None = None
) -> DiskFullError | None:
    """``exc`` as a :class:`DiskFullError` when it (or its cause) is the disk or quota running
    out, else None. One place for the ways a full disk shows up, for every writer. SQLite in WAL
    mode reports a full disk as SQLITE_FULL, or as an I/O error (SQLITE_IOERR_SHMSIZE, _WRITE,
    _FSYNC, ...) when the shared-memory or WAL file cannot grow: an I/O error counts as a full
    disk when ``folder``'s file system is (nearly) out of space."""
    seen: BaseException | None = exc
    for _ in range(5):  # the exception and its causes
        if seen is None:
            break
        if isinstance(seen, DiskFullError):
            return seen
        full = isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS
        if not full and isinstance(seen, sqlite3.Error | RuntimeError | OSError):
            full = any(text in str(seen).lower() for text in _FULL_TEXTS)
        if not full and isinstance(seen, sqlite3.Error):
            name = str(getattr(seen, "sqlite_errorname", ""))
            full = name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and _nearly_full(folder))
        if full:
            return DiskFullError(
                f"{what} failed: the disk is full (nothing of it was published; free space and retry)"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def staging_dir(output: Path) -> Path:
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.parent / f".{output.name}.staging-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(folder)


def _exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def publish(staging: Path, output: Path) -> None:
    """Make ``staging`` visible at ``output`` in one step; the previous content is removed."""
    output = output.resolve()
    fsync_tree(staging)
    if output.exists():
        if _exchange(staging, output):
            # ``staging`` now holds the previous index: move it off that name at once, so that a
            # crash before it is deleted cannot leave it where a resumed build would look.
            old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(staging, old)
            fsync_path(output.parent)
            shutil.rmtree(old, ignore_errors=True)
            return
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(output, old)
        os.rename(staging, output)
        fsync_path(output.parent)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.rename(staging, output)
    fsync_path(output.parent)


def replace_file(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final`` and fsync the folder: all or nothing."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)
