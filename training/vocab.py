"""``semsearch train extend-vocab`` (and ``train mlm --extend-vocab``): give a WordPiece encoder
the pieces a corpus needs and its vocabulary lacks, as BERT's Chinese models tokenise: one token
per CJK character.

The English all-MiniLM-L6-v2 turns most Chinese into ``[UNK]``: its normaliser already splits CJK
characters into words of one, but most of them are not in its vocabulary. Every piece the corpus
maps to ``[UNK]`` is added: a word-initial character as itself, a word-internal one as ``##c``
(so Latin words with an unknown letter are covered too), those seen at least ``min_count``
times, most frequent first. The tokenizer keeps every other setting; the embedding matrix grows
by as many rows, and the folder saved is a normal model folder (tokenizer.json and vocab.txt,
safetensors weights, the sentence-transformers layout) that transformers and
sentence-transformers load.

New rows start as copies of the ``[UNK]`` row (``init="unk"``): what every one of these
characters was to the encoder before, an input its layers have learnt to carry in context, so
the extended model starts exactly where the old one was and MLM adaptation pulls each row away
from there. Measured against the alternatives (benchmarks/vocab_extension.py, BENCHMARKS.md):
after the same short MLM run on 6,000 AFQMC questions, the loss over its last fifth was 6.41
from ``unk``, 6.85 from ``random`` (BERT's own N(0, 0.02)) and 7.66 from ``mean`` (the mean of
the old rows: a short vector unlike any real input, which LayerNorm then blows up).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.encoder import Encoder
from core.errors import InvalidInputError, ModelFormatError

log = logging.getLogger(__name__)
INITS = ("mean", "random", "unk")


def is_cjk(char: str) -> bool:
    """A CJK ideograph, by the ranges BERT's basic tokenizer splits on."""
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _backend(tokenizer: Any) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelFormatError("vocabulary extension needs a fast (tokenizers) tokenizer")
    spec = json.loads(backend.to_str())
    if spec.get("model", {}).get("type") != "WordPiece":
        raise ModelFormatError(f"vocabulary extension supports WordPiece, not {spec['model'].get('type')}")
    return backend


def unk_rate(tokenizer: Any, texts: Iterable[str]) -> tuple[float, int]:
    """(share of the tokens that are ``[UNK]``, tokens counted), special tokens left out."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(_backend(tokenizer).to_str())
    backend.no_padding()
    backend.no_truncation()
    unk = backend.token_to_id(tokenizer.unk_token)
    total = unknown = 0
    batch: list[str] = []

    def count(rows: list[str]) -> None:
        nonlocal total, unknown
        for enc in backend.encode_batch(rows, add_special_tokens=False):
            total += len(enc.ids)
            unknown += sum(1 for i in enc.ids if i == unk)

    for text in texts:
        batch.append(text)
        if len(batch) == 1024:
            count(batch)
            batch = []
    if batch:
        count(batch)
    return (unknown / total if total else 0.0), total


def missing_pieces(tokenizer: Any, texts: Iterable[str]) -> Counter[str]:
    """The pieces of the words that WordPiece maps to ``[UNK]``, with how often each occurs:
    ``c`` for a word's first character, ``##c`` for a later one (after the tokenizer's own
    normalisation, so lower-casing and accent stripping are applied as at encode time)."""
    backend = _backend(tokenizer)
    vocab = backend.get_vocab()
    unk = tokenizer.unk_token
    found: Counter[str] = Counter()
    for text in texts:
        normal = backend.normalizer.normalize_str(text) if backend.normalizer else text
        words = backend.pre_tokenizer.pre_tokenize_str(normal) if backend.pre_tokenizer else [(normal, None)]
        for word, _ in words:
            if unk not in [t.value for t in backend.model.tokenize(word)]:
                continue
            for i, char in enumerate(word):
                piece = char if i == 0 else f"##{char}"
                if piece not in vocab and not unicodedata.category(char).startswith("C"):
                    found[piece] += 1
    return found


@dataclass
class VocabReport:
    added: int
    vocab_size: int
    init: str
    unk_rate_before: float
    unk_rate_after: float
    tokens: int
    measured_on: dict[str, dict[str, float]] = field(default_factory=dict)  # other texts: before/after

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _extended_tokenizer(tokenizer: Any, pieces: Sequence[str]) -> Any:
    from tokenizers import Tokenizer

    spec = json.loads(_backend(tokenizer).to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    for piece in pieces:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    kwargs = {
        k: v
        for k, v in tokenizer.init_kwargs.items()
        if k not in ("vocab_file", "tokenizer_file", "name_or_path", "backend", "added_tokens_decoder")
    }
    return type(tokenizer)(tokenizer_object=Tokenizer.from_str(json.dumps(spec)), **kwargs)


def _grow_embeddings(encoder: Encoder, new_size: int, init: str, unk_id: int, seed: int) -> None:
    model: Any = encoder.net[0].auto_model
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(new_size, mean_resizing=False)  # set below, as init says
    weight = model.get_input_embeddings().weight
    n_old = old.shape[0]
    with torch.no_grad():
        if init == "mean":
            weight[n_old:] = old.mean(dim=0)
        elif init == "unk":
            weight[n_old:] = old[unk_id]
        else:
            std = float(getattr(model.config, "initializer_range", 0.02))
            gen = torch.Generator().manual_seed(seed)
            weight[n_old:] = torch.randn(new_size - n_old, old.shape[1], generator=gen) * std


def extend_vocab(
    model: str | Path,
    texts: Sequence[str],
    output: str | Path,
    min_count: int = 1,
    init: str = "unk",
    seed: int = 1234,
    measure: Mapping[str, Sequence[str]] | None = None,
) -> VocabReport:
    """Add ``texts``' missing pieces to the model folder ``model`` and save it at ``output``.
    ``measure``: other texts (by name) whose ``[UNK]`` rate is reported before and after."""
    if init not in INITS:
        raise InvalidInputError(f"unknown init {init!r}; use one of {', '.join(INITS)}")
    if min_count < 1:
        raise InvalidInputError("--min-count must be at least 1")
    if not texts:
        raise InvalidInputError("no text to take a vocabulary from")
    encoder = Encoder.load(model, "cpu")
    tokenizer = encoder.tokenizer
    before, _ = unk_rate(tokenizer, texts)
    measured = {name: {"before": unk_rate(tokenizer, rows)[0]} for name, rows in (measure or {}).items()}
    pieces = [p for p, n in missing_pieces(tokenizer, texts).most_common() if n >= min_count]
    new_tokenizer = _extended_tokenizer(tokenizer, pieces)
    _grow_embeddings(encoder, len(new_tokenizer), init, int(tokenizer.unk_token_id), seed)
    encoder.tokenizer = new_tokenizer
    out = Path(output)
    encoder.save(out)
    vocab = new_tokenizer.backend_tokenizer.get_vocab()
    (out / "vocab.txt").write_text(
        "".join(token + "\n" for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])), encoding="utf-8"
    )
    after, tokens = unk_rate(new_tokenizer, texts)
    for name, rows in (measure or {}).items():
        measured[name]["after"] = unk_rate(new_tokenizer, rows)[0]
    report = VocabReport(len(pieces), len(new_tokenizer), init, before, after, tokens, measured)
    (out / "vocab_extension.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    log.info(
        "added %d pieces (vocabulary %d); [UNK] %.2f%% -> %.2f%%",
        len(pieces),
        len(vocab),
        100 * before,
        100 * after,
    )
    return report
