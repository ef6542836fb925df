"""Forward a port of a running job over a websocket (protocol 4.4): the bytes of one TCP
connection to the job's port, in binary frames both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import WSMsgType, web

from ..runtime.base import RuntimeError_
from .common import app_state, fail
from .sessions import running_job


async def port_forward(request: web.Request) -> web.WebSocketResponse:
    raw = request.match_info["port"]
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        fail(web.HTTPBadRequest, f"invalid port {raw!r}: use 1-65535")
    job = running_job(request)
    try:
        reader, writer = await app_state(request).runtime.connect_port(job.id, port)
    except RuntimeError_ as e:
        # clients show "error" (the SDK takes the message from it): say what failed there too
        msg = f"Cannot connect to port {port}"
        body = json.dumps({"msg": msg, "error": f"{msg}: {e}"})
        raise web.HTTPBadRequest(
            text=body, content_type="application/json", headers={"X-Error": body}
        ) from None
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=8 << 20)
    try:
        await ws.prepare(request)
    except BaseException:
        writer.close()
        raise

    async def to_ws() -> None:
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return
            await ws.send_bytes(data)

    async def from_ws() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return

    tasks = [asyncio.create_task(to_ws()), asyncio.create_task(from_ws())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        if not ws.closed:
            await ws.close()
    return ws
