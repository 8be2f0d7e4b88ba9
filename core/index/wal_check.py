"""Reading ``docs.sqlite-wal`` before SQLite does: a torn tail is dropped with a log line, a
corrupt record in the middle is an error.

SQLite's own recovery reads WAL frames until the first one whose checksum fails and silently
ignores everything after it. That is right for a torn tail (the last transaction, whose fsync
never returned, so it was never acknowledged), and wrong for a frame damaged in the middle: the
acknowledged transactions after it would vanish without a word. So a writer opening the folder
checks the WAL first (format: https://www.sqlite.org/fileformat.html#the_write_ahead_log):

- every frame valid: nothing to say, except uncommitted frames or a partial frame at the end
  (a transaction cut by a kill), which SQLite drops: logged as a torn tail;
- a frame fails its checksum, and the frames after it (same salts: the same WAL cycle) hold at
  most one transaction's end, as the very last of them: a torn tail (a transaction whose pages
  reached the disk out of order), logged;
- after the failing frame, a transaction ended and more frames follow: later transactions were
  written after this one had committed, so a committed frame was damaged afterwards:
  :class:`IndexFormatError`, naming the frame, before SQLite can drop them.

The checksum is the WAL's Fletcher-like sum over 32-bit word pairs, s0 += x0 + s1; s1 += x1 + s0.
It is linear, so a frame's whole sum is M^n (s0, s1) + (its own part), the part computed for all
frames at once with numpy (uint64 arithmetic wraps, which keeps the sums right mod 2^32).
"""

from __future__ import annotations

import functools
import logging
import os
import struct
from pathlib import Path

import numpy as np

from core.errors import IndexFormatError

log = logging.getLogger(__name__)
_MAGICS = {0x377F0682: "<u4", 0x377F0683: ">u4"}  # the low bit: checksums over big-endian words
_HEADER, _FRAME_HEADER = 32, 24
_FRAMES_AT_ONCE = 1024


@functools.lru_cache(maxsize=4)
def _powers(n: int) -> np.ndarray:
    """M^0 .. M^(n-1) for M = [[1, 1], [1, 2]] (one step of the sum), as (n, 2, 2) uint64."""
    out = np.empty((n, 2, 2), dtype=np.uint64)
    cur = np.eye(2, dtype=np.uint64)
    m = np.array([[1, 1], [1, 2]], dtype=np.uint64)
    for i in range(n):
        out[i] = cur
        cur = (m @ cur) & np.uint64(0xFFFFFFFF)
    return out


