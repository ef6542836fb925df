"""Attach sessions of the docker runtime: a client attached to a job reads the job's log by record
from where it attached (or from the start, with ``logs``), so it gets every byte once (the
job's pump, pump.py, is the log's only writer); stdin goes through the pump."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..logfile import IDX_NAME, LOG_NAME, RECORD
from .pump import Pump

SESSION_READ_RECORDS = 256
SESSION_READ_BYTES = 1 << 20


class AttachSession:
    """A client attached to a job: reads the job's log by record from where it attached (or
    from the start, with ``logs``), so it gets every byte once; stdin goes through the pump."""

    def __init__(
        self,
        pump: Pump,
        *,
        stdout: bool,
        stderr: bool,
        stdin: bool,
        logs: bool,
        resize: Callable[[int, int], Any],
    ) -> None:
        self._pump = pump
        self.job_id = pump.job_id
        self.tty = pump.tty
        self.stdin = stdin
        self.exit_code: int | None = None  # the job's, once it ended while attached
        self._streams = {s for s, on in ((1, stdout), (2, stderr)) if on}
        self._rec = 0 if logs else pump.records
        self._resize = resize
        self._log = os.open(os.path.join(pump.dir, LOG_NAME), os.O_RDONLY | os.O_CLOEXEC)
        self._idx = os.open(os.path.join(pump.dir, IDX_NAME), os.O_RDONLY | os.O_CLOEXEC)
        self._closed = False

    def _take(self, upto: int) -> tuple[int, bytes] | None:
        """The next run of records of one wanted stream (the others are skipped)."""
        count = min(upto - self._rec, SESSION_READ_RECORDS)
        raw = os.pread(self._idx, count * RECORD.size, self._rec * RECORD.size)
        recs = list(RECORD.iter_unpack(raw[: len(raw) - len(raw) % RECORD.size]))
        stream = start = end = 0
        for offset, _when, s, length in recs:
            if s not in self._streams:
                if stream:
                    break  # the run ends here; this record is taken next time
                self._rec += 1
                continue
            if stream and (s != stream or offset != end or end - start >= SESSION_READ_BYTES):
                break
            self._rec += 1
            if not stream:
                stream, start = s, offset
            end = offset + length
        if not stream:
            return None
        data = os.pread(self._log, end - start, start)
        return stream, data

    async def read(self) -> tuple[int, bytes] | None:
        while not self._closed:
            records = self._pump.records
            if self._rec < records:
                got = self._take(records)
                if got is not None:
                    return got
                continue
            if self._pump.finished:
                if self._pump.exit is not None:
                    self.exit_code = self._pump.exit.exit_code
                break
            await self._pump.changed()
        await self.close()
        return None

    async def write(self, data: bytes) -> None:
        if self.stdin and not self._closed:
            await self._pump.write_stdin(data)

    async def close_stdin(self) -> None:
        if self.stdin and not self._closed:  # stdin is only there on a TTY: its EOF character
            await self._pump.write_stdin(b"\x04")

    async def resize(self, height: int, width: int) -> None:
        if self.tty and not self._closed:
            await self._resize(height, width)

    async def wait(self) -> int | None:
        return None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._log)
            os.close(self._idx)
            self._pump._notify()  # wake a read() waiting in another task
