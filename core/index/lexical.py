"""BM25 over an index folder's documents (bm25s's tokenizer, core.index.bm25's scorer), and its
fusion with dense search.

A :class:`LexicalIndex` is built from the live rows of one generation of ``docs.sqlite``; it is
in memory only, so it can never disagree with the documents it was built from. Fusion has two
modes:

- ``convex`` (the default): ``alpha * dense + (1 - alpha) * bm25``, each min-max normalised over
  the candidates, ``alpha`` ``core.fusion_names.DEFAULT_ALPHA`` unless given. Candidates found by
  only one side get their true score on the other side (the dense score from the stored vector, the BM25 score
  from the full score vector), not a made-up zero;
- ``rrf``: reciprocal rank fusion, ``sum 1 / (60 + rank)`` over the dense and BM25 rankings.

The default was measured, not guessed (benchmarks/retrieval_quality.py, BENCHMARKS.md): chosen on
ADI among RRF (k 1-100, weighted or not) and convex combinations after min-max, z-score or
theoretical-min-max normalisation, it is also the best on MEDLINE, where it was not chosen:
nDCG@10 0.8003 against RRF's 0.7946 and dense's 0.7875 (ADI: 0.5422, 0.5235, 0.4896).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import bm25s
import numpy as np

from core.errors import InvalidInputError
from core.fusion_names import DEFAULT_ALPHA, FUSIONS
from core.index.bm25 import Postings, TermStats
from core.index.doc_store import DocStore
from core.index.lexical_parts import LexicalPart, settle

log = logging.getLogger(__name__)
RRF_K = 60
# A new generation's BM25 is built from scratch, not from the previous one's parts, when more
# than this share of its documents is new (tokenising them is then most of a full build).
REBUILD_SHARE = 0.5
STOPWORDS = "en"
# Words as bm25s's default pattern finds them (two or more word characters), except that every
# CJK ideograph is a token of its own, as BERT's Chinese models and Lucene's CJK analysers
# (unigrams) treat them: the default pattern would take a whole unspaced Chinese sentence for one
# word. Text without CJK characters is tokenised exactly as before.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN_PATTERN = rf"(?u)[{_CJK}]|(?:(?![{_CJK}])\w){{2,}}"


def _stemmer() -> Any:
    try:
        import Stemmer  # PyStemmer: optional, a small C extension

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover - BM25 still works, a little worse on inflections
        return None


@dataclass
class Ranked:
    iids: np.ndarray  # int64, best first
    scores: np.ndarray  # float32
    # BM25's order among equal scores (tie_keys): merging shards' lists orders ties by it too
    ties: np.ndarray | None = None
    # BM25 only: the query's score for every row of the index it came from, so that fusion reads
    # the candidates' scores from it instead of scoring the whole index a second time. Never
    # sent between processes (a shard's part drops it: core.index.folder.hybrid_part).
    full: np.ndarray | None = None


def tie_keys(doc_ids: Sequence[str]) -> np.ndarray:
    """A key per document that orders equal BM25 scores the same way however the index is laid
    out (one folder or shards, whose int ids differ): a hash of the external id."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(d.encode("utf-8"), digest_size=8).digest(), "big") >> 1
            for d in doc_ids
        ],
        dtype=np.int64,
    )


