"""Atomic publish of an index folder.

A build writes into a hidden staging folder beside the output, fsyncs it, and then swaps it
into place. When the output already exists we use ``renameat2(RENAME_EXCHANGE)`` so the path
always holds a complete index (old or new) with no instant where it is missing; where the
kernel or libc lacks it we fall back to two renames.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import DiskFullError, IndexBusyError

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NEARLY_FULL_BYTES = 1 << 20  # under 1 MiB free: an I/O error while writing is the disk filling
# How a full disk reads when it does not come as an OSError: SQLite's SQLITE_FULL, and FAISS's
# C++ writer, whose fwrite failure is a RuntimeError carrying strerror's text.
_FULL_TEXTS = ("database or disk is full", "no space left on device", "disk quota exceeded")

_STALE_NEW_S = 3600  # a ``.new`` temp this old was left by a killed process
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


def work_dir(output: Path, kind: str) -> Path:
    """A deterministic hidden folder beside ``output`` (a resumable build's work folder)."""
    output = output.resolve()
    return output.parent / f".{output.name}.{kind}"


@contextmanager
def writer_lock(output: Path) -> Iterator[None]:
    """One writer per index at a time, across processes: builds, ``add``/``delete``/``compact``
    and the service's online updates all take this lock (released by the kernel on kill -9)."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.parent / f".{output.name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexBusyError(f"{output}: another writer is updating this index (lock {path})") from exc
        sweep_debris(output)
        yield
    finally:
        os.close(fd)


def sweep_debris(output: Path) -> list[str]:
    """Remove staging and swapped-out folders that a killed writer left beside ``output``.
    Only writers make them, and the caller holds the writer lock, so none is in use. A build's
    ``.NAME.building`` folder is kept: it is what a resumed build continues from."""
    removed = []
    for pattern in (f".{output.name}.staging-*", f".{output.name}.old-*"):
        for path in output.parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


class HeldTemp:
    """A temporary file ``.NAME.<random>.tmp`` in ``folder``, flock-held until :meth:`release`
    (a compaction's new base, written outside the writer lock and installed later under it):
    :func:`sweep_files` removes only temps that no live process holds."""

    def __init__(self, folder: Path, name: str) -> None:
        token = uuid.uuid4().hex[:8]
        self.path = folder / f".{name}.{token}.tmp"
        # Locked under a name the sweep does not look at, then renamed (the lock stays with the
        # open file): a sweep can never catch the file between its creation and its lock.
        fresh = folder / f".{name}.{token}.new"
        self._fd: int | None = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.rename(fresh, self.path)

    def release(self) -> None:
        """Stop holding it (after it was renamed into place, or removed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.release()


def sweep_files(folder: Path, keep: set[str]) -> list[str]:
    """Remove what a killed writer left inside an index folder: temps (``.*.tmp``) no process
    holds, and FAISS files (``index*.faiss``) the manifest does not name. The caller holds the
    writer lock; a base file is only ever published under it, so an unnamed one is debris."""
    removed = []
    for path in folder.glob(".*.tmp"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a compaction is writing it
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        removed.append(path.name)
    for path in folder.glob(".*.new"):  # a process killed between a temp's creation and its lock
        try:
            if time.time() - path.stat().st_mtime > _STALE_NEW_S:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        except OSError:
            continue
    for path in folder.glob("index*.faiss"):
        if path.name not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def replace_file(tmp: Path, final: Path) -> None:
    """fsync ``tmp``, rename it over ``final`` and fsync the folder: all or nothing."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)
