"""The toy runtime's sessions: attach reads the job's log by record (from where it attached, or
from the start with ``logs``); exec runs a plain subprocess with the job's environment and
working dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from neuro_server.runtime.logfile import IDX_NAME, LOG_NAME, RECORD


class LogSession:
    def __init__(
        self,
        job_dir: str,
        done: asyncio.Future[Any],
        *,
        stdout: bool,
        stderr: bool,
        logs: bool,
        poll: float,
    ) -> None:
        self._dir, self._done, self._poll = job_dir, done, poll
        self._streams = {s for s, on in ((1, stdout), (2, stderr)) if on}
        self._rec = 0 if logs else self._records()
        self._closed = False

    def _records(self) -> int:
        try:
            return os.path.getsize(os.path.join(self._dir, IDX_NAME)) // RECORD.size
        except OSError:
            return 0

    async def read(self) -> tuple[int, bytes] | None:
        while not self._closed:
            ended = self._done.done()  # (before reading: what was written by then is read)
            upto = self._records()
            if self._rec < upto:
                offset, _when, stream, length = RECORD.unpack(
                    _pread(os.path.join(self._dir, IDX_NAME), RECORD.size, self._rec * RECORD.size)
                )
                self._rec += 1
                if stream in self._streams:
                    return stream, _pread(os.path.join(self._dir, LOG_NAME), length, offset)
                continue
            if ended:
                break
            await asyncio.sleep(self._poll)
        return None

    async def write(self, data: bytes) -> None:
        pass

    async def close_stdin(self) -> None:
        pass

    async def resize(self, height: int, width: int) -> None:
        pass

    async def wait(self) -> int | None:
        return None

    async def close(self) -> None:
        self._closed = True


def _pread(path: str, length: int, offset: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


class ExecSession:
    def __init__(
        self,
        proc: asyncio.subprocess.Process | None,
        early: list[tuple[int, bytes]],
        code: int | None,
    ) -> None:
        self._proc = proc
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        for item in early:
            self._queue.put_nowait(item)
        self._code = code
        self._readers: list[asyncio.Task[None]] = []
        self._ender = None
        if proc is None:
            self._queue.put_nowait(None)
        else:
            self._readers = [
                asyncio.create_task(self._pump(proc.stdout, 1)),
                asyncio.create_task(self._pump(proc.stderr, 2)),
            ]
            self._ender: asyncio.Task[None] | None = asyncio.create_task(self._end())

    @classmethod
    async def open(
        cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: str, stdin: bool
    ) -> ExecSession:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as e:  # as a shell says it: 127 not found, 126 not executable
            message = f'neuro: cannot run "{argv[0]}": {e.strerror or e}\n'.encode()
            return cls(None, [(2, message)], 127 if isinstance(e, FileNotFoundError) else 126)
        return cls(proc, [], None)

    async def _pump(self, stream: asyncio.StreamReader | None, number: int) -> None:
        while stream is not None and (data := await stream.read(1 << 16)):
            await self._queue.put((number, data))

    async def _end(self) -> None:
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._queue.put(None)

    async def read(self) -> tuple[int, bytes] | None:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # (for every later read)
        return item

    async def write(self, data: bytes) -> None:
        if self._proc is not None and self._proc.stdin is not None and data:
            with contextlib.suppress(ConnectionError):
                self._proc.stdin.write(data)
                await self._proc.stdin.drain()

    async def close_stdin(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()

    async def resize(self, height: int, width: int) -> None:
        pass

    async def wait(self) -> int | None:
        if self._proc is not None and self._code is None:
            code = await self._proc.wait()
            self._code = 128 - code if code < 0 else code
        return self._code

    def kill(self) -> None:
        """SIGKILL the command and what it started (its session)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self.kill()
            await self._proc.wait()
        if self._readers:  # (the pipes' ends: read to their end, so that they are closed)
            await asyncio.wait(self._readers, timeout=2.0)
        for task in self._readers:
            task.cancel()
        if self._ender is not None:
            self._ender.cancel()
