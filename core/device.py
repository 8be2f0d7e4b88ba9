"""Device choice and process-wide settings for loading models offline."""

from __future__ import annotations

import os

import torch

from core.errors import InvalidInputError


def offline_mode() -> None:
    """Forbid any model-hub traffic from transformers / huggingface_hub in this process.

    Called by every code path that loads a model. ``setdefault`` would let an inherited
    ``HF_HUB_OFFLINE=0`` through, so we overwrite: we never want a hub lookup.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None picks CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"unsupported device {device!r}: use auto, cpu or cuda")
    return dev


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_supported(device: torch.device) -> bool:
    """Native bf16 arithmetic: avx512_bf16 / AMX on CPU, compute capability >= 8 on CUDA."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 where the hardware computes it natively, else fp32; an explicit request the
    hardware cannot honour is an error, not a silent fallback."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    if precision == "bf16" and not bf16_supported(device):
        raise InvalidInputError(
            f"bf16 requested but {device} has no native bf16 (avx512_bf16/AMX or CUDA sm80+)"
        )
    if precision == "fp16" and device.type != "cuda":
        raise InvalidInputError("fp16 is for CUDA devices; on CPU use bf16 or fp32")
    return precision
