"""Monitoring endpoints of platform-monitoring: job output over a websocket (``log_ws``) and the
legacy chunked HTTP ``/log`` (protocol.md 4.2)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from neuro_sdk._wire import LOG_OFFSET_PROTOCOL, LOGS_PROTOCOL, Q_OFFSET

from ..runtime.base import State
from ..store import JobRecord
from .common import app_state, fail, get_job, parse_bool, parse_time

MAX_CLOSE_REASON = 120  # a close frame's reason is at most 123 bytes

log = logging.getLogger(__name__)


async def job_output(
    request: web.Request, job_id: str, since: datetime | None, timestamps: bool, skip: int = 0
) -> AsyncIterator[bytes]:
    """The job's output from the start (or ``since``), less its first ``skip`` bytes; follows
    while the job is pending or running, across its restarts, and ends only once the job is
    finished and its output drained: a run's end, or a record that lags behind it, is not the
    end of the log (a follower would take it for one and stop early)."""
    st = app_state(request)
    position = skip  # bytes of the stream the client has: skipped, or sent in an earlier run
    while True:
        job = await _runtime_job(st, job_id)
        if job is None:
            return
        produced = 0  # each run's read starts from the top: the log is append-only
        async for chunk in st.runtime.logs(
            job_id, since=since, timestamps=timestamps, follow=not job.is_finished
        ):
            start, produced = produced, produced + len(chunk)
            if produced > position:
                yield chunk[max(0, position - start) :]
                position = produced
        if job.is_finished or not await _next_run(st, job_id, job.restarts):
            return


async def _runtime_job(st: Any, job_id: str) -> JobRecord | None:
    """The job's record once it runs (out of pending, or of a restart's backoff) and the
    runtime knows it; None when there is nothing to read (no such job, or it never ran:
    cancelled while pending, failed to start)."""
    while True:
        job: JobRecord | None = st.store.get_job(job_id)
        # (between two runs the runtime knows the last one: wait for the next)
        if job is None or not (job.status == "pending" or job.restarting):
            break
        await st.scheduler.wait_change(job_id, 1.0)
    if job is None:
        return None
    # running in the store but unknown to the runtime: wait until the store catches up
    while (await st.runtime.inspect(job_id)).state == State.NOT_FOUND:
        if job.is_finished:
            return None
        await st.scheduler.wait_change(job_id, 1.0)
        job = st.store.get_job(job_id)
        if job is None:
            return None
    return job


async def _next_run(st: Any, job_id: str, restarts: int) -> bool:
    """A run's output ended: wait for the record to say how the job goes on.  True when it
    restarts (its next run appends to the same log), False once it is finished (or gone)."""
    while True:
        job = st.store.get_job(job_id)
        if job is None or job.is_finished:
            return False
        if job.restarts != restarts:
            return True
        await st.scheduler.wait_change(job_id, 1.0)


async def _pump(source: AsyncIterator[bytes], send: Callable[[bytes], Awaitable[None]]) -> None:
    async for chunk in source:
        if chunk:
            await send(chunk)


async def log_ws(request: web.Request) -> web.WebSocketResponse:
    job = get_job(request)
    since = parse_time(request.query.get("since"), "since")
    timestamps = parse_bool(request.query.get("timestamps"), "timestamps")
    parse_bool(request.query.get("debug"), "debug")
    offset = parse_offset(request.query.get(Q_OFFSET))
    ws = web.WebSocketResponse(protocols=(LOGS_PROTOCOL, LOG_OFFSET_PROTOCOL), heartbeat=30)
    await ws.prepare(request)
    skip = offset if ws.ws_protocol == LOG_OFFSET_PROTOCOL else 0  # asked for, and agreed to
    pump = asyncio.create_task(
        _pump(job_output(request, job.id, since, timestamps, skip), ws.send_bytes)
    )

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
            # a failed pump is told to the client by the close code (_ending)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    if not ws.closed:
        await ws.close(**_ending(pump, job.id))
    return ws


def _ending(pump: asyncio.Task[None], job_id: str) -> dict[str, Any]:
    """How to close the log websocket: a normal close (1000) says the log is complete, so it
    is sent only when the output ended on its own (the job is finished and its output
    drained); a failure closes with 1011 and its reason, which a client takes for a lost
    stream and resumes."""
    if pump.done() and not pump.cancelled() and pump.exception() is None:
        return {"code": WSCloseCode.OK}
    exc = None if not pump.done() or pump.cancelled() else pump.exception()
    if exc is not None and not isinstance(exc, ConnectionError):  # not just the client gone
        log.warning("log of %s failed: %s", job_id, exc)
    reason = f"the log stream failed: {exc}" if exc is not None else "the log stream stopped"
    cut = reason.encode()[:MAX_CLOSE_REASON].decode("utf-8", "ignore")  # whole characters
    return {"code": WSCloseCode.INTERNAL_ERROR, "message": cut.encode()}


def parse_offset(value: str | None) -> int:
    """Our extension's ``offset`` query parameter: a byte count, 0 when absent."""
    if value is None or value == "":
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        fail(web.HTTPBadRequest, f"invalid 'offset': {value[:40]!r} (a number of bytes)")
    return int(value)


async def log_http(request: web.Request) -> web.StreamResponse:
    job = get_job(request)
    since = parse_time(request.query.get("since"), "since")
    timestamps = parse_bool(request.query.get("timestamps"), "timestamps")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if request.method == "HEAD":
        return resp  # the headers only: no log to follow
    try:
        await _while_connected(
            request, _pump(job_output(request, job.id, since, timestamps), resp.write)
        )
    except Exception as e:  # noqa: BLE001 - answered below: the body must not look complete
        if not isinstance(e, ConnectionError):
            log.warning("log of %s failed: %s", job.id, e)
        # the last chunk (0-length) would say the log is complete: close without it, so the
        # client sees a truncated body (aiohttp's own write_eof then finds the transport gone)
        if request.transport is not None:
            request.transport.close()
        return resp
    await resp.write_eof()  # the job is finished and its output drained
    return resp


CLIENT_POLL = 0.5  # seconds between looks at whether a /log client is still there


async def _while_connected(request: web.Request, work: Awaitable[None]) -> None:
    """Run ``work`` while the client is connected.  aiohttp does not cancel a handler whose
    client left, and a log following a quiet job writes nothing for hours, so no failed
    write tells it either: the handler and its log reader would linger.  Raises
    ConnectionResetError when the client left first."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client left")
            await asyncio.wait({task}, timeout=CLIENT_POLL)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    task.result()
