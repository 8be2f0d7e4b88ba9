"""A process's memory and CPU time, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def proc_status(pid: int | None, key: str) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB -> MB
    except OSError:
        return None
    return None


def rss_mb(pid: int | None) -> float | None:
    return proc_status(pid, "VmRSS")


def hwm_mb(pid: int | None) -> float | None:
    return proc_status(pid, "VmHWM")


def proc_cpu_s(pid: int | None) -> float | None:
    """utime + stime of the whole process (all threads), in seconds."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