class LexicalIndex:
    """BM25 over one generation's documents: bm25s's tokenizer (its stemmer and stop words, our
    token pattern) and core.index.bm25's scorer, which scores with the statistics it is given:
    a shard's searches pass the whole index's (core.index.sharded_folder).

    It is made of parts (core.index.lexical_parts): the next generation's index reuses this one's
    and tokenises only the documents added since (:meth:`build` with ``previous``). Rows are the
    parts' rows one after the other; a deleted document's row scores 0 until a merge drops it."""

    def __init__(self, parts: Sequence[LexicalPart], stemmer: Any) -> None:
        self.parts = tuple(parts)
        self.stemmer = stemmer
        self.iids = _concat([p.iids for p in self.parts])  # row -> our int id
        self.ties = _concat([p.ties for p in self.parts])  # row -> tie key (tie_keys; else the int id)
        self._order = np.argsort(self.iids, kind="stable")  # for int id -> row lookups
        self._sorted = self.iids[self._order]

    @classmethod
    def build(cls, store: DocStore, previous: LexicalIndex | None = None) -> LexicalIndex:
        """From every document live at the store's pinned generation; with ``previous`` (an index
        of another generation of the same store), from its parts plus the documents added since,
        which are the only ones tokenised, unless most of the corpus changed."""
        if previous is not None:
            updated = previous._updated(store)
            if updated is not None:
                return updated
        iids: list[int] = []
        texts: list[str] = []
        doc_ids: list[str] = []
        for batch in store.iter_live():
            for iid, doc in batch:
                iids.append(iid)
                texts.append(doc.text)
                doc_ids.append(doc.id)
        return cls.from_texts(iids, texts, doc_ids)

    def _updated(self, store: DocStore) -> LexicalIndex | None:
        """This index brought to ``store``'s generation, or None where a full build is as cheap."""
        live = store.live_iid_array()
        held = np.sort(_concat([p.live_iids() for p in self.parts]))
        dead = np.setdiff1d(held, live, assume_unique=True)
        added = np.setdiff1d(live, held, assume_unique=True)
        if len(added) > REBUILD_SHARE * max(1, len(live)):
            return None
        docs = store.get_many(added.tolist())
        if len(docs) != len(added):  # the store changed under its pinned generation: start over
            return None
        new = _part(
            added.tolist(), [docs[int(i)].text for i in added], [docs[int(i)].id for i in added], self.stemmer
        )
        parts = settle([*(p.without(dead) for p in self.parts), new])
        log.info("BM25 index: %d added, %d deleted, %d parts", len(added), len(dead), len(parts))
        return LexicalIndex(parts, self.stemmer)

    @classmethod
    def from_texts(
        cls, iids: Sequence[int], texts: Sequence[str], doc_ids: Sequence[str] | None = None
    ) -> LexicalIndex:
        """Over ``texts``, searched results named by ``iids``; ``doc_ids`` (the external ids)
        order tied scores as every layout of the same documents does."""
        stemmer = _stemmer()
        log.info("BM25 index over %d documents", len(texts))
        return cls(settle([_part(iids, texts, doc_ids, stemmer)]) if texts else (), stemmer)

    @property
    def count(self) -> int:
        """Rows held, deleted ones included (``docs``: the live ones)."""
        return len(self.iids)

    @property
    def docs(self) -> int:
        return sum(p.docs for p in self.parts)

    def tokens(self, query: str) -> list[str]:
        return _tokenize([query], self.stemmer)[0]

    def stats(self, query: str) -> TermStats:
        """This index's share of the statistics ``query`` is scored with."""
        return self._stats(self.tokens(query))

    def _stats(self, tokens: Sequence[str]) -> TermStats:
        return sum((p.postings.stats(tokens) for p in self.parts), TermStats(df={t: 0 for t in tokens}))

    def _scores(self, query: str, stats: TermStats | None) -> np.ndarray:
        """Every row's score: each part scored with the whole index's statistics (or ``stats``)."""
        tokens = self.tokens(query)
        stats = stats or self._stats(tokens)
        return _concat([p.postings.scores(tokens, stats) for p in self.parts], np.float32)

    def rows_of(self, iids: np.ndarray) -> np.ndarray:
        """The row of each int id, -1 for ids this index does not hold."""
        iids = np.asarray(iids, dtype=np.int64)
        if not self.count:
            return np.full(len(iids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted, iids), self.count - 1)
        return np.where(self._sorted[at] == iids, self._order[at], -1)

    def search(
        self,
        queries: Sequence[str],
        k: int,
        allowed: np.ndarray | None = None,
        stats: TermStats | None = None,
    ) -> list[Ranked]:
        """Top-k documents by BM25 per query, only those with a positive score (sharing a term).
        ``allowed``: int ids a filter lets through (None: all). ``stats``: the corpus statistics
        to score with (one query only; default: this index's own)."""
        if stats is not None and len(queries) != 1:
            raise ValueError("stats are one query's")
        out = []
        mask = None
        if allowed is not None:
            mask = np.zeros(self.count, dtype=bool)
            rows = self.rows_of(np.asarray(allowed, dtype=np.int64).reshape(-1))
            mask[rows[rows >= 0]] = True
        for query in queries:
            full = self._scores(query, stats)
            scores = full if mask is None else np.where(mask, full, 0.0).astype(np.float32)
            hits = np.flatnonzero(scores > 0)
            # Best first, equal scores by tie key: the same order in one folder and in shards.
            hits = hits[np.lexsort((self.ties[hits], -scores[hits]))][:k]
            out.append(Ranked(self.iids[hits], scores[hits], self.ties[hits], full))
        return out

    def scores_for(
        self, query: str, iids: np.ndarray, stats: TermStats | None = None, full: np.ndarray | None = None
    ) -> np.ndarray:
        """BM25 scores of ``query`` for the given int ids (0 for ids not indexed); ``full``: the
        query's scores for every row, where a search just computed them (``Ranked.full``)."""
        if self.count == 0:
            return np.zeros(len(iids), dtype=np.float32)
        all_scores = full if full is not None else self._scores(query, stats)
        rows = self.rows_of(iids)
        return np.where(rows >= 0, all_scores[np.maximum(rows, 0)], 0.0).astype(np.float32)


