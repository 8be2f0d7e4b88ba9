"""Relevance training pairs from an unlabelled corpus: pseudo-queries with mined hard negatives.

No judged query is read, so a reranker trained on these pairs can be evaluated on the same
collection's real queries without leakage (the documents are seen, as in any domain adaptation;
the queries and judgments are not). Per document:

- queries: its title (a SMART ``.T`` field, else its first sentence) and ``extra_queries`` random
  other sentences (the inverse cloze task);
- the positive: the document with the query sentence removed, so that matching needs more than
  copying;
- negatives: ``hard_negatives`` documents drawn from BM25's ranks ``skip`` .. ``pool`` for the query
  (the very top is skipped because near-duplicates there are often relevant too) plus
  ``random_negatives`` documents drawn at random (more when BM25 finds too few).

A fraction of the documents (``dev_fraction``) gives the dev pairs. Output: pairs JSONL
(``sentence1``, ``sentence2``, ``label`` 1/0) for ``semsearch train cross-encoder --problem
single_label``.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.corpus import detect_format, read_corpus
from core.durable import replace_file
from core.errors import DataError, InvalidInputError
from core.index.lexical import LexicalIndex
from core.smart import read_smart_records

log = logging.getLogger(__name__)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


@dataclass(kw_only=True)
class PseudoQueryConfig:
    corpus: list[str]
    output: str
    dev_output: str | None = None
    dev_fraction: float = 0.0  # documents whose pairs go to dev_output
    extra_queries: int = 1  # random sentences per document, on top of its title
    hard_negatives: int = 3
    random_negatives: int = 1
    skip: int = 3  # BM25 ranks skipped before hard negatives are drawn
    pool: int = 30  # hard negatives come from BM25 ranks skip .. pool
    min_query_words: int = 4
    max_words: int = 256  # documents are cut here (the model truncates anyway)
    seed: int = 42

    def validate(self) -> None:
        if not self.corpus:
            raise InvalidInputError("give at least one --corpus file")
        if not 0.0 <= self.dev_fraction < 1.0:
            raise InvalidInputError("dev_fraction must be in [0, 1)")
        if self.dev_fraction > 0 and not self.dev_output:
            raise InvalidInputError("dev_fraction > 0 needs a dev output file")
        if min(self.extra_queries, self.hard_negatives, self.random_negatives, self.skip) < 0:
            raise InvalidInputError("query and negative counts must be >= 0")
        if self.pool <= self.skip and self.hard_negatives:
            raise InvalidInputError("pool must be larger than skip")


@dataclass
class SourceDoc:
    id: str
    title: str | None
    body: str


@dataclass
class PseudoPairs:
    train: list[dict[str, Any]] = field(default_factory=list)
    dev: list[dict[str, Any]] = field(default_factory=list)
    documents: int = 0
    queries: int = 0


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def read_documents(path: str | Path) -> Iterator[SourceDoc]:
    """Documents with their title apart when the format has one (SMART ``.T``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "corpus file not found")
    if detect_format(path) == "smart":
        titles = {rid: text for _, rid, text in read_smart_records(path, ("T",))}
        for _, rid, body in read_smart_records(path, ("W",)):
            yield SourceDoc(rid, titles.get(rid) or None, body)
        return
    for row in read_corpus(path):
        yield SourceDoc(row.doc.id, None, row.doc.text)


def _cut(text: str, max_words: int) -> str:
    words = text.split()
    return " ".join(words[:max_words])


def _parts(doc: SourceDoc) -> tuple[str | None, list[str]]:
    """(title, the other sentences): the first sentence stands in for a missing title."""
    sents = sentences(doc.body)
    if doc.title:
        return doc.title, sents
    if len(sents) > 1:
        return sents[0], sents[1:]
    return None, sents


def _queries(doc: SourceDoc, cfg: PseudoQueryConfig, rng: random.Random) -> list[tuple[str, str, str]]:
    """(query, positive text, kind) for one document; kind is "title" or "cloze"."""
    title, sents = _parts(doc)
    out: list[tuple[str, str, str]] = []
    if title and len(title.split()) >= cfg.min_query_words and sents:
        out.append((title, " ".join(sents), "title"))
    usable = [i for i, s in enumerate(sents) if len(s.split()) >= cfg.min_query_words]
    if len(sents) > 1:
        for i in rng.sample(usable, min(cfg.extra_queries, len(usable))):
            rest = [s for j, s in enumerate(sents) if j != i]
            out.append((sents[i], " ".join(filter(None, [title, *rest])), "cloze"))
    return out


