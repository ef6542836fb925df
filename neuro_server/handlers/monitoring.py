"""Monitoring endpoints of platform-monitoring: job output over a websocket (``log_ws``) and the
legacy chunked HTTP ``/log`` (protocol.md 4.2)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from aiohttp import WSMsgType, web

from ..runtime.base import State
from .common import app_state, get_job, parse_bool, parse_time


async def job_output(request: web.Request, job_id: str, since: datetime | None,
                     timestamps: bool) -> AsyncIterator[bytes]:
    """The job's output from the start (or ``since``); follows while the job is pending or
    running and ends once the job is finished and its output drained."""
    st = app_state(request)
    while True:
        job = st.store.get_job(job_id)
        if job is None or job.status != "pending":
            break
        await st.scheduler.wait_change(job_id, 1.0)
    if job is None:
        return
    if st.runtime.inspect(job_id).state == State.NOT_FOUND:
        if job.is_finished:
            return  # never ran (cancelled while pending, failed to start): nothing to show
        # running in the store but unknown to the runtime: wait until the store catches up
        while not job.is_finished and st.runtime.inspect(job_id).state == State.NOT_FOUND:
            await st.scheduler.wait_change(job_id, 1.0)
            job = st.store.get_job(job_id)
            assert job is not None
        if st.runtime.inspect(job_id).state == State.NOT_FOUND:
            return
    async for chunk in st.runtime.logs(job_id, since=since, timestamps=timestamps,
                                       follow=not job.is_finished):
        yield chunk


async def _pump(source: AsyncIterator[bytes], send: Callable[[bytes], Awaitable[None]]) -> None:
    async for chunk in source:
        if chunk:
            await send(chunk)


async def log_ws(request: web.Request) -> web.WebSocketResponse:
    job = get_job(request)
    since = parse_time(request.query.get("since"), "since")
    timestamps = parse_bool(request.query.get("timestamps"), "timestamps")
    parse_bool(request.query.get("debug"), "debug")
    ws = web.WebSocketResponse(protocols=("logs.apolo.us",), heartbeat=30)
    await ws.prepare(request)
    pump = asyncio.create_task(_pump(job_output(request, job.id, since, timestamps), ws.send_bytes))

    async def client_gone() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    reader = asyncio.create_task(client_gone())
    try:
        await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (pump, reader):
            t.cancel()
        for t in (pump, reader):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
                await t
    if not ws.closed:
        await ws.close()
    return ws


async def log_http(request: web.Request) -> web.StreamResponse:
    job = get_job(request)
    since = parse_time(request.query.get("since"), "since")
    timestamps = parse_bool(request.query.get("timestamps"), "timestamps")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await _pump(job_output(request, job.id, since, timestamps), resp.write)
    await resp.write_eof()
    return resp
