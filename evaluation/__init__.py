"""Evaluation of what the apps produce, on judged data: an index's retrieval quality
(``semsearch eval retrieval``), searched exactly as ``semsearch serve`` searches it. It imports
only ``core``, and reads an index folder and a model folder like any app."""
