"""The hybrid fusion names and defaults, declared once: core.index.lexical fuses by them, and the
service's /search and ``eval retrieval`` take them from here. No imports, so that the command
line's argument parsing can use them without loading BM25 or torch."""

from __future__ import annotations

# What `semsearch serve` searches with when a request does not say (SEMSEARCH_SEARCH_MODE), and
# so what `eval retrieval` evaluates with no mode flag: one name, so the two cannot drift apart.
SEARCH_MODES = ("hybrid", "dense")
DEFAULT_SEARCH_MODE = "hybrid"
FUSIONS = ("convex", "rrf")
DEFAULT_FUSION = "convex"
# The dense share of a convex fusion: chosen on ADI, and the best on MEDLINE too, where it was not
# chosen (benchmarks/retrieval_quality.py; core.index.lexical says what was compared).
DEFAULT_ALPHA = 0.8
# Pseudo-relevance feedback (core.index.feedback): the dense query moves toward the vectors of the
# first round's FEEDBACK_DOCS best fused hits, weighted FEEDBACK_WEIGHT against the query's 1.
# Chosen on MEDLINE together with alpha (which came out 0.8 again) and reported on ADI, where it
# was not chosen; BENCHMARKS.md has the figures, and those of the reverse choice.
DEFAULT_FEEDBACK_DOCS = 3
FEEDBACK_WEIGHT = 1.5
MAX_FEEDBACK_DOCS = 20