def _negative(doc: SourceDoc, kind: str, rng: random.Random) -> str:
    """A negative document treated like the positive (its title, or one sentence, removed), so
    that a missing sentence cannot give the positive away."""
    title, sents = _parts(doc)
    if kind == "title" and title and sents:
        return " ".join(sents)
    if len(sents) > 1:
        drop = rng.randrange(len(sents))
        sents = [s for j, s in enumerate(sents) if j != drop]
    return " ".join(filter(None, [title, *sents]))


def _random_others(n: int, exclude: set[int], k: int, rng: random.Random) -> list[int]:
    """Up to ``k`` distinct indices below ``n`` outside ``exclude``, without listing all n."""
    k = min(k, n - len(exclude))
    out: list[int] = []
    while len(out) < k:
        j = rng.randrange(n)
        if j not in exclude:
            exclude.add(j)
            out.append(j)
    return out


def make_pairs(cfg: PseudoQueryConfig) -> PseudoPairs:
    """All documents are held in memory with a BM25 index over them: for a large corpus, pass a
    sample of it (a few thousand documents make tens of thousands of pairs)."""
    cfg.validate()
    docs: list[SourceDoc] = []
    seen: set[tuple[str, str]] = set()
    for path in cfg.corpus:
        for doc in read_documents(path):
            key = (str(path), doc.id)
            if key in seen:
                raise DataError(path, None, f"duplicate document id {doc.id!r}")
            seen.add(key)
            if doc.body.strip():
                docs.append(doc)
    if len(docs) < 2:
        raise InvalidInputError("need at least 2 non-empty documents to draw negatives from")
    texts = [_cut(" ".join(filter(None, (d.title, d.body))), cfg.max_words) for d in docs]
    lexical = LexicalIndex.from_texts(range(len(docs)), texts)
    rng = random.Random(cfg.seed)
    dev_docs = set(rng.sample(range(len(docs)), round(cfg.dev_fraction * len(docs))))
    out = PseudoPairs(documents=len(docs))
    pending: list[tuple[int, str, str, str]] = []
    for i, doc in enumerate(docs):
        pending.extend((i, *made) for made in _queries(doc, cfg, rng))
    ranked = lexical.search([q for _, q, _, _ in pending], cfg.pool + 1) if cfg.hard_negatives else None
    for n, (i, query, positive, kind) in enumerate(pending):
        rows = out.dev if i in dev_docs else out.train
        rows.append({"sentence1": query, "sentence2": _cut(positive, cfg.max_words), "label": 1})
        hard = [int(j) for j in ranked[n].iids if int(j) != i][cfg.skip : cfg.pool] if ranked else []
        chosen = rng.sample(hard, min(cfg.hard_negatives, len(hard)))
        # BM25 finds only documents sharing a term: random ones make up any shortfall.
        wanted = cfg.random_negatives + cfg.hard_negatives - len(chosen)
        chosen += _random_others(len(docs), {i, *chosen}, wanted, rng)
        rows.extend(
            {"sentence1": query, "sentence2": _cut(_negative(docs[j], kind, rng), cfg.max_words), "label": 0}
            for j in chosen
        )
    out.queries = len(pending)
    return out


def write_pairs(rows: list[dict[str, Any]], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    replace_file(tmp, path)  # all or nothing: a killed run leaves the old file or the new one


def generate(cfg: PseudoQueryConfig) -> PseudoPairs:
    """Make the pairs and write them (train, then dev)."""
    pairs = make_pairs(cfg)
    write_pairs(pairs.train, cfg.output)
    if cfg.dev_output:
        write_pairs(pairs.dev, cfg.dev_output)
    log.info(
        "%d documents -> %d pseudo-queries -> %d train / %d dev pairs",
        pairs.documents,
        pairs.queries,
        len(pairs.train),
        len(pairs.dev),
    )
    return pairs
