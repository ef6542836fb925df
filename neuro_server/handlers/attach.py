"""Attach to a running job (protocol 4.1): its output, and its stdin on a TTY, over a websocket;
resize its terminal.  Our extension: ``offset=N|end`` resumes the output at a byte, announced
by a first OFFSET frame."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from neuro_sdk._wire import (
    ATTACH_PROTOCOL,
    CHANNELS_PROTOCOL,
    OFFSET_END,
    Q_LOGS,
    Q_OFFSET,
    offset_frame,
)

from ..runtime.base import RuntimeError_, State, StdioSession
from .common import app_state, fail
from .sessions import (
    flags,
    open_session,
    pump_session,
    running_job,
    runtime_error,
    terminal_size,
    websocket,
)


class _Skip:
    """A session whose first ``n`` output bytes are dropped (resuming at a byte offset)."""

    def __init__(self, session: StdioSession, n: int) -> None:
        self._s = session
        self._left = n

    async def read(self) -> tuple[int, bytes] | None:
        while True:
            item = await self._s.read()
            if item is None or self._left <= 0:
                return item
            fileno, data = item
            if len(data) <= self._left:
                self._left -= len(data)
                continue
            data, self._left = data[self._left :], 0
            return fileno, data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


async def _job_exit_code(request: web.Request, job_id: str, timeout: float = 10.0) -> int | None:
    st = app_state(request)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await st.runtime.inspect(job_id)
        if state.state == State.EXITED and state.exit is not None:
            code: int | None = state.exit.exit_code
            return code
        if asyncio.get_running_loop().time() > deadline:
            return None
        await st.scheduler.wait_change(job_id, 0.2)


async def attach(request: web.Request) -> web.WebSocketResponse:
    job = running_job(request)
    f = flags(request, "tty", "stdin", "stdout", "stderr", Q_LOGS)
    if not (f["stdin"] or f["stdout"] or f["stderr"]):
        fail(web.HTTPBadRequest, "attach needs at least one of stdin, stdout, stderr")
    tty = job.spec.container.tty
    stdin = f["stdin"] and tty  # only TTY jobs keep their stdin open (as the platform does)
    st = app_state(request)
    raw_offset = request.query.get(Q_OFFSET)
    offset: int | None = None
    if raw_offset is not None:
        if raw_offset == OFFSET_END:
            offset = await st.runtime.log_size(job.id)
        else:
            try:
                offset = int(raw_offset)
            except ValueError:
                offset = -1
            if offset < 0:
                fail(web.HTTPBadRequest, f"invalid offset {raw_offset!r}: a byte count or 'end'")
    try:
        session: StdioSession = await open_session(
            request,
            job.id,
            lambda: st.runtime.attach(
                job.id,
                stdin=stdin,
                stdout=f["stdout"],
                stderr=f["stderr"] and not tty,
                logs=f[Q_LOGS] or offset is not None,
            ),
        )
    except RuntimeError_ as e:
        raise runtime_error(e) from None
    if offset:
        session = _Skip(session, offset)
    ws, v2 = websocket(request, (CHANNELS_PROTOCOL, ATTACH_PROTOCOL))
    try:
        await ws.prepare(request)
        if offset is not None and v2:
            await ws.send_bytes(offset_frame(offset))
    except BaseException:
        await session.close()
        raise
    await pump_session(ws, session, v2=v2, exit_code=lambda: _job_exit_code(request, job.id))
    return ws


async def resize(request: web.Request) -> web.Response:
    job = running_job(request)
    h, w = terminal_size(request)
    try:
        await app_state(request).runtime.resize(job.id, h, w)
    except RuntimeError_ as e:
        raise runtime_error(e) from None
    return web.Response(status=204)
