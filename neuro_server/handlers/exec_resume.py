"""Resumable exec sessions (our extension of the single-websocket exec).

``exec?cmd=...&resumable=1`` starts a command whose output the server keeps (up to
``KEEP_BYTES``) with byte offsets; the first frame is ``0x05`` + ``{"exec_id", "offset": 0}``.
When the connection drops (no close frame), the command goes on for ``LINGER`` seconds, and
``exec?resume=<exec_id>&offset=N`` reconnects: the output from byte N on, then live, exactly
once.  A clean close (the client detached or is done) ends the command as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from neuro_sdk._wire import channel_frame, offset_frame, status_frame

from ..runtime.base import StdioSession
from .sessions import channel_input

KEEP_BYTES = 16 << 20
LINGER = 60.0
MAX_LIVE = 200


@dataclass
class LiveExec:
    id: str
    owner: str
    job_id: str
    session: StdioSession
    streams: frozenset[int]
    chunks: list[tuple[int, int, bytes]] = field(default_factory=list)  # (offset, fileno, data)
    start: int = 0  # offset of the oldest chunk kept
    end: int = 0  # offset after the newest chunk
    done: bool = False
    exit_code: int | None = None
    attached: int = 0
    left_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            while True:
                item = await self.session.read()
                if item is None:
                    break
                fileno, data = item
                if fileno not in self.streams:
                    continue
                self.chunks.append((self.end, fileno, data))
                self.end += len(data)
                while self.chunks and self.end - self.chunks[0][0] > KEEP_BYTES:
                    self.chunks.pop(0)
                    self.start = self.chunks[0][0] if self.chunks else self.end
                self._wake()
            self.exit_code = await self.session.wait()
        finally:
            self.done = True
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def close(self) -> None:
        await self.session.close()
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(BaseException):
                await self.pump


def registry(state: Any) -> dict[str, LiveExec]:
    live: dict[str, LiveExec] = state.live_execs
    return live


async def reap(state: Any) -> None:
    """End commands whose client left more than LINGER seconds ago, and forget ended ones."""
    live = registry(state)
    now = time.monotonic()
    for key, rec in list(live.items()):
        if (
            rec.attached == 0
            and rec.left_at is not None
            and (rec.done or now - rec.left_at > LINGER)
        ):
            del live[key]
            await rec.close()


def schedule_reap(state: Any) -> None:
    """Reap now (a clean end) and again once a dropped client's linger time is over."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = state.reap_tasks

    def run() -> None:
        task = loop.create_task(reap(state))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    run()
    loop.call_later(LINGER + 1, run)


def new_live_exec(
    state: Any, owner: str, job_id: str, session: StdioSession, streams: frozenset[int]
) -> LiveExec:
    rec = LiveExec(uuid.uuid4().hex, owner, job_id, session, streams)
    rec.pump = asyncio.create_task(rec.run())
    registry(state)[rec.id] = rec
    return rec


async def serve(ws: web.WebSocketResponse, rec: LiveExec, offset: int) -> None:
    """Send the output from ``offset`` on, then live, then the exit code; pass input on.
    On a clean close from the client the command ends; on a dropped connection it lingers."""
    rec.attached += 1
    rec.left_at = None
    await ws.send_bytes(offset_frame(offset, exec_id=rec.id))
    clean = False

    async def output() -> None:
        pos = offset
        while True:
            changed = rec.changed
            for start, fileno, data in list(rec.chunks):
                if start + len(data) <= pos:
                    continue
                part = data[max(0, pos - start) :]
                await ws.send_bytes(channel_frame(fileno, part))
                pos = start + len(data)
            if rec.done and pos >= rec.end:
                if rec.exit_code is not None:
                    await ws.send_bytes(status_frame(rec.exit_code))
                return
            await changed.wait()

    async def input_() -> None:
        nonlocal clean
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type == WSMsgType.CLOSE:
                    clean = True
                    return
                continue
            await channel_input(rec.session, msg.data)
        # aiohttp ends the loop on the client's close frame too
        clean = clean or ws.close_code == 1000

    out = asyncio.create_task(output())
    inp = asyncio.create_task(input_())
    try:
        await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        finished = out.done() and not out.cancelled() and out.exception() is None
    finally:
        for t in (out, inp):
            t.cancel()
        for t in (out, inp):
            with contextlib.suppress(BaseException):
                await t
        rec.attached -= 1
        rec.left_at = time.monotonic()
        if not ws.closed:
            await ws.close()
    if finished or clean:
        rec.left_at = 0.0  # reaped at once: the command ended, or the client left on purpose
        if not rec.done:
            await rec.close()
