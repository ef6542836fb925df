"""A real loopback aiohttp.web server with a registry of stubbed routes.

Every request is recorded; a request that matches no stub gets a 599 answer and is kept in
``unexpected``, and :meth:`StubServer.verify` fails on it (and on stubs never used).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDictProxy, MultiMapping
from yarl import URL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    method: str
    path: str
    query_string: str
    query: MultiMapping[str]
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stub:
    method: str
    path: str
    handler: Handler
    calls: int = 0
    optional: bool = False


@dataclass
class StubServer:
    stubs: list[Stub] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    unexpected: list[Recorded] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    url: URL = field(default_factory=URL)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = URL(f"http://127.0.0.1:{port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> URL:
        return self.url / "api/v1"

    @property
    def monitoring_url(self) -> URL:
        return self.url / "api/v1/jobs"

    def add(
        self,
        method: str,
        path: str,
        handler: Handler | None = None,
        *,
        json: Any = None,
        status: int = 200,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        optional: bool = False,
    ) -> Stub:
        """Stub ``method path`` with a handler, a JSON answer, or a raw body."""
        if handler is None:

            async def handler(request: web.Request) -> web.StreamResponse:
                if body is not None:
                    return web.Response(status=status, body=body, headers=headers)
                if json is None:
                    return web.Response(status=status, headers=headers)
                return web.json_response(json, status=status, headers=headers)

        stub = Stub(method.upper(), path, handler, optional=optional)
        self.stubs.append(stub)
        return stub

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            query=request.query,
            headers=request.headers,
            body=await request.read(),
        )
        self.requests.append(rec)
        for stub in reversed(self.stubs):
            if stub.method == request.method and stub.path == request.path:
                stub.calls += 1
                return await stub.handler(request)
        self.unexpected.append(rec)
        return web.Response(status=599, text=f"unexpected request {request.method} {request.path}")

    def only(self, method: str, path: str) -> Recorded:
        """The single recorded request for ``method path``."""
        found = [r for r in self.requests if r.method == method.upper() and r.path == path]
        assert len(found) == 1, f"expected one {method} {path}, got {len(found)}"
        return found[0]

    def verify(self) -> None:
        assert not self.unexpected, [
            f"{r.method} {r.path}?{r.query_string}" for r in self.unexpected
        ]
        unused = [f"{s.method} {s.path}" for s in self.stubs if not s.calls and not s.optional]
        assert not unused, f"stubs never used: {unused}"


@dataclass
class WSPlayer:
    """A websocket handler for :meth:`StubServer.add` that plays a script and records frames.

    Script items: ``bytes`` is sent as a binary frame, ``str`` as a text frame, an ``int`` N
    waits until N more frames came from the client (or it closed).  After the script the server
    closes, or with ``read_to_end`` first waits for the client to close.
    """

    script: Sequence[bytes | str | int] = ()
    protocols: tuple[str, ...] = ()
    read_to_end: bool = False
    received: list[bytes | str] = field(default_factory=list)
    requested_protocols: str | None = None
    protocol: str | None = None
    client_closed: bool = False
    connections: int = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=self.protocols)
        await ws.prepare(request)
        self.connections += 1
        self.requested_protocols = request.headers.get("Sec-WebSocket-Protocol")
        self.protocol = ws.ws_protocol
        for item in self.script:
            if isinstance(item, int):
                await self._receive(ws, item)
            elif isinstance(item, str):
                await ws.send_str(item)
            else:
                await ws.send_bytes(item)
        if self.read_to_end:
            await self._receive(ws, None)
        await ws.close()
        return ws

    async def _receive(self, ws: web.WebSocketResponse, count: int | None) -> None:
        while count is None or count > 0:
            msg = await ws.receive()
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                self.received.append(msg.data)
                if count is not None:
                    count -= 1
            else:
                self.client_closed = True
                return
