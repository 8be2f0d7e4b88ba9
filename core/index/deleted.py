"""Deleted int ids that searches must skip, with the FAISS selector that skips them.

One object per generation, shared by every search of it: its selector is built once, on first
use, and FAISS only reads it, so concurrent searches need no lock past that first build.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

import faiss
import numpy as np

_BITMAP_MAX_ID = 1 << 34  # a bitmap selector up to 2 GiB of ids; past that a hash set


class HasIds(Protocol):
    def ids(self) -> np.ndarray: ...


class Deleted:
    """Sorted unique int ids whose documents are deleted but whose vectors may still sit in a
    segment. Its FAISS selector (NOT in a bitmap: one bit test per candidate, whatever the number
    of deleted ids) is built once, on first use, and then shared by every search."""

    def __init__(self, ids: np.ndarray | None = None) -> None:
        self.ids = np.unique(np.asarray(ids if ids is not None else [], dtype=np.int64))
        self._lock = threading.Lock()
        self._selector: Any = None
        self._keep: list[Any] = []  # SWIG does not own what the selector points at
        # binary segments: their excluded row numbers, per segment (weakly: a merged-away segment
        # goes, and a new one never inherits its entry through a reused id())
        self._rows: weakref.WeakKeyDictionary[Any, Deleted] = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self.ids)

    def union(self, more: np.ndarray) -> Deleted:
        if not len(more):
            return self
        return Deleted(np.concatenate([self.ids, np.asarray(more, dtype=np.int64)]))

    def selector(self) -> Any:
        """A FAISS selector of the ids NOT deleted (None when none is)."""
        if not len(self.ids):
            return None
        with self._lock:
            if self._selector is None:
                top = int(self.ids[-1])
                inner: Any
                if int(self.ids[0]) >= 0 and top < _BITMAP_MAX_ID:
                    bits = np.zeros(top // 8 + 1, dtype=np.uint8)
                    np.bitwise_or.at(bits, self.ids >> 3, (1 << (self.ids & 7)).astype(np.uint8))
                    inner = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
                    self._keep = [bits, inner]
                else:
                    inner = faiss.IDSelectorBatch(self.ids)
                    self._keep = [inner]
                self._selector = faiss.IDSelectorNot(inner)
            return self._selector

    def rows_in(self, segment: HasIds) -> Deleted:
        """Row numbers of ``segment``'s deleted vectors (a binary segment searches by row), kept
        with their own shared selector."""
        with self._lock:
            rows = self._rows.get(segment)
            if rows is None:
                rows = Deleted(np.flatnonzero(np.isin(segment.ids(), self.ids)))
                self._rows[segment] = rows
            return rows
