"""The siamese SBERT trainer (issue 3). It imports only ``core`` and writes model folders."""
