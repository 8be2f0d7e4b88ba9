"""The machine a benchmark ran on: CPU model and flags, memory, versions, commit, load."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.server_process import REPO


def cpu_model() -> str:
    """The CPU's model name and the flags that matter here (bf16 and AMX differ between hosts)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "")
    flags_line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    flags = [f for f in wanted if f" {f}" in flags_line]
    return f"{name} ({os.cpu_count()} CPUs; {' '.join(flags)})"


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def machine_info(txtai_python: Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Flags"):
                if key.strip() == "Flags":
                    value = " ".join(f for f in value.split() if f.startswith(("avx512_bf16", "amx")))
                info[f"lscpu {key.strip()}"] = value.strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024**2, 1)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        info["git"] = _git("rev-parse", "--short", "HEAD") + ("+dirty" if dirty else "")
    from importlib import metadata

    for pkg in ("torch", "faiss-cpu", "fastapi", "uvicorn", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[pkg] = metadata.version(pkg)
    if txtai_python is not None and txtai_python.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            code = "import importlib.metadata as m;print(m.version('txtai'), m.version('torch'))"
            done = subprocess.run([str(txtai_python), "-c", code], capture_output=True, text=True, timeout=60)
            if done.returncode == 0:
                txtai_v, torch_v = done.stdout.split()
                info["txtai"] = txtai_v
                info["txtai venv torch"] = torch_v
    return info
