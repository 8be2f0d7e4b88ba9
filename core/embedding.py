"""An encoder bound to an index: the one module build, serve, ``index add`` and ``eval retrieval``
call for the four rules that pairing has.

- **Which model folder serves an index** (:func:`model_for_index`): the one asked for, else the
  one the manifest records, else the packaged default.
- **The model check** (:func:`load_for_index`): the fingerprint, dim and ``max_seq_length`` the
  manifest records must match the model's (``Manifest.check_model``).
- **The precision policy** (:func:`set_precision`): an explicit precision, ``auto`` (measured,
  :func:`core.precision.choose_precision`), or ``index`` (the one the index was built at). The
  drift from fp32 (and from the index's precision) is measured on the caller's texts and
  returned as the record a manifest and ``/ready`` show. :class:`core.encoder.Encoder` only casts.
- **Unit vectors** (:func:`document_vectors`, :func:`query_vectors`): every stored vector has
  norm 1 (the manifest's ``normalized``), and so does every query searched against one, whatever
  the model folder's last module is; inner product is then cosine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.defaults import default_model_dir
from core.encoder import Encoder
from core.errors import InvalidInputError, PrecisionDriftError
from core.index.doc_store import DocStore
from core.index.folder import IndexFolder
from core.index.manifest import Manifest
from core.index.sharded_folder import ShardedFolder
from core.precision import CALIBRATION_TEXTS, DEFAULT_MAX_DRIFT, choose_precision, cosine_agreement
from core.unit_vectors import unit_rows

# How many of an index's (or a corpus's) own texts the precision is measured on: the drift that
# matters is on the documents being searched, and 32-64 texts take well under a second per trial.
CALIBRATION_SAMPLE = 64


def model_for_index(explicit: str | Path | None, recorded: str | None) -> Path:
    """The model folder for an index: the one asked for (``--model`` / ``SEMSEARCH_MODEL_DIR``),
    else the one the index's manifest records when it is still there, else the packaged
    default. :func:`load_for_index` checks the pairing."""
    if explicit:
        return Path(explicit)
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    return default_model_dir()


def load_for_index(
    manifest: Manifest, where: str | Path, model: str | Path | None = None, device: str = "auto"
) -> Encoder:
    """Load the encoder that serves the index at ``where`` (:func:`model_for_index`), refusing a
    model whose fingerprint, dim or ``max_seq_length`` differ from the manifest's."""
    encoder = Encoder.load(model_for_index(model, manifest.model_dir), device)
    manifest.check_model(encoder.fingerprint, encoder.dim, Path(where), encoder.max_seq_length)
    return encoder


def sample_texts(texts: Iterable[str], n: int = CALIBRATION_SAMPLE) -> list[str]:
    """Up to ``n`` non-empty texts to measure a precision on (the calibration set when none)."""
    out: list[str] = []
    for text in texts:
        if text.strip():
            out.append(text)
            if len(out) >= n:
                break
    return out


def index_texts(store: DocStore, n: int = 32) -> list[str]:
    """Up to ``n`` of an index's own live texts: a query precision's drift is measured on them,
    since the drift that matters is on the corpus being searched."""
    return sample_texts((doc.text for _, doc in next(store.iter_live(batch=n), [])), n)


def encoder_for_index(
    folder: IndexFolder | ShardedFolder,
    model: str | Path | None = None,
    device: str = "auto",
    precision: str = "index",
    max_drift: float = DEFAULT_MAX_DRIFT,
) -> tuple[Encoder, dict[str, Any]]:
    """The query encoder for ``folder``, as ``semsearch serve`` sets it up: loaded and checked
    (:func:`load_for_index`), at ``precision`` measured on the index's own texts. Returns it
    and the precision record."""
    encoder = load_for_index(folder.manifest, folder.path, model, device)
    texts = index_texts(folder.store)
    record = set_precision(encoder, precision, texts or None, max_drift, folder.manifest.precision)
    return encoder, record


