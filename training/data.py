"""Sentence-pair readers: the generic pairs format plus STS-B, SICK, SNLI line files and LCQMC.

Every reader returns :class:`PairExample` rows carrying their source line, and every bad row
raises :class:`DataError` naming the file and the line, unless ``skip_bad_lines`` is set, in
which case it is recorded in ``skipped`` and reading goes on.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import DataError
from core.textfile import iter_csv_rows, iter_lines

log = logging.getLogger(__name__)
FORMATS = ("auto", "pairs", "stsb", "sick", "snli", "lcqmc", "mrpc")
NLI_LABELS = ("entailment", "neutral", "contradiction")
SICK_SPLITS = ("TRAIN", "TRIAL", "TEST")


@dataclass
class PairExample:
    s1: str
    s2: str
    label: str | None = None  # class name as written in the file (ints become "0", "1", ...)
    score: float | None = None  # similarity, scaled to 0..1 by the reader
    source: str = ""
    line: int = 0


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.startswith("s1."):
        return "snli"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "pairs"
    first = next((t for _, t in iter_lines(path) if isinstance(t, str) and t.strip()), "")
    cols = first.split("\t")
    if "sentence_A" in cols and "sentence_B" in cols:
        return "sick"
    if cols[0].lstrip("\ufeff").strip() == "Quality" and "#1 String" in cols:
        return "mrpc"
    header = [c.strip().lower() for c in (cols if "\t" in first else next(csv.reader([first])))]
    if "sentence1" in header and "sentence2" in header:
        return "pairs"
    if len(cols) >= 7 and _is_float(cols[4]):
        return "stsb"
    if len(cols) == 3 and (cols[2].strip().lstrip("-").isdigit() or cols[2].strip() in NLI_LABELS):
        return "lcqmc"  # s1<TAB>s2<TAB>label: LCQMC, AFQMC, and the Chinese NLI sets' text labels
    if len(cols) == 4 and cols[0].lstrip("\ufeff").strip().isdigit() and cols[3].strip().isdigit():
        return "lcqmc"  # id<TAB>s1<TAB>s2<TAB>label: ATEC's raw release
    raise DataError(path, 1, "cannot tell the pair format; pass --format pairs|stsb|sick|snli|lcqmc|mrpc")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _clean(s1: str, s2: str, path: Path, line: int) -> tuple[str, str]:
    # A byte-order mark inside a field is debris of files concatenated (ATEC's raw release has
    # one before its first sentence): never text, and a token of its own to a tokenizer.
    s1, s2 = s1.replace("\ufeff", "").strip(), s2.replace("\ufeff", "").strip()
    if not s1 or not s2:
        raise DataError(path, line, "empty sentence")
    return s1, s2


def _tab_file(
    path: Path,
    parse: Callable[[int, list[str]], PairExample],
    header: Callable[[list[str]], bool] | None = None,
) -> Iterator[PairExample | DataError]:
    """Non-blank lines split on tabs only (quote marks stay raw) through ``parse``; a line that
    does not decode or parse yields its :class:`DataError` in place of the pair. A first line
    that ``header`` recognises is skipped."""
    for line, text in iter_lines(path):
        if isinstance(text, DataError):
            yield text
        elif line == 1 and header is not None and header(text.split("\t")):
            continue
        elif text.strip():
            try:
                yield parse(line, text.split("\t"))
            except DataError as err:
                yield err


def _stsb(path: Path) -> Iterator[PairExample | DataError]:
    """No header, raw quote marks, sometimes extra columns: score, s1, s2 are columns 4, 5, 6."""

    def parse(line: int, cols: list[str]) -> PairExample:
        if len(cols) < 7:
            raise DataError(path, line, f"expected at least 7 tab-separated columns, got {len(cols)}")
        if not _is_float(cols[4]):
            raise DataError(path, line, f"score {cols[4]!r} is not a number")
        score = float(cols[4])
        if not 0.0 <= score <= 5.0:
            raise DataError(path, line, f"score {score} is outside 0..5")
        s1, s2 = _clean(cols[5], cols[6], path, line)
        return PairExample(s1, s2, None, score / 5.0, str(path), line)

    return _tab_file(path, parse)


def _sick(path: Path, split: str | None) -> Iterator[PairExample | DataError]:
    if split is not None and split.upper() not in SICK_SPLITS:
        raise DataError(path, None, f"unknown SICK split {split!r}; use one of {', '.join(SICK_SPLITS)}")
    rows = iter_lines(path)
    first = next(rows, (1, ""))[1]
    if isinstance(first, DataError):
        raise first
    header = first.split("\t")
    need = ("sentence_A", "sentence_B", "entailment_label", "relatedness_score")
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(path, 1, f"SICK header lacks {', '.join(missing)}")
    col = {name: header.index(name) for name in header}
    for line, text in rows:
        if isinstance(text, DataError):
            yield text
            continue
        if not text.strip():
            continue
        cols = text.split("\t")
        try:
            if len(cols) != len(header):
                raise DataError(path, line, f"expected {len(header)} columns, got {len(cols)}")
            if (
                split is not None
                and "SemEval_set" in col
                and cols[col["SemEval_set"]].upper() != split.upper()
            ):
                continue
            if not _is_float(cols[col["relatedness_score"]]):
                raise DataError(path, line, "relatedness_score is not a number")
            score = (float(cols[col["relatedness_score"]]) - 1.0) / 4.0  # 1..5 -> 0..1
            s1, s2 = _clean(cols[col["sentence_A"]], cols[col["sentence_B"]], path, line)
            yield PairExample(s1, s2, cols[col["entailment_label"]].strip().lower(), score, str(path), line)
        except DataError as err:
            yield err


def _snli(path: Path) -> Iterator[PairExample | DataError]:
    """InferSent line files: ``s1.<split>``, ``s2.<split>``, ``labels.<split>``, line-aligned."""
    suffix = path.name[len("s1.") :]
    s2_path, labels_path = path.with_name(f"s2.{suffix}"), path.with_name(f"labels.{suffix}")
    for p in (s2_path, labels_path):
        if not p.is_file():
            raise DataError(p, None, "missing: SNLI line files come as s1.X, s2.X and labels.X side by side")
    for (line, a), (_, b), (_, label) in zip(
        iter_lines(path), iter_lines(s2_path), iter_lines(labels_path), strict=False
    ):
        bad = next((x for x in (a, b, label) if isinstance(x, DataError)), None)
        if bad is not None:
            yield bad
            continue
        assert isinstance(a, str) and isinstance(b, str) and isinstance(label, str)
        try:
            s1, s2 = _clean(a, b, path, line)
            label = label.strip()
            if not label or label == "-":
                raise DataError(labels_path, line, "no gold label")
            yield PairExample(s1, s2, label, None, str(path), line)
        except DataError as err:
            yield err


def _lcqmc(path: Path) -> Iterator[PairExample | DataError]:
    def parse(line: int, cols: list[str]) -> PairExample:
        if len(cols) == 4 and cols[0].lstrip("\ufeff").strip().isdigit():
            cols = cols[1:]  # ATEC's raw release numbers its rows first
        if len(cols) != 3:
            raise DataError(path, line, f"expected s1<TAB>s2<TAB>label, got {len(cols)} columns")
        s1, s2 = _clean(cols[0], cols[1], path, line)
        label = cols[2].strip()
        if not label:
            raise DataError(path, line, "empty label")
        return PairExample(s1, s2, label, None, str(path), line)

    return _tab_file(path, parse)


def _mrpc(path: Path) -> Iterator[PairExample | DataError]:
    """The MSR Paraphrase Corpus: a header, then Quality, #1 ID, #2 ID, #1 String, #2 String."""

    def parse(line: int, cols: list[str]) -> PairExample:
        if len(cols) != 5:
            raise DataError(path, line, f"expected 5 tab-separated columns, got {len(cols)}")
        label = cols[0].strip()
        if label not in ("0", "1"):
            raise DataError(path, line, f"Quality must be 0 or 1, got {label!r}")
        s1, s2 = _clean(cols[3], cols[4], path, line)
        return PairExample(s1, s2, label, None, str(path), line)

    return _tab_file(path, parse, header=lambda cols: cols[0].lstrip("\ufeff").strip() == "Quality")


