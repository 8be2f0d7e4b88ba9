"""The precision names, declared once: every flag, setting and check takes its list from here.

No imports beyond the standard library, so that the command line's argument parsing (which
must not import torch) can use them. What each precision does is core.device's and
core.precision's business.

``auto`` means one rule everywhere: start from the fastest precision the hardware computes
natively among a model's own list (core.device.native_precision). The bi-encoder's ``auto``
measures that choice as well (core.embedding.set_precision: drift from fp32 within a bound,
and overruled only by a precision consistently faster on this machine); the cross-encoder's and
training's take it as it is (training autocasts to it).
"""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")  # the bi-encoder (index build, queries)
SERVE_PRECISIONS = ("index", *PRECISIONS)  # queries: "index" is the precision the index was built at
CROSS_ENCODER_PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # no int8 for the cross-encoder
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")  # training: autocast to bf16 or not

# The largest drift from fp32 (1 - mean cosine between a text's two embeddings) that ``auto``
# accepts, and that queries and stored vectors of two precisions may differ by. bf16 drifts
# about 5e-5 on MiniLM, fp16 less; int8 1.5e-2 on STS-B's short sentences but only 7e-3 on
# MEDLINE's abstracts, where the old bound of 1e-2 let ``auto`` pick it on an AVX2-only CPU and
# dense nDCG@10 fell by 0.02 (BENCHMARKS.md). 1e-3 keeps every float precision, 20x above
# bf16's drift, and no dynamic int8 measured so far; int8 stays one flag away.
DEFAULT_MAX_DRIFT = 1e-3


def precision_pattern(names: tuple[str, ...]) -> str:
    """A settings field's regular expression for exactly these names."""
    return "^(" + "|".join(names) + ")$"
