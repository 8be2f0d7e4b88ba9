"""One writer per index folder, and the debris a killed writer leaves.

Builds, ``index add/delete/compact`` and the service's online writes all take
:func:`writer_lock`; under it, staging and swapped-out folders beside the index, and temporary or
unnamed files inside it, are removed (:func:`sweep_debris`, :func:`sweep_files`). How a folder or
a file is made durable is core.durable's.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.errors import IndexBusyError

_STALE_NEW_S = 3600  # a ``.new`` temp this old was left by a killed process


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