def _record(obj: dict[str, Any], path: Path, line: int) -> PairExample:
    s1, s2 = obj.get("sentence1"), obj.get("sentence2")
    if not isinstance(s1, str) or not isinstance(s2, str):
        raise DataError(path, line, "sentence1 and sentence2 must be strings")
    s1, s2 = _clean(s1, s2, path, line)
    label, score = obj.get("label"), obj.get("score")
    if label in (None, "") and score in (None, ""):
        raise DataError(path, line, "needs a 'label' or a 'score'")
    if score not in (None, ""):
        if isinstance(score, bool) or not _is_float(str(score)):
            raise DataError(path, line, f"score {score!r} is not a number")
        score = float(score)
    else:
        score = None
    return PairExample(s1, s2, None if label in (None, "") else str(label), score, str(path), line)


def _pairs(path: Path) -> Iterator[PairExample | DataError]:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for line, text in iter_lines(path):
            if isinstance(text, DataError):
                yield text
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise DataError(path, line, "expected a JSON object")
                yield _record(obj, path, line)
            except json.JSONDecodeError as exc:
                yield DataError(path, line, f"invalid JSON ({exc.msg})")
            except DataError as err:
                yield err
        return
    rows = iter_csv_rows(path, "," if path.suffix.lower() == ".csv" else "\t")
    first = next(rows, None)
    if first is None or isinstance(first[1], DataError):
        raise first[1] if first and isinstance(first[1], DataError) else DataError(path, 1, "empty file")
    header = [c.strip().lower() for c in first[1]]
    if "sentence1" not in header or "sentence2" not in header:
        raise DataError(
            path, first[0], f"header must name sentence1, sentence2 and label or score; got {header}"
        )
    for start, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            if len(row) != len(header):
                raise DataError(path, start, f"expected {len(header)} fields, got {len(row)}")
            yield _record(dict(zip(header, row, strict=True)), path, start)
        except DataError as err:
            yield err


