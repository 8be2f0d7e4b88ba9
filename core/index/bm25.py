"""BM25 scoring over term postings, with the corpus statistics passed in when they are not the
index's own.

bm25s stores each (term, document) pair's final score, which bakes in the corpus's document
frequencies and mean length. A sharded index needs the whole corpus's statistics, not each
shard's, for its BM25 to rank as one index does (Elasticsearch's ``dfs_query_then_fetch``): so
this keeps term frequencies and document lengths, and scores a query from the statistics it is
given, by default its own. The formula and constants are bm25s's defaults (Lucene's variant,
k1 1.5, b 0.75), so that one index scores as bm25s scored it (tested to 1e-5):

    score(d, q) = sum over q's terms t (repeats included) of
                  idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * len(d) / mean_len))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

Tokenising is not this module's: core.index.lexical tokenises with bm25s's tokenizer, stemmer
and stop words, and hands over token lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

K1 = 1.5
B = 0.75


@dataclass
class TermStats:
    """What a score needs of the corpus: its size, its total length and the query terms'
    document frequencies. Shards' statistics add up to the whole corpus's."""

    docs: int = 0
    length: int = 0
    df: dict[str, int] = field(default_factory=dict)

    def __add__(self, other: TermStats) -> TermStats:
        df = dict(self.df)
        for term, n in other.df.items():
            df[term] = df.get(term, 0) + n
        return TermStats(self.docs + other.docs, self.length + other.length, df)


class Postings:
    """Term -> (document rows, term frequencies), compressed by term (CSC), and document lengths.

    ``live`` (one bool per row, None: all) marks the rows still in the corpus: a deleted
    document's row stays until a merge (:meth:`merge`) drops it, as Lucene keeps deleted
    documents in a segment, but unlike Lucene it counts in no statistic and scores 0, so that
    postings with deleted rows score exactly as postings built from the live documents alone.
    Everything is immutable: :meth:`without` shares the arrays and makes a new mask."""

    def __init__(
        self,
        vocab: dict[str, int],
        indptr: np.ndarray,
        rows: np.ndarray,
        tf: np.ndarray,
        lengths: np.ndarray,
        live: np.ndarray | None = None,
    ) -> None:
        self.vocab = vocab
        self.indptr = indptr  # int64, len(vocab) + 1
        self.rows = rows  # int32, grouped by term
        self.tf = tf  # float32
        self.lengths = lengths  # float32, one per document
        self.live = None if live is None or bool(live.all()) else live
        self.docs = len(lengths) if self.live is None else int(self.live.sum())
        self.length = int(lengths.sum() if self.live is None else lengths[self.live].sum())

    @classmethod
    def build(cls, docs: Sequence[Sequence[str]]) -> Postings:
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        doc_rows: list[int] = []
        lengths = np.zeros(len(docs), dtype=np.float32)
        for row, tokens in enumerate(docs):
            lengths[row] = len(tokens)
            for token in tokens:
                term_ids.append(vocab.setdefault(token, len(vocab)))
            doc_rows.extend([row] * len(tokens))
        terms = np.asarray(term_ids, dtype=np.int64)
        rows = np.asarray(doc_rows, dtype=np.int64)
        # One (term, document) pair per key; counting the keys gives each pair's frequency.
        keys, tf = np.unique(terms * max(1, len(docs)) + rows, return_counts=True)
        pair_terms, pair_rows = np.divmod(keys, max(1, len(docs)))
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.add.at(indptr, pair_terms + 1, 1)
        return cls(vocab, np.cumsum(indptr), pair_rows.astype(np.int32), tf.astype(np.float32), lengths)

    @classmethod
    def merge(cls, parts: Sequence[Postings]) -> Postings:
        """The live rows of ``parts``, in order (each part's after the one before), as one set of
        postings: what building them from those documents' tokens gives, without the tokens."""
        vocab: dict[str, int] = {}
        terms, rows, tfs, lengths = [], [], [], []
        offset = 0
        for part in parts:
            to_merged = np.array([vocab.setdefault(t, len(vocab)) for t in part.vocab], dtype=np.int64)
            term_of = np.repeat(to_merged, np.diff(part.indptr)) if len(to_merged) else np.empty(0, np.int64)
            keep = np.ones(part.count, dtype=bool) if part.live is None else part.live
            new_row = np.cumsum(keep) - 1 + offset  # a live row's place in the merged postings
            kept = keep[part.rows]
            terms.append(term_of[kept])
            rows.append(new_row[part.rows[kept]])
            tfs.append(part.tf[kept])
            lengths.append(part.lengths[keep])
            offset += int(keep.sum())
        term = np.concatenate(terms) if terms else np.empty(0, np.int64)
        row = np.concatenate(rows) if rows else np.empty(0, np.int64)
        order = np.lexsort((row, term))  # grouped by term, rows ascending within a term
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.bincount(term, minlength=len(vocab)))
        return cls(
            vocab,
            indptr,
            row[order].astype(np.int32),
            (np.concatenate(tfs) if tfs else np.empty(0, np.float32))[order],
            np.concatenate(lengths) if lengths else np.empty(0, np.float32),
        )

    def without(self, rows: np.ndarray) -> Postings:
        """These postings with ``rows`` deleted too (shared arrays, a new mask)."""
        if not len(rows):
            return self
        live = np.ones(self.count, dtype=bool) if self.live is None else self.live.copy()
        live[rows] = False
        return Postings(self.vocab, self.indptr, self.rows, self.tf, self.lengths, live)

    @property
    def count(self) -> int:
        """Rows held, deleted ones included (``docs``: the live ones)."""
        return len(self.lengths)

    def nbytes(self) -> int:
        mask = 0 if self.live is None else self.live.nbytes
        return int(self.indptr.nbytes + self.rows.nbytes + self.tf.nbytes + self.lengths.nbytes + mask)

    def stats(self, tokens: Sequence[str]) -> TermStats:
        """This index's statistics for a query's terms (live documents only)."""
        df = {}
        for token in set(tokens):
            tid = self.vocab.get(token)
            if tid is None:
                df[token] = 0
                continue
            start, stop = int(self.indptr[tid]), int(self.indptr[tid + 1])
            live = stop - start if self.live is None else int(self.live[self.rows[start:stop]].sum())
            df[token] = live
        return TermStats(self.docs, self.length, df)

    def scores(self, tokens: Sequence[str], stats: TermStats | None = None) -> np.ndarray:
        """Every document's score for the query ``tokens`` (float32), with ``stats`` (the whole
        corpus's, for a shard) or this index's own."""
        stats = stats or self.stats(tokens)
        out = np.zeros(self.count, dtype=np.float64)
        if not self.count or not stats.docs:
            return out.astype(np.float32)
        mean_len = stats.length / stats.docs
        for token in tokens:
            tid = self.vocab.get(token)
            if tid is None:
                continue
            start, stop = int(self.indptr[tid]), int(self.indptr[tid + 1])
            df = stats.df.get(token, stop - start)
            idf = np.log(1 + (stats.docs - df + 0.5) / (df + 0.5))
            rows, tf = self.rows[start:stop], self.tf[start:stop].astype(np.float64)
            norm = K1 * ((1 - B) + B * self.lengths[rows] / mean_len)
            out[rows] += idf * tf / (tf + norm)  # rows are distinct within one term
        if self.live is not None:
            out[~self.live] = 0.0
        return out.astype(np.float32)