def set_precision(
    encoder: Encoder,
    precision: str,
    texts: Sequence[str] | None = None,
    max_drift: float = DEFAULT_MAX_DRIFT,
    against: str | None = None,
) -> dict[str, Any]:
    """Put ``encoder`` at ``precision`` and return the quality record an index manifest keeps
    and ``/ready`` shows (empty when everything stays at fp32).

    - ``precision``: ``fp32`` / ``bf16`` / ``fp16`` / ``int8``; ``auto`` (the fastest within
      ``max_drift`` of fp32, measured on ``texts``); or ``index`` (``against``).
    - ``against``: the precision the vectors being searched were made at. When it differs from
      the one chosen, the drift between the two is measured too, and a drift over ``max_drift``
      is refused (:class:`PrecisionDriftError`): queries and documents embedded that differently
      no longer rank like the model does.
    - An encoder a caller has already cast has lost its fp32 weights: it is cast to an explicit
      ``precision`` that differs, kept as it is for ``auto``, and nothing is measured."""
    if precision == "index":
        if against is None:
            raise InvalidInputError("precision 'index' needs the index's precision")
        precision = against
    if encoder.precision != "fp32":
        if precision not in ("auto", encoder.precision):
            encoder.to_precision(precision)
        return {}
    if precision == "fp32" and against in (None, "fp32"):
        return {}
    sample = list(texts or CALIBRATION_TEXTS)
    other = None
    if against is not None and against not in (precision, "fp32"):
        other = encoder.variant(against).encode(sample)
    record: dict[str, Any] = {}
    if precision == "auto":  # the choice embeds the texts at every precision: reuse them
        choice = choose_precision(encoder, sample, max_drift)
        chosen = encoder.to_precision(choice.precision)
        reference, emb = choice.embeddings["fp32"], choice.embeddings[chosen]
        record["auto_trials"] = [asdict(t) for t in choice.trials]
    else:
        reference = encoder.encode(sample)
        chosen = encoder.to_precision(precision)
        emb = reference if chosen == "fp32" else encoder.encode(sample)
    mean, low = cosine_agreement(reference, emb)
    record = {
        "precision": chosen,
        "texts": len(sample),
        "max_drift": max_drift,
        "mean_cosine_vs_fp32": round(mean, 6),
        "min_cosine_vs_fp32": round(low, 6),
        **record,
    }
    if against is not None and against != chosen:
        mean, low = cosine_agreement(reference if other is None else other, emb)
        record.update(against=against, mean_cosine_vs_against=round(mean, 6))
        if 1.0 - mean > max_drift:
            raise PrecisionDriftError(
                f"queries at {chosen} and vectors at {against} drift by {1.0 - mean:.2e} "
                f"(1 - mean cosine over {len(sample)} texts), over the bound {max_drift:g}: serve at the "
                f"index's precision ({against}), rebuild the index at {chosen}, or raise the bound"
            )
    return record


def drift_vs_fp32(encoder: Encoder, record: dict[str, Any]) -> float | None:
    """1 - mean cosine to fp32 from a :func:`set_precision` record: 0 at fp32, None unmeasured."""
    if encoder.precision == "fp32":
        return 0.0
    measured = record.get("mean_cosine_vs_fp32")
    return None if measured is None else 1.0 - float(measured)


def document_vectors(vectors: np.ndarray) -> np.ndarray:
    """Vectors as an index stores them: float32 unit rows (every index here is ``normalized``)."""
    return unit_rows(vectors)


def query_vectors(manifest: Manifest, vectors: np.ndarray) -> np.ndarray:
    """Query vectors for an index: unit rows when its stored vectors are (inner product is then
    cosine), whatever the model folder's last module does."""
    return unit_rows(vectors) if manifest.normalized else np.ascontiguousarray(vectors, dtype=np.float32)
