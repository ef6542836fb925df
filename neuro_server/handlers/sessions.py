"""What the handlers that talk to running jobs share: the running job a request names, at most
MAX_SESSIONS attach and exec sessions per job, the websocket of the channel framing and the
pump between it and a session, terminal sizes, runtime errors as 4xx."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from neuro_sdk._wire import (
    ATTACH_PROTOCOL,
    CHANNELS_PROTOCOL,
    CLOSE,
    MAX_TERMINAL,
    Q_HEIGHT,
    Q_WIDTH,
    RESIZE,
    STDIN,
    channel_frame,
    parse_resize,
    status_frame,
)

from ..model import JobRecord
from ..runtime.base import RuntimeError_, StdioSession
from .common import app_state, error_response, fail, get_job, not_running, parse_bool

MAX_SESSIONS = 64  # attach and exec sessions open on one job (its supervisor takes 128 clients)


class _Counted:
    """A session that counts among its job's open sessions until it is closed."""

    def __init__(self, session: StdioSession, counts: dict[str, int], job_id: str) -> None:
        self._s = session
        self._counts = counts
        self._job_id = job_id
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            _release(self._counts, self._job_id)
        await self._s.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def _release(counts: dict[str, int], job_id: str) -> None:
    counts[job_id] -= 1
    if not counts[job_id]:
        del counts[job_id]


async def open_session(
    request: web.Request, job_id: str, opener: Callable[[], Awaitable[StdioSession]]
) -> StdioSession:
    """Open an attach or exec session with the job, at most MAX_SESSIONS at a time: past
    its supervisor's own limit it would drop the connection, and the server answer 500."""
    counts: dict[str, int] = app_state(request).sessions
    if counts.get(job_id, 0) >= MAX_SESSIONS:
        fail(
            web.HTTPTooManyRequests,
            f"job {job_id} has {MAX_SESSIONS} attach and exec sessions open: close one first",
        )
    counts[job_id] = counts.get(job_id, 0) + 1  # taken before waiting: others count it
    try:
        session = await opener()
    except ConnectionError as e:  # (the supervisor hung up: it is gone, or full)
        _release(counts, job_id)
        raise RuntimeError_(
            f"job {job_id} did not take the session: {e}", reason="Unavailable"
        ) from None
    except BaseException:
        _release(counts, job_id)
        raise
    return _Counted(session, counts, job_id)


def running_job(request: web.Request) -> JobRecord:
    job = get_job(request, need="write")
    if job.status != "running" or job.restarting:
        fail(web.HTTPNotFound, f"job {job.id} is not running: {not_running(job)}")
    return job


def flags(request: web.Request, *names: str) -> dict[str, bool]:
    return {n: parse_bool(request.query.get(n), n) for n in names}


def runtime_error(e: RuntimeError_) -> web.HTTPException:
    if e.reason in ("NotFound", "NotRunning"):
        return error_response(web.HTTPNotFound, str(e))
    return error_response(web.HTTPBadRequest, str(e))


def terminal_size(request: web.Request) -> tuple[int, int]:
    """(height, width) of the ``h`` and ``w`` query parameters."""
    try:
        w, h = int(request.query[Q_WIDTH]), int(request.query[Q_HEIGHT])
    except (KeyError, ValueError):
        fail(web.HTTPBadRequest, "'w' and 'h' must be integers")
    if not (0 < w <= MAX_TERMINAL and 0 < h <= MAX_TERMINAL):
        fail(web.HTTPBadRequest, "'w' and 'h' must be between 1 and 10000")
    return h, w


async def pump_session(
    ws: web.WebSocketResponse,
    session: StdioSession,
    *,
    v2: bool,
    exit_code: Any = None,
    streams: frozenset[int] = frozenset({1, 2}),
) -> None:
    """Copy the session's output (the ``streams`` asked for) to the websocket and the
    websocket's input to the session until either ends; then send the exit code frame (v2)
    when there is one."""

    async def output() -> None:
        while True:
            item = await session.read()
            if item is None:
                return
            fileno, data = item
            if fileno in streams:
                await ws.send_bytes(channel_frame(fileno, data))

    async def input_() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    return
                continue
            if v2:
                await channel_input(session, msg.data)
            else:
                await session.write(msg.data)

    out = asyncio.create_task(output())
    inp = asyncio.create_task(input_())
    try:
        done, _ = await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if out in done and not out.cancelled() and out.exception() is None and exit_code:
            code = await exit_code()
            if v2 and code is not None and not ws.closed:
                await ws.send_bytes(status_frame(code))
    finally:
        for t in (out, inp):
            t.cancel()
        for t in (out, inp):
            with contextlib.suppress(
                asyncio.CancelledError, ConnectionError, RuntimeError, Exception
            ):
                await t
        await session.close()
        if not ws.closed:
            await ws.close()


async def channel_input(session: StdioSession, data: bytes) -> None:
    """Pass a client's frame of the channel framing on to the session: stdin, a terminal size
    (garbage is ignored), or the end of stdin; other channels are ignored."""
    if not data:
        return
    channel, payload = data[0], data[1:]
    if channel == STDIN:
        await session.write(payload)
    elif channel == RESIZE and (size := parse_resize(payload)) is not None:
        await session.resize(*size)
    elif channel == CLOSE and payload[:1] == bytes([STDIN]):
        await session.close_stdin()


def websocket(
    request: web.Request, protocols: tuple[str, ...] = ()
) -> tuple[web.WebSocketResponse, bool]:
    """The websocket to answer with, and whether the client speaks the channel framing."""
    asked = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    v2 = any(p in (CHANNELS_PROTOCOL, ATTACH_PROTOCOL) for p in asked)
    return web.WebSocketResponse(protocols=protocols, heartbeat=30, max_msg_size=8 << 20), v2