def _concat(arrays: Sequence[np.ndarray], dtype: Any = np.int64) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=dtype)


def _part(
    iids: Sequence[int], texts: Sequence[str], doc_ids: Sequence[str] | None, stemmer: Any
) -> LexicalPart:
    postings = Postings.build(_tokenize(texts, stemmer) if texts else [])
    ids = np.asarray(iids, dtype=np.int64)
    return LexicalPart(ids, postings, tie_keys(doc_ids) if doc_ids is not None else ids)


def _tokenize(texts: Sequence[str], stemmer: Any) -> list[list[str]]:
    out: Any = bm25s.tokenize(
        list(texts),
        token_pattern=TOKEN_PATTERN,
        stopwords=STOPWORDS,
        stemmer=stemmer,
        return_ids=False,
        show_progress=False,
    )
    return [list(tokens) for tokens in out]


class SharedLexical:
    """BM25 for the successive snapshots of one live index, near-real-time.

    A snapshot gets its own BM25 index, built once. Until that build is done, in one background
    thread, its hybrid searches use the newest index built for another generation. That stays
    correct: hits are looked up in the snapshot's own document store, so a document deleted or
    replaced since is never returned through it, and a new one is found by the dense side alone
    until the build lands (a search engine's refresh). A search waits up to ``wait_s`` for its
    generation's build, so a small corpus (whose build takes milliseconds) is always searched
    fresh and a large one never stalls. Builds coalesce: while one runs, later generations
    wait, and only the newest of them is built next. Each build starts from the newest index
    built (:meth:`newest`) and tokenises only the documents written since
    (core.index.lexical_parts), so the lag is that of the write, not of the corpus: a full
    rebuild took 8.5 s for 100k MEDLINE abstracts on 2 cores (BENCHMARKS.md)."""

    def __init__(self, wait_s: float = 0.0) -> None:
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._built = threading.Condition(self._lock)
        self._first = threading.Lock()  # one synchronous first build
        self._latest: tuple[int, LexicalIndex] | None = None
        self._running = False
        self._wanted: tuple[int, Callable[[], LexicalIndex]] | None = None
        self.builds = 0  # finished builds (for tests and logs)

    def for_snapshot(self, generation: int, build: Callable[[], LexicalIndex]) -> tuple[LexicalIndex, bool]:
        """(the BM25 index to search at ``generation``, whether it is that generation's own)."""
        with self._lock:
            latest = self._latest
            if latest is not None:
                if latest[0] == generation:
                    return latest[1], True
                if latest[0] < generation and (self._wanted is None or self._wanted[0] < generation):
                    self._wanted = (generation, build)
                    self._start()
                if latest[0] < generation and self.wait_s > 0:
                    self._built.wait_for(lambda: self._newest() >= generation, self.wait_s)
                    latest = self._latest
                    assert latest is not None
                return latest[1], latest[0] == generation
        with self._first:  # nothing built yet: this search waits for the first build
            with self._lock:
                if self._latest is not None:
                    return self._latest[1], self._latest[0] == generation
            index = build()
            with self._lock:
                self.builds += 1
                if self._latest is None or self._latest[0] < generation:
                    self._latest = (generation, index)
            return index, True

    def _newest(self) -> int:
        return -1 if self._latest is None else self._latest[0]

    def newest(self) -> LexicalIndex | None:
        """The newest index built, which the next generation's is built from."""
        with self._lock:
            return None if self._latest is None else self._latest[1]

    def _start(self) -> None:  # under self._lock
        if self._running or self._wanted is None:
            return
        self._running = True
        generation, build = self._wanted
        self._wanted = None
        threading.Thread(target=self._run, args=(generation, build), name="bm25-build", daemon=True).start()

    def _run(self, generation: int, build: Callable[[], LexicalIndex]) -> None:
        try:
            index: LexicalIndex | None = build()
        except Exception as exc:  # the snapshot was closed meanwhile, say: the next search asks again
            log.warning("BM25 build for generation %d failed: %s", generation, exc)
            index = None
        with self._lock:
            self._running = False
            if index is not None:
                self.builds += 1
                if self._latest is None or self._latest[0] < generation:
                    self._latest = (generation, index)
            if self._wanted is not None and self._latest is not None and self._wanted[0] <= self._latest[0]:
                self._wanted = None
            self._built.notify_all()
            self._start()


