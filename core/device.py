"""Device choice and process-wide settings for loading models offline."""

from __future__ import annotations

import ctypes
import math
import os
import platform
from pathlib import Path

import torch

from core.errors import InvalidInputError
from core.precision_names import PRECISIONS


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


def int8_supported(device: torch.device) -> bool:
    """Dynamic int8 matmuls: torch's x86/fbgemm kernels, which need AVX2 (VNNI makes them fast)."""
    engines = set(torch.backends.quantized.supported_engines)
    return device.type == "cpu" and bool(engines & {"x86", "fbgemm"}) and "avx2" in cpu_flags()


def native_precision(device: torch.device, allowed: tuple[str, ...]) -> str:
    """What ``auto`` starts from, for every model: the fastest of ``allowed`` this hardware
    computes natively. bf16 on avx512_bf16/AMX CPUs and sm80+ GPUs, else fp16 on CUDA, else fp32.
    The cross-encoder and training take it as it is; the bi-encoder's ``auto`` also measures it
    (core.precision.choose_precision: within the drift bound, and overruled only by a precision
    that is consistently faster, such as int8)."""
    if "bf16" in allowed and bf16_supported(device):
        return "bf16"
    if "fp16" in allowed and device.type == "cuda":
        return "fp16"
    return "fp32"


def torch_dtype(precision: str) -> torch.dtype:
    """The weights' dtype for a resolved precision (int8 keeps float32 weights: it quantises a copy)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Check an explicit precision against the hardware: one it cannot honour is an error, not a
    silent fallback. ``auto`` is returned as is: :mod:`core.precision` measures the choice."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "int8" and not int8_supported(device):
        raise InvalidInputError(
            f"int8 needs a CPU with AVX2 and torch's x86 quantized engine; {device} has not"
        )
    if precision == "bf16" and not bf16_supported(device):
        raise InvalidInputError(
            f"bf16 requested but {device} has no native bf16 (avx512_bf16/AMX or CUDA sm80+)"
        )
    if precision == "fp16" and device.type != "cuda":
        raise InvalidInputError("fp16 is for CUDA devices; on CPU use bf16 or fp32")
    return precision


def available_cpus() -> int:
    """The CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota
    (Docker's ``--cpus``, Kubernetes limits), which ``os.cpu_count()`` and torch's default ignore."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPU quota in CPUs from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``; None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def configure_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads: ``threads`` when > 0, else :func:`available_cpus`. More threads
    than CPUs only adds contention (and a throttled cgroup stalls them all). Returns the count."""
    n = threads if threads > 0 else available_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# glibc serves allocations above M_MMAP_THRESHOLD with a fresh mmap, and gives freed heap above
# M_TRIM_THRESHOLD back to the kernel: each large activation tensor then costs page faults and
# kernel zeroing on every forward pass. 32 MiB is the largest threshold glibc accepts on 64-bit.
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_TRIM_THRESHOLD = 256 * 1024 * 1024
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep CPU inference's activations in glibc's heap (reused) rather than in per-tensor mmaps
    (faulted in and zeroed each time): the mmap threshold goes to its 32 MiB maximum and freed
    memory up to 256 MiB is kept. Once per process; a no-op off glibc, with
    ``SEMSEARCH_MALLOC_TUNE=0``, or where the user set ``MALLOC_MMAP_THRESHOLD_`` /
    ``MALLOC_TRIM_THRESHOLD_``. Together with a token budget that keeps
    activations under the threshold (:func:`core.token_batches.cpu_max_batch_tokens`), MEDLINE abstracts
    encoded about 30% faster in bf16 (BENCHMARKS.md). Returns whether the tuning is in effect."""
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = False
        user_set = any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
        user_set = user_set or os.environ.get("SEMSEARCH_MALLOC_TUNE", "1") == "0"
        if not user_set and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(None)
                _allocator_tuned = bool(
                    libc.mallopt(-3, MMAP_THRESHOLD_MAX) and libc.mallopt(-1, _TRIM_THRESHOLD)
                )  # -3 = M_MMAP_THRESHOLD, -1 = M_TRIM_THRESHOLD (malloc.h)
            except (OSError, AttributeError):
                pass
    return _allocator_tuned
