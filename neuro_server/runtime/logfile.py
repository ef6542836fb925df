"""A job's output on disk: ``output.log`` (raw bytes, stdout and stderr in arrival order) and
``output.idx`` (one fixed-size record per chunk read: offset in output.log, unix time, stream,
length).  The supervisor appends (data first, then its record); ``read_log`` streams it back, by
offset, so a reader that reconnects resumes without gaps or duplicates.

The writer is standard library only and imports nothing heavy: the supervisor uses it.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import AsyncIterator, Callable

LOG_NAME = "output.log"
IDX_NAME = "output.idx"
RECORD = struct.Struct("<QdBI")  # offset, unix time, stream (1 stdout, 2 stderr), length
STDOUT, STDERR = 1, 2

READ_BLOCK = 1 << 20  # raw reads; big blocks keep a 200 MiB log streaming at page-cache speed
TS_BATCH_RECORDS = 4096  # timestamped reads: records per batch ...
TS_BATCH_BYTES = 4 << 20  # ... and at most this much data per batch


class LogWriter:
    def __init__(self, job_dir: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._log = os.open(os.path.join(job_dir, LOG_NAME), flags, 0o644)
        self._idx = os.open(os.path.join(job_dir, IDX_NAME), flags, 0o644)
        # a record torn by a crash would shift every later one: drop it (its data stays readable)
        size = os.fstat(self._idx).st_size
        if size % RECORD.size:
            os.ftruncate(self._idx, size - size % RECORD.size)
        self.records = size // RECORD.size  # chunks indexed so far (readers count by record)
        self.offset = os.fstat(self._log).st_size  # a restarted job appends to the same log

    def write(self, data: bytes, stream: int, when: float | None = None) -> None:
        if not data:
            return
        when = time.time() if when is None else when
        view = memoryview(data)
        while view:
            view = view[os.write(self._log, view) :]
        os.write(self._idx, RECORD.pack(self.offset, when, stream, len(data)))
        self.offset += len(data)
        self.records += 1

    def close(self) -> None:
        os.close(self._log)
        os.close(self._idx)


def rfc3339_ns(t: float) -> str:
    """``2021-08-13T09:23:00.123456789Z`` (UTC, nanoseconds, as docker prints them)."""
    sec = int(t // 1)
    ns = round((t - sec) * 1e9)
    if ns >= 1_000_000_000:
        sec, ns = sec + 1, ns - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns:09d}Z"


def _records(idx_fd: int, first: int, count: int) -> list[tuple[int, float, int, int]]:
    data = os.pread(idx_fd, count * RECORD.size, first * RECORD.size)
    usable = len(data) - len(data) % RECORD.size  # a record being written is read next time
    return list(RECORD.iter_unpack(data[:usable]))


def _record_count(idx_fd: int) -> int:
    return os.fstat(idx_fd).st_size // RECORD.size


def first_record_since(idx_fd: int, since: float) -> tuple[int, int]:
    """``(record number, log offset)`` of the first chunk read at or after ``since``.

    When there is none yet, both point just past the last indexed chunk: what comes later is
    newer.  Binary search: chunk times only grow (short of the clock being set back).
    """
    lo, hi = 0, _record_count(idx_fd)
    end = 0
    if hi:
        last = _records(idx_fd, hi - 1, 1)[0]
        end = last[0] + last[3]
    n = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if _records(idx_fd, mid, 1)[0][1] < since:
            lo = mid + 1
        else:
            hi = mid
    if lo == n:
        return lo, end
    return lo, _records(idx_fd, lo, 1)[0][0]


class _Timestamper:
    """Prefixes each line with the time of the chunk in which the line started."""

    def __init__(self) -> None:
        self.at_line_start = True

    def add(self, out: list[bytes], piece: bytes, when: float) -> None:
        if not piece:
            return
        prefix = rfc3339_ns(when).encode() + b" "
        if self.at_line_start:
            out.append(prefix)
        body = piece.replace(b"\n", b"\n" + prefix)
        if piece.endswith(b"\n"):
            body = body[: -len(prefix)]
            self.at_line_start = True
        else:
            self.at_line_start = False
        out.append(body)


async def read_log(
    job_dir: str,
    *,
    since: float | None = None,
    timestamps: bool = False,
    follow: bool = True,
    finished: Callable[[], bool],
    poll: float = 0.05,
) -> AsyncIterator[bytes]:
    """The job's output from the start (or from the first chunk read at or after ``since``).

    With ``follow`` it waits for more until ``finished()`` says the writer is gone, then reads
    what is left and ends.  ``finished`` is checked *before* the last read, so nothing written
    before the writer finished is missed.
    """
    import asyncio

    log_path = os.path.join(job_dir, LOG_NAME)
    idx_path = os.path.join(job_dir, IDX_NAME)
    while not (os.path.exists(log_path) and os.path.exists(idx_path)):
        if not follow or finished():
            return
        await asyncio.sleep(poll)
    log_fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    idx_fd = os.open(idx_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        record, offset = first_record_since(idx_fd, since) if since is not None else (0, 0)
        stamper = _Timestamper()
        last_time = since or 0.0
        while True:
            done = finished()
            if not timestamps:
                while chunk := os.pread(log_fd, READ_BLOCK, offset):
                    offset += len(chunk)
                    yield chunk
            else:
                while recs := _records(idx_fd, record, TS_BATCH_RECORDS):
                    size = 0
                    for i, rec in enumerate(recs):
                        size += rec[3]
                        if size > TS_BATCH_BYTES and i:
                            recs = recs[:i]
                            break
                    start = recs[0][0]
                    data = os.pread(log_fd, recs[-1][0] + recs[-1][3] - start, start)
                    out: list[bytes] = []
                    for rec_offset, when, _stream, length in recs:
                        stamper.add(
                            out, data[rec_offset - start : rec_offset - start + length], when
                        )
                    record += len(recs)
                    offset = recs[-1][0] + recs[-1][3]
                    last_time = recs[-1][1]
                    yield b"".join(out)
                if done:
                    # data without a record (the writer died between the two writes)
                    out = []
                    while piece := os.pread(log_fd, READ_BLOCK, offset):
                        offset += len(piece)
                        stamper.add(out, piece, last_time)
                    if out:
                        yield b"".join(out)
            if done or not follow:
                return
            await asyncio.sleep(poll)
    finally:
        os.close(log_fd)
        os.close(idx_fd)
