"""The hybrid fusion names and defaults, declared once: core.index.lexical fuses by them, and the
service's /search and ``eval retrieval`` take them from here. No imports, so that the command
line's argument parsing can use them without loading BM25 or torch."""

from __future__ import annotations

FUSIONS = ("convex", "rrf")
DEFAULT_FUSION = "convex"
# The dense share of a convex fusion: chosen on ADI, and the best on MEDLINE too, where it was not
# chosen (benchmarks/retrieval_quality.py; core.index.lexical says what was compared).
DEFAULT_ALPHA = 0.8