def read_pairs(
    path: str | Path,
    fmt: str = "auto",
    split: str | None = None,
    skip_bad_lines: bool = False,
    skipped: list[DataError] | None = None,
) -> list[PairExample]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    if fmt not in FORMATS:
        raise DataError(path, None, f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    kind = detect_format(path) if fmt == "auto" else fmt
    rows: Iterator[PairExample | DataError]
    if kind == "stsb":
        rows = _stsb(path)
    elif kind == "sick":
        rows = _sick(path, split)
    elif kind == "snli":
        rows = _snli(path)
    elif kind == "lcqmc":
        rows = _lcqmc(path)
    elif kind == "mrpc":
        rows = _mrpc(path)
    else:
        rows = _pairs(path)
    out: list[PairExample] = []
    for row in rows:
        if isinstance(row, DataError):
            if not skip_bad_lines:
                raise row
            if skipped is not None:
                skipped.append(row)
            continue
        out.append(row)
    if not out:
        raise DataError(path, None, "no usable pairs" + (f" in split {split}" if split else ""))
    return out


def build_label_map(examples: list[PairExample]) -> dict[str, int]:
    """Class name -> id. Integer labels keep their value; names are numbered in sorted order
    (so NLI gets contradiction=0, entailment=1, neutral=2, as sentence-transformers' examples)."""
    names = sorted({e.label for e in examples if e.label is not None})
    if names and all(n.lstrip("-").isdigit() for n in names):
        return {n: int(n) for n in sorted(names, key=int)}
    return {n: i for i, n in enumerate(names)}


def encode_labels(examples: list[PairExample], label_map: dict[str, int]) -> list[int]:
    out = []
    for e in examples:
        if e.label is None:
            raise DataError(e.source, e.line, "this objective needs a label on every pair")
        if e.label not in label_map:
            raise DataError(
                e.source, e.line, f"label {e.label!r} is not in the label map {sorted(label_map)}"
            )
        out.append(label_map[e.label])
    return out


def load_pair_data(cfg: Any) -> tuple[list[PairExample], list[PairExample] | None, list[DataError]]:
    """(train, dev, skipped rows) for a pair trainer's config (``training.loop.PairRunConfig``);
    records the skipped count in the config and logs the first skipped rows."""
    skipped: list[DataError] = []
    train: list[PairExample] = []
    for path in cfg.train:
        train.extend(read_pairs(path, cfg.train_format, cfg.split, cfg.skip_bad_lines, skipped))
    dev = read_pairs(cfg.dev, cfg.dev_format, cfg.dev_split, cfg.skip_bad_lines, skipped) if cfg.dev else None
    for err in skipped[:20]:
        log.warning("skipped %s", err.message)
    cfg.skipped_lines = len(skipped)
    return train, dev, skipped


def pair_sentences(paths: Iterable[str | Path]) -> list[str]:
    """Every distinct sentence of the pair files (both sides, first occurrence order): the text a
    vocabulary is taken from and its [UNK] rate measured on."""
    return list(dict.fromkeys(t for path in paths for ex in read_pairs(path) for t in (ex.s1, ex.s2)))
