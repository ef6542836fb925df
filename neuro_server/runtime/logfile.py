"""A job's output on disk: ``output.log`` (raw bytes, stdout and stderr in arrival order) and
``output.idx`` (one fixed-size record per chunk read: offset in output.log, unix time, stream,
length).  The supervisor appends (data first, then its record); ``read_log`` streams it back, by
offset, so a reader that reconnects resumes without gaps or duplicates.

The writer is standard library only and imports nothing heavy: the supervisor uses it.

A full disk costs output, never the log's order or the job: a chunk that does not fit is
dropped (counted), and once there is room again a marker line says how much was lost.  An
output limit (``limit``) keeps the first bytes and says so once.  ``output.reserve`` holds a
little space from the start, given up when the job ends so that the marker gets written even
on a disk that is still full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
from collections.abc import AsyncIterator, Callable

LOG_NAME = "output.log"
IDX_NAME = "output.idx"
RESERVE_NAME = "output.reserve"
RESERVE_SIZE = 64 << 10  # room for the "output lost" marker on a disk that is full
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write refused for want of room
RECORD = struct.Struct("<QdBI")  # offset, unix time, stream (1 stdout, 2 stderr), length
STDOUT, STDERR = 1, 2

READ_BLOCK = 1 << 20  # raw reads; big blocks keep a 200 MiB log streaming at page-cache speed
TS_BATCH_RECORDS = 4096  # timestamped reads: records per batch ...
TS_BATCH_BYTES = 4 << 20  # ... and at most this much data per batch


class LogWriter:
    """Appends the job's output; ``limit``: bytes of output.log past which output is dropped
    (0: no limit)."""

    def __init__(self, job_dir: str, *, limit: int = 0) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._log = os.open(os.path.join(job_dir, LOG_NAME), flags, 0o644)
        self._idx = os.open(os.path.join(job_dir, IDX_NAME), flags, 0o644)
        # a record torn by a crash would shift every later one: drop it (its data stays readable)
        size = os.fstat(self._idx).st_size
        if size % RECORD.size:
            os.ftruncate(self._idx, size - size % RECORD.size)
        self.records = size // RECORD.size  # chunks indexed so far (readers count by record)
        self.offset = os.fstat(self._log).st_size  # a restarted job appends to the same log
        self.limit = limit
        self.capped = False  # the limit was reached: nothing more is kept
        self.lost = 0  # bytes dropped for want of space, not yet told in the log
        self._why = ""  # ... and why, as the kernel says it
        self._line_start = _ends_a_line(os.path.join(job_dir, LOG_NAME), self.offset)
        self._reserve = os.path.join(job_dir, RESERVE_NAME)
        _hold(self._reserve, RESERVE_SIZE)

    def write(self, data: bytes, stream: int, when: float | None = None) -> None:
        if not data or self.capped:
            return
        when = time.time() if when is None else when
        if self.lost and not self._tell_lost(when):
            self.lost += len(data)  # still no room
            return
        if self.limit and self.offset + len(data) > self.limit:
            self._append(data[: max(0, self.limit - self.offset)], stream, when)
            self.capped = True
            self._mark(
                f"the output limit of {_fmt_bytes(self.limit)} was reached: "
                "the rest of the job's output is not kept",
                when,
            )
            return
        kept = self._append(data, stream, when)
        self.lost += len(data) - kept

    def finish(self) -> None:
        """The job is done: give up the reserve, so that what was lost can be said now."""
        _release(self._reserve)
        if self.lost:
            self._tell_lost(time.time())

    def close(self) -> None:
        _release(self._reserve)
        os.close(self._log)
        os.close(self._idx)

    def _tell_lost(self, when: float) -> bool:
        if self._mark(f"{self.lost} bytes of output lost: {self._why}", when):
            self.lost = 0
            return True
        return False

    def _mark(self, text: str, when: float) -> bool:
        """A line of ours in the log (on stderr), on a line of its own; True once written."""
        line = ("" if self._line_start else "\n") + f"[neuro: {text}]\n"
        data = line.encode()
        return self._append(data, STDERR, when) == len(data)

    def _append(self, data: bytes, stream: int, when: float) -> int:
        """Write and index ``data``; returns how many of its bytes are in the log (fewer when
        the disk is full: the rest is not written at all, never half-indexed)."""
        done = 0
        view = memoryview(data)
        try:
            while done < len(data):
                done += os.write(self._log, view[done:])
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            self._why = (e.strerror or str(e)).lower()
        if not done:
            return 0
        try:
            if os.write(self._idx, RECORD.pack(self.offset, when, stream, done)) != RECORD.size:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.records += 1
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            # a torn record would shift every later one (shrinking needs no space); the bytes
            # stay in the log without one: raw reads have them, attach and timestamps skip them
            os.ftruncate(self._idx, self.records * RECORD.size)
        self.offset += done
        self._line_start = data[done - 1 : done] == b"\n"
        return done


def _hold(path: str, size: int) -> None:
    """Take ``size`` bytes of the disk into ``path`` now (best effort: a disk already full
    gives none)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        _release(path)
    finally:
        os.close(fd)


def _release(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _ends_a_line(path: str, size: int) -> bool:
    """Whether the log so far is empty or ends with a newline (a restarted job's log goes on)."""
    if not size:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        return os.pread(fd, 1, size - 1) == b"\n"
    finally:
        os.close(fd)


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


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
    while not (os.path.exists(log_path) and os.path.exists(idx_path)):  # noqa: ASYNC240 - two stats per poll
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


def truncate(job_dir: str, log_offset: int, log_records: int) -> None:
    """Cut output.log/.idx back to ``log_offset`` bytes and ``log_records`` records (a writer
    that recorded how far it got resumes from there; what was past it is written again)."""
    for name, size in ((LOG_NAME, log_offset), (IDX_NAME, log_records * RECORD.size)):
        p = os.path.join(job_dir, name)
        try:
            if os.path.getsize(p) > size:
                os.truncate(p, size)
        except FileNotFoundError:
            pass