class HasLexical(Protocol):
    def lexical(self) -> LexicalIndex: ...


def warm_lexical(folders: Sequence[HasLexical], name: str = "bm25-warm") -> threading.Thread:
    """Build ``folders``' BM25 in a background thread, one after the other: what a server does
    at start when hybrid is its default search, so that the first search does not build it
    inside the request (8.5 s per 100k abstracts on 2 cores, BENCHMARKS.md). A search that comes
    first waits for this build (the folder's lock), never starts a second."""

    def run() -> None:
        for folder in folders:
            try:
                folder.lexical()
            except Exception as exc:  # closed meanwhile, say: the first search builds it
                log.warning("BM25 warm-up failed: %s", exc)
                return

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def check_fusion(fusion: str, alpha: float | None) -> None:
    """A fusion this module knows, and an ``alpha`` only where it weighs something."""
    if fusion not in FUSIONS:
        raise InvalidInputError(f"unknown fusion {fusion!r}; use {' or '.join(FUSIONS)}")
    if fusion == "rrf" and alpha is not None:
        raise InvalidInputError("alpha weighs a convex fusion: rrf takes no alpha")


def fuse(
    dense: np.ndarray,
    bm25: np.ndarray,
    n: int,
    fusion: str,
    alpha: float | None,
    scores_of: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> Ranked:
    """Hybrid search's one fusion of two candidate id lists (each best first): ``rrf`` over their
    ranks, or ``convex`` over their union, ``scores_of(union)`` giving each candidate's (dense,
    BM25) scores. One folder and a sharded index (whose ids are global) both fuse here."""
    if fusion == "rrf":
        return rrf([dense, bm25], n)
    union = np.unique(np.concatenate([dense, bm25]))
    if len(union) == 0:
        return Ranked(union.astype(np.int64), np.empty(0, np.float32))
    d, b = scores_of(union)
    return mix(union, d, b, DEFAULT_ALPHA if alpha is None else alpha, n)


def rrf(rankings: Sequence[np.ndarray], k: int) -> Ranked:
    """Reciprocal rank fusion of int-id rankings (each best first)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, iid in enumerate(ranking.tolist()):
            fused[iid] = fused.get(iid, 0.0) + 1.0 / (RRF_K + rank + 1)
    order = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
    return Ranked(np.array([i for i, _ in order], np.int64), np.array([s for _, s in order], np.float32))


def minmax(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to [0, 1] over its own range (all ones when it has none)."""
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 0 else np.ones_like(x)


def mix(iids: np.ndarray, dense: np.ndarray, lexical: np.ndarray, alpha: float, k: int) -> Ranked:
    """``alpha * dense + (1 - alpha) * bm25`` over candidates, each min-max normalised."""
    fused = alpha * minmax(dense) + (1 - alpha) * minmax(lexical)
    order = np.argsort(-fused, kind="stable")[:k]
    return Ranked(iids[order], fused[order].astype(np.float32))