def _parts(words: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """Each row's contribution to the sum from a zero state, for rows of 2n words: (rows, 2)."""
    x0 = words[:, 0::2].astype(np.uint64)
    b1 = x0 + words[:, 1::2].astype(np.uint64)
    rev = powers[::-1]  # the first pair is multiplied by M^(n-1)
    c0 = (x0 * rev[:, 0, 0] + b1 * rev[:, 0, 1]).sum(axis=1, dtype=np.uint64)
    c1 = (x0 * rev[:, 1, 0] + b1 * rev[:, 1, 1]).sum(axis=1, dtype=np.uint64)
    return np.stack([c0, c1], axis=1) & np.uint64(0xFFFFFFFF)


def _step(state: tuple[int, int], full: np.ndarray, part: np.ndarray) -> tuple[int, int]:
    s0, s1 = state
    a = (int(full[0, 0]) * s0 + int(full[0, 1]) * s1 + int(part[0])) & 0xFFFFFFFF
    b = (int(full[1, 0]) * s0 + int(full[1, 1]) * s1 + int(part[1])) & 0xFFFFFFFF
    return a, b


def check_wal(db: Path) -> int:
    """Check ``db``'s WAL (see the module's doc); returns the frames SQLite will keep."""
    wal = db.with_name(db.name + "-wal")
    try:
        fd = os.open(wal, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        header = os.pread(fd, _HEADER, 0)
        if len(header) < _HEADER:
            return 0
        magic, _version, page, _seq, salt1, salt2, h0, h1 = struct.unpack(">8I", header)
        dtype = _MAGICS.get(magic)
        if dtype is None or page < 512 or page & (page - 1):
            return 0  # not a WAL SQLite would use: it ignores it too
        header_words = np.frombuffer(header[:24], dtype=dtype).reshape(1, 6)
        if tuple(int(v) for v in _parts(header_words, _powers(3))[0]) != (h0, h1):
            return 0  # a header that fails its own checksum: SQLite resets the WAL, nothing was in it
        size = _FRAME_HEADER + page
        n = (8 + page) // 8  # word pairs summed per frame: its header's first 8 bytes, then the page
        powers = _powers(n + 1)
        # Read with pread, a chunk at a time (a WAL may be larger than memory, and a writer may
        # truncate it meanwhile: a short read is the end, never a crash); each frame's header and
        # page come from the same read.
        heads_parts, parts_parts, partial, offset = [], [], 0, _HEADER
        while True:
            data = os.pread(fd, size * _FRAMES_AT_ONCE, offset)
            whole = len(data) // size
            if whole:
                chunk = np.frombuffer(data, dtype=np.uint8, count=whole * size).reshape(whole, size)
                heads_parts.append(chunk[:, :_FRAME_HEADER].copy().view(">u4"))
                body = np.concatenate([chunk[:, :8], chunk[:, _FRAME_HEADER:]], axis=1)
                parts_parts.append(_parts(body.view(dtype).reshape(whole, 2 * n), powers[:n]))
            if len(data) < size * _FRAMES_AT_ONCE:
                partial = len(data) - whole * size
                break
            offset += len(data)
        restarted = os.pread(fd, _HEADER, 0) != header
    finally:
        os.close(fd)
    if restarted:
        # A checkpoint restarted the WAL while we read it (new salts): what it held is in the
        # database file now, and the frames we read are a mix of two cycles. Nothing to judge.
        log.debug("%s: restarted while it was checked; skipped", wal)
        return 0
    if not heads_parts:
        if partial:
            log.warning("%s: dropped a torn frame at the end of the write log (%d bytes)", wal, partial)
        return 0
    heads = np.concatenate(heads_parts)  # page, commit size, salt1, salt2, sum0, sum1
    parts = np.concatenate(parts_parts)
    frames = len(heads)
    full = powers[n]
    ours = (heads[:, 2] == salt1) & (heads[:, 3] == salt2)
    state, first_bad, kept = (h0, h1), None, 0
    for i in range(frames):
        if not ours[i]:
            first_bad = i
            break
        state = _step(state, full, parts[i])
        if state != (int(heads[i, 4]), int(heads[i, 5])):
            first_bad = i
            break
        if heads[i, 1]:  # a commit frame: everything up to here is a committed transaction
            kept = i + 1
    if first_bad is None:
        if kept < frames or partial:
            log.warning(
                "%s: dropped a torn transaction at the end of the write log (%d frame(s) never committed%s)",
                wal,
                frames - kept,
                ", and a partial frame" if partial else "",
            )
        return kept
    later = np.flatnonzero(ours[first_bad + 1 :]) + first_bad + 1
    ends = [int(i) for i in later if heads[i, 1]]
    if ends and (len(ends) > 1 or ends[-1] != later[-1]):
        raise IndexFormatError(
            f"{wal}: write-log frame {first_bad + 1} of {frames} is damaged and committed "
            f"transactions follow it; SQLite would drop them silently. Restore the folder from "
            "a backup, or rebuild the index"
        )
    if kept < first_bad or ours[first_bad]:
        log.warning(
            "%s: dropped a torn transaction at the end of the write log (from frame %d of %d)",
            wal,
            first_bad + 1,
            frames,
        )
    return kept
