"""The model-folder format: sentence-transformers layout, or a plain transformers folder.

Reading returns a :class:`ModelSpec` (where the transformer lives, its pooling, whether it
normalises); writing produces ``modules.json``, ``sentence_bert_config.json``,
``config_sentence_transformers.json`` and ``1_Pooling/config.json`` so that
sentence-transformers, TEI and txtai load what we save, and we load what they save.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelFormatError, ModelNotFoundError
from core.pooling import Pooling

ST_TRANSFORMER = "sentence_transformers.models.Transformer"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_NORMALIZE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class ModelSpec:
    root: Path
    transformer_dir: Path
    pooling: Pooling | None  # None: plain transformers folder, mean pooling over the hidden size
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool
    layout: str  # "sentence-transformers" or "transformers"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: invalid JSON ({exc})") from exc


def read_spec(root: str | Path) -> ModelSpec:
    """Inspect a model folder without loading weights."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ModelNotFoundError(
            f"model folder not found: {root} (models are never downloaded; pass a local folder)"
        )
    modules_path = root / "modules.json"
    if not modules_path.exists():
        if not (root / "config.json").exists():
            raise ModelFormatError(f"{root}: neither modules.json nor config.json found; not a model folder")
        return ModelSpec(root, root, None, False, None, False, "transformers")

    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelFormatError(f"{modules_path}: expected a list of module objects")
    transformer_dir: Path | None = None
    pooling: Pooling | None = None
    normalize = False
    for entry in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(entry.get("type", ""))
        sub = root / str(entry.get("path", ""))
        short = kind.rsplit(".", 1)[-1]
        if short == "Transformer":
            transformer_dir = sub
        elif short == "Pooling":
            pooling = Pooling.load(sub)
        elif short == "Normalize":
            normalize = True
        else:
            # Silently skipping e.g. a Dense layer would give wrong vectors; say so instead.
            raise ModelFormatError(f"{modules_path}: module type {kind!r} is not supported")
    if transformer_dir is None:
        raise ModelFormatError(f"{modules_path}: no Transformer module")
    if pooling is None:
        raise ModelFormatError(f"{modules_path}: no Pooling module")

    max_len: int | None = None
    lower = False
    sbert_cfg = transformer_dir / "sentence_bert_config.json"
    if sbert_cfg.exists():
        cfg = _read_json(sbert_cfg)
        if cfg.get("max_seq_length") is not None:
            max_len = int(cfg["max_seq_length"])
        lower = bool(cfg.get("do_lower_case", False))
    return ModelSpec(root, transformer_dir, pooling, normalize, max_len, lower, "sentence-transformers")


def weight_files(transformer_dir: Path) -> list[Path]:
    """The safetensors weight files; pickled checkpoints are refused, never loaded."""
    files = sorted(transformer_dir.glob("*.safetensors"))
    if not files:
        pickled = [p.name for p in transformer_dir.glob("*.bin")] + [
            p.name for p in transformer_dir.glob("*.pt")
        ]
        hint = (
            f" (found {', '.join(pickled)}: pickled weights are not loaded; convert to safetensors)"
            if pickled
            else ""
        )
        raise ModelFormatError(f"{transformer_dir}: no .safetensors weights{hint}")
    return files


def fingerprint(transformer_dir: Path, pooling_config: dict[str, Any], normalize: bool) -> str:
    """sha256 over the weight tensors plus the pooling config: same vectors iff same fingerprint.

    Hashes tensor names, dtypes, shapes and values rather than file bytes, so re-saving an
    unchanged model (other metadata, tensor order or sharding) keeps its fingerprint. Buffers
    that are not weights (``position_ids``, which some savers drop) are left out."""
    from safetensors import safe_open

    digest = hashlib.sha256()
    tensors: dict[str, tuple[Path, str]] = {}
    for path in weight_files(transformer_dir):
        with safe_open(str(path), framework="pt") as fh:
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                if not key.endswith("position_ids"):
                    tensors[key] = (path, key)
    handles = {p: safe_open(str(p), framework="pt") for p, _ in tensors.values()}
    for name in sorted(tensors):
        path, key = tensors[name]
        t = handles[path].get_tensor(key).contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest.update(json.dumps({"pooling": pooling_config, "normalize": normalize}, sort_keys=True).encode())
    return digest.hexdigest()


def write_st_layout(
    root: Path, pooling: Pooling, normalize: bool, max_seq_length: int, do_lower_case: bool
) -> None:
    """Write the sentence-transformers descriptor files around a transformer saved at ``root``."""
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": ST_TRANSFORMER},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST_POOLING},
    ]
    pooling.save(root / "1_Pooling")
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": ST_NORMALIZE})
        (root / "2_Normalize").mkdir(exist_ok=True)
    (root / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (root / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": do_lower_case}, indent=2) + "\n"
    )
    cfg_path = root / "config_sentence_transformers.json"
    if not cfg_path.exists():
        cfg_path.write_text(
            json.dumps(
                {
                    "__version__": {"sentence_transformers": "3.0.0", "semsearch": "0.1.0"},
                    "prompts": {},
                    "default_prompt_name": None,
                    "similarity_fn_name": "cosine",
                },
                indent=2,
            )
            + "\n"
        )
