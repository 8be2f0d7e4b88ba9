"""BM25's segments: the parts one generation's lexical index is made of, and the policy that
keeps them few.

A write changes a few documents, so rebuilding BM25 over the whole corpus per generation
(tokenising every document again: 8.5 s per 100k abstracts on 2 cores, BENCHMARKS.md) made a new
document wait that long to be found by its words. Instead, as Lucene does with its segments, a
generation's index is the previous one's parts, with the documents deleted since masked out
(:meth:`core.index.bm25.Postings.without`), plus one new part holding only the documents added
since, the only text tokenised. Small trailing parts are then merged, and parts that are mostly
deleted rows rewritten, so that there are O(log n) parts and each document is copied O(log n)
times (the same rule as the vector deltas', core.index.segments). Merging works on postings, not
text, so it never tokenises again.

The parts' statistics add up to the live corpus's (deleted rows count in none), and each part
scores with the whole index's, so an index made of parts scores exactly as one built from the
live documents at once (tested against a rebuild).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.index.bm25 import Postings

# Never more parts than this (each costs a little per query); trailing parts merge with the one
# before once they hold at least half as many live documents.
MAX_PARTS = 12
# A part whose rows are more than this share deleted is rewritten without them.
MAX_DEAD_SHARE = 0.5


@dataclass(frozen=True)
class LexicalPart:
    """Documents' postings, named by int ids (``iids``, one per row) and tie keys (``ties``)."""

    iids: np.ndarray  # int64
    postings: Postings
    ties: np.ndarray  # int64

    @property
    def rows(self) -> int:
        return len(self.iids)

    @property
    def docs(self) -> int:
        return self.postings.docs

    def live_iids(self) -> np.ndarray:
        live = self.postings.live
        return self.iids if live is None else self.iids[live]

    def without(self, dead: np.ndarray) -> LexicalPart:
        """This part with the documents among ``dead`` (int ids, sorted) deleted."""
        rows = np.flatnonzero(np.isin(self.iids, dead, assume_unique=True))
        return self if not len(rows) else LexicalPart(self.iids, self.postings.without(rows), self.ties)

    @classmethod
    def merge(cls, parts: Sequence[LexicalPart]) -> LexicalPart:
        """The live documents of ``parts`` as one part, in the same order."""
        keeps = [p.postings.live if p.postings.live is not None else slice(None) for p in parts]
        return cls(
            np.concatenate([p.iids[k] for p, k in zip(parts, keeps, strict=True)]),
            Postings.merge([p.postings for p in parts]),
            np.concatenate([p.ties[k] for p, k in zip(parts, keeps, strict=True)]),
        )


def settle(parts: Sequence[LexicalPart]) -> tuple[LexicalPart, ...]:
    """``parts`` after a generation's changes, merged as the module docstring says: empty parts
    dropped, mostly deleted ones rewritten, small trailing ones merged."""
    out: list[LexicalPart] = []
    for part in parts:
        if part.docs == 0:
            continue
        if part.rows - part.docs > MAX_DEAD_SHARE * part.rows:
            part = LexicalPart.merge([part])
        out.append(part)
        while len(out) > 1 and (2 * out[-1].docs >= out[-2].docs or len(out) > MAX_PARTS):
            tail = out.pop()
            out[-1] = LexicalPart.merge([out[-1], tail])
    return tuple(out)
