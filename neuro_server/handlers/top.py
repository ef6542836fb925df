"""A job's telemetry (protocol 4.3): a JSON text frame about once a second while it runs (none
while it is pending or suspended); the stream ends when the job is finished."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from neuro_sdk._wire import TOP_PROTOCOL, telemetry_frame

from .common import app_state, fail, get_job, not_running


async def top(request: web.Request) -> web.WebSocketResponse:
    job = get_job(request)
    if job.is_finished:
        fail(web.HTTPNotFound, f"job {job.id} is not running: {not_running(job)}")
    st = app_state(request)
    ws = web.WebSocketResponse(protocols=(TOP_PROTOCOL,), heartbeat=30)
    await ws.prepare(request)

    async def send_samples() -> None:
        while True:
            current = st.store.get_job(job.id)
            if current is None or current.is_finished:
                return
            if current.status == "running":
                t = await st.runtime.stats(job.id)
                if t is not None:
                    await ws.send_str(
                        telemetry_frame(
                            cpu=t.cpu,
                            memory=t.memory,
                            timestamp=t.timestamp,
                            gpu_duty_cycle=t.gpu_duty_cycle,
                            gpu_memory=t.gpu_memory,
                        )
                    )
            await st.scheduler.wait_change(job.id, 1.0)

    async def client_gone() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return

    tasks = [asyncio.create_task(send_samples()), asyncio.create_task(client_gone())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if not ws.closed:
            await ws.close()
    return ws
