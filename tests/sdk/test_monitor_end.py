"""``Jobs.monitor``: only the server's normal close (1000) is the end of a log; a connection
dropped mid-stream raises the SDK's connection error, and ``offset`` resumes it."""

from __future__ import annotations

import socket
import struct

import pytest
from aiohttp import WSCloseCode, web

from neuro_sdk import Client, ServerUnreachable

from .stub_server import StubServer

LOG = "/api/v1/jobs/job-1/log_ws"
OFFSET_PROTOCOL = "offset.logs.neuro"


def _drop(request: web.Request, *, reset: bool) -> None:
    """Cut the TCP connection under the websocket, as a SIGKILLed server does (the kernel
    sends a FIN), or with a reset (RST)."""
    transport = request.transport
    assert transport is not None
    if reset:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_connection_dropped_mid_stream_is_an_error(
    stub: StubServer, client: Client, reset: bool
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"line 1\n")
        await ws.send_bytes(b"line 2\n")
        _drop(request, reset=reset)
        return ws

    stub.add("GET", LOG, handler)
    chunks = []
    with pytest.raises(ServerUnreachable, match="Lost the log stream of job-1") as info:
        async for c in client.jobs.monitor("job-1"):
            chunks.append(c)
    assert b"".join(chunks) == b"line 1\nline 2\n"
    assert isinstance(info.value, OSError)  # what followers retry
    assert info.value.url.endswith(LOG)


@pytest.mark.parametrize(
    "code", [WSCloseCode.GOING_AWAY, WSCloseCode.INTERNAL_ERROR, WSCloseCode.TRY_AGAIN_LATER]
)
async def test_close_other_than_normal_is_an_error(
    stub: StubServer, client: Client, code: WSCloseCode
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"some")
        await ws.close(code=code, message=b"the log stream failed: disk error")
        return ws

    stub.add("GET", LOG, handler)
    chunks = []
    with pytest.raises(ServerUnreachable, match=f"code {int(code)} .*disk error"):
        async for c in client.jobs.monitor("job-1"):
            chunks.append(c)
    assert chunks == [b"some"]


async def test_normal_close_ends_the_log(stub: StubServer, client: Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"all of it\n")
        await ws.close(code=WSCloseCode.OK)
        return ws

    stub.add("GET", LOG, handler)
    assert [c async for c in client.jobs.monitor("job-1")] == [b"all of it\n"]
    rec = stub.only("GET", LOG)
    assert "Sec-WebSocket-Protocol" not in rec.headers  # what the official client sends too
    assert rec.query_string == ""


async def test_offset_skipped_by_a_server_that_agrees(stub: StubServer, client: Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(OFFSET_PROTOCOL,))
        await ws.prepare(request)
        assert ws.ws_protocol == OFFSET_PROTOCOL
        await ws.send_bytes(b"from offset 5\n")  # the server skipped them
        await ws.close()
        return ws

    stub.add("GET", LOG, handler)
    assert [c async for c in client.jobs.monitor("job-1", offset=5)] == [b"from offset 5\n"]
    rec = stub.only("GET", LOG)
    assert rec.query["offset"] == "5"
    assert rec.headers["Sec-WebSocket-Protocol"] == OFFSET_PROTOCOL


async def test_offset_skipped_here_for_a_server_that_does_not(
    stub: StubServer, client: Client
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()  # knows no such extension: sends from the start
        await ws.prepare(request)
        for piece in (b"ab", b"cdef", b"gh\n"):
            await ws.send_bytes(piece)
        await ws.close()
        return ws

    stub.add("GET", LOG, handler)
    assert [c async for c in client.jobs.monitor("job-1", offset=3)] == [b"def", b"gh\n"]
    with pytest.raises(ValueError, match="negative"):
        client.jobs.monitor("job-1", offset=-1)
