"""A docker TTY job's input: bytes to its container's stdin, over the attach stream the pump
opened with the container (attach mode), else over an attach of its own opened when the first
byte comes (after a server restart) whose output is dropped (the pump has it)."""

from __future__ import annotations

import asyncio

from . import api
from .engine import Engine, phase_of


class TtyInput:
    def __init__(self, engine: Engine, container_id: str, attach: api.Hijack | None) -> None:
        """``attach``: the pump's stream, which carries stdin too (None: none yet)."""
        self.engine = engine
        self.cid = container_id
        self._pumps = attach  # the pump's own stream: the pump closes it
        self.conn = attach
        self._lock = asyncio.Lock()
        self._drain: asyncio.Task[None] | None = None

    def forget(self, stream: api.Hijack) -> None:
        """The pump closes ``stream``: input goes over an attach of its own from now on."""
        if self.conn is stream:
            self.conn = None
        if self._pumps is stream:
            self._pumps = None

    async def write(self, data: bytes) -> None:
        async with self._lock:
            for _ in range(2):
                conn = self.conn
                if conn is None:
                    # only to a running container: Podman would prepare an exited one to run again
                    info = await self.engine.container_info(self.cid)
                    if info is None or phase_of(info) != "running":
                        return
                    conn = await self.engine.attach_stream(self.cid, tty=True, stdin=True)
                    self.conn = conn
                    self._drain = asyncio.create_task(_drain(conn))
                if await conn.write(data):
                    return
                await self.close()

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and conn is not self._pumps:
            await conn.close()
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None


async def _drain(conn: api.Hijack) -> None:
    while await conn.read() is not None:
        pass
