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


def precision_pattern(names: tuple[str, ...]) -> str:
    """A settings field's regular expression for exactly these names."""
    return "^(" + "|".join(names) + ")$"
