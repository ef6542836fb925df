"""Reaching a port inside a container when its address cannot be reached from the engine's
host (rootless Podman and Docker put containers in a network namespace of their own): a relay
command exec'd in the container connects to 127.0.0.1:PORT there and carries the bytes over the
exec's stdin and stdout.  The first of socat, nc (busybox's too) and python3 that the image has
is used.  Exposed as an (asyncio-like) reader and writer pair, as ``connect_port`` returns."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from ..base import RuntimeError_, StdioSession

#: how the relay runs in the job's container: (job id, argv) -> an exec session (stdin open)
Exec = Callable[[str, Sequence[str]], Awaitable[StdioSession]]

PY_RELAY = r"""
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            s.shutdown(socket.SHUT_WR); return
        s.sendall(d)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"""

SETTLE = 0.3  # how long a relay that could not connect takes to say so


def commands(port: int) -> list[list[str]]:
    return [
        ["socat", "-", f"TCP:127.0.0.1:{port}"],
        ["nc", "127.0.0.1", str(port)],
        ["busybox", "nc", "127.0.0.1", str(port)],
        ["python3", "-c", PY_RELAY, str(port)],
    ]


async def connect(exec_relay: Exec, job_id: str, port: int) -> tuple[RelayReader, RelayWriter]:
    tried = []
    for argv in commands(port):
        session = await exec_relay(job_id, argv)
        try:
            code = await asyncio.wait_for(session.wait(), SETTLE)
        except TimeoutError:
            return RelayReader(session), RelayWriter(session)  # connected: it runs on
        await session.close()
        if code in (126, 127):  # not in this image: the next one
            tried.append(argv[0])
            continue
        raise RuntimeError_(
            f"nothing listens on port {port} in job {job_id}", reason="PortNotListening"
        )
    raise RuntimeError_(
        f"cannot reach port {port} in job {job_id}: the engine's containers are not reachable "
        f"from its host, and the image has none of {', '.join(dict.fromkeys(tried))} to relay",
        reason="PortNotListening",
    )


class RelayReader:
    """``read(n)`` as asyncio's StreamReader: up to n bytes (b"" at the end); n < 0: all, to
    the end."""

    def __init__(self, session: StdioSession) -> None:
        self._session = session
        self._buffer = b""
        self._eof = False

    async def _chunk(self) -> bytes:
        while not self._eof:
            item = await self._session.read()
            if item is None:
                self._eof = True
                break
            stream, data = item
            if stream == 1 and data:
                return data  # (stderr: the relay's own complaints, not the port's bytes)
        return b""

    async def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = [self._buffer]
            self._buffer = b""
            while chunk := await self._chunk():
                parts.append(chunk)
            return b"".join(parts)
        if not self._buffer:
            self._buffer = await self._chunk()
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


class RelayWriter:
    def __init__(self, session: StdioSession) -> None:
        self._session = session
        self._pending: list[bytes] = []
        self._closing: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        self._pending.append(bytes(data))

    async def drain(self) -> None:
        while self._pending:
            await self._session.write(self._pending.pop(0))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        async def eof() -> None:
            await self.drain()
            await self._session.close_stdin()

        self._closing = asyncio.ensure_future(eof())

    def close(self) -> None:
        async def close() -> None:
            with contextlib.suppress(Exception):
                await self.drain()
            await self._session.close()

        self._closing = asyncio.ensure_future(close())

    async def wait_closed(self) -> None:
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing
