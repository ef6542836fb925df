"""The HTTP ingress in process: a fake runtime whose connect_port reaches servers in this test,
an aiohttp one (keep-alive, pipelining, chunked bodies, websockets) that records every request
as the job sees it, and raw ones that misbehave.  What is checked: no request of a connection
carries our credentials to the job; what cannot be framed safely is refused, never forwarded;
streams, uploads, downloads and websockets still pass; sessions are job-scoped cookies."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from neuro_server.auth import Authenticator, AuthError, load_secret
from neuro_server.ingress import Ingress
from neuro_server.model import Container, HttpPort, JobRequest, JobStatus, Resources
from neuro_server.runtime.base import RuntimeError_
from neuro_server.store import Store

TIMEOUT = 10.0
BLOB = os.urandom(12 << 20)


class FakeRuntime:
    """connect_port to an address of this test's choosing, per job."""

    def __init__(self) -> None:
        self.targets: dict[str, tuple[str, int]] = {}
        self.connects = 0

    async def connect_port(self, job_id: str, port: int) -> tuple[Any, Any]:
        if job_id not in self.targets:
            raise RuntimeError_(
                f"nothing listens on port {port} in job {job_id}", reason="PortNotListening"
            )
        self.connects += 1
        return await asyncio.open_connection(*self.targets[job_id])


def _echo_app(seen: list[dict[str, Any]]) -> web.Application:
    def record(request: web.Request, **extra: Any) -> dict[str, Any]:
        entry = {
            "path": request.path_qs,
            "method": request.method,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "peer": request.transport.get_extra_info("peername")[1] if request.transport else None,
            **extra,
        }
        seen.append(entry)
        return entry

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(record(request, body=len(await request.read())))

    async def upload(request: web.Request) -> web.Response:
        digest, length = hashlib.sha256(), 0
        async for data in request.content.iter_any():
            digest.update(data)
            length += len(data)
        return web.json_response(record(request, sha256=digest.hexdigest(), length=length))

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=BLOB)

    async def blob_chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(BLOB), 100_000):
            await resp.write(BLOB[i : i + 100_000])
        await resp.write_eof()
        return resp

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        record(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(f"echo: {msg.data}")
        return ws

    async def set_cookie(request: web.Request) -> web.Response:
        resp = web.Response(text="ok")
        resp.headers.add("Set-Cookie", "neuro_session=tossed; Domain=jobs.localhost; Path=/")
        resp.headers.add("Set-Cookie", "dat=planted; Domain=jobs.localhost; Path=/")
        resp.headers.add("Set-Cookie", "app=1; Path=/")
        return resp

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_post("/upload", upload)
    app.router.add_get("/blob", blob)
    app.router.add_get("/blob-chunked", blob_chunked)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/set-cookie", set_cookie)
    return app


@dataclass
class Setup:
    ingress: Ingress
    store: Store
    runtime: FakeRuntime
    seen: list[dict[str, Any]]
    tokens: dict[str, str]
    jobs: dict[str, str] = field(default_factory=dict)  # name -> id
    clients: list[Client] = field(default_factory=list)

    def host(self, name: str) -> str:
        return f"{self.jobs[name]}.jobs.localhost:{self.ingress.port}"

    async def client(self) -> Client:
        c = Client(*await asyncio.open_connection("127.0.0.1", self.ingress.port))
        self.clients.append(c)
        return c

    async def login(self, name: str, user: str = "alice") -> str:
        """A browser's session cookie for a job, through its one-time login link."""
        job = self.store.get_job(self.jobs[name])
        assert job is not None
        link = urlsplit(self.ingress.login_url(job, user))
        c = await self.client()
        c.send(request(self.host(name), f"{link.path}?{link.query}"))
        status, headers, _ = await c.response()
        await c.close()
        assert status == 302, status
        return headers["set-cookie"][0].split(";")[0].split("=", 1)[1]

    def add_job(
        self,
        name: str,
        owner: str = "alice",
        auth: bool = True,
        target: tuple[str, int] | None = None,
    ) -> str:
        job_id = f"job-{uuid.uuid4()}"
        spec = JobRequest(
            Container(
                "ubuntu",
                Resources(cpu=0.5, memory=1 << 30),
                http=HttpPort(8080, requires_auth=auth),
            ),
            cluster_name="local",
            org_name="local",
            project_name="default",
        )
        self.store.create_job(
            job_id=job_id, owner=owner, name=name, tags=(), life_span=None, reason="", spec=spec
        )
        self.store.set_status(job_id, JobStatus.RUNNING)
        if target is not None:
            self.runtime.targets[job_id] = target
        self.jobs[name] = job_id
        return job_id


def request(
    host: str,
    path: str = "/echo",
    headers: tuple[tuple[str, str], ...] = (),
    method: str = "GET",
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Client:
    """A raw HTTP/1.1 client: what it sends is exactly what the test wrote."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self) -> tuple[int, dict[str, list[str]], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        start, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers: dict[str, list[str]] = {}
        for line in lines:
            k, _, v = line.partition(":")
            headers.setdefault(k.strip().lower(), []).append(v.strip())
        if "chunked" in headers.get("transfer-encoding", []):
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await self.reader.readexactly(size + 2)
                body = body[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            n = int(headers.get("content-length", ["0"])[0])
            body = await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT)
        return int(start.split()[1]), headers, body

    async def closed(self) -> bool:
        """Whether the ingress closes the connection (with nothing more to read)."""
        try:
            return await asyncio.wait_for(self.reader.read(), TIMEOUT) == b""
        except ConnectionError:
            return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    data = tmp_path / "server"
    data.mkdir(mode=0o700)
    store = Store(data / "neuro.db")
    for user in ("alice", "bob"):
        store.add_user(user)
    auth = Authenticator(store, load_secret(data))
    runtime = FakeRuntime()
    seen: list[dict[str, Any]] = []
    echo = TestServer(_echo_app(seen), host="127.0.0.1")
    await echo.start_server()
    state = SimpleNamespace(
        store=store, runtime=runtime, auth=auth, config=SimpleNamespace(data_dir=data)
    )
    ingress = Ingress(state, "127.0.0.1", 0, "jobs.localhost")
    await ingress.start()
    s = Setup(ingress, store, runtime, seen, {u: auth.issue(u) for u in ("alice", "bob")})
    target = ("127.0.0.1", int(echo.port or 0))
    s.add_job("web", target=target)
    s.add_job("other", target=target)
    s.add_job("open", auth=False, target=target)
    try:
        yield s
    finally:
        for c in s.clients:
            await c.close()
        await ingress.close()
        await echo.close()
        store.close()


def _ours_in(entry: dict[str, Any], setup: Setup, *cookies: str) -> list[str]:
    """Which of our credentials the job saw in one request."""
    text = json.dumps(entry["headers"])
    found = [t for t in (*setup.tokens.values(), *cookies) if t in text]
    return found + [
        f"{k}: {v}" for k, v in entry["headers"] if k.lower() == "cookie" and "neuro_session" in v
    ]


async def test_no_request_of_a_keep_alive_connection_carries_our_credentials(setup: Setup) -> None:
    cookie = await setup.login("web")
    token = setup.tokens["alice"]
    c = await setup.client()
    host = setup.host("web")
    sent = [
        (("Authorization", f"Bearer {token}"), ("Cookie", "app=1")),
        (
            ("Cookie", f"theme=dark; neuro_session={cookie}; app=2"),
            ("Authorization", f"Bearer {token}"),
        ),
        (
            ("Cookie", f"neuro_session={cookie}"),
            ("Authorization", "Bearer the-jobs-own-token"),
            ("X-App", "kept"),
        ),
    ]
    for i, headers in enumerate(sent):
        c.send(request(host, f"/echo?n={i}", headers))
        status, _, body = await c.response()
        assert status == 200, body
    await c.close()
    assert [e["path"] for e in setup.seen] == ["/echo?n=0", "/echo?n=1", "/echo?n=2"]
    assert len({e["peer"] for e in setup.seen}) == 1 and setup.runtime.connects == 1  # one
    for entry in setup.seen:
        assert _ours_in(entry, setup, cookie) == [], entry
    kept = [
        [k, v]
        for e in setup.seen
        for k, v in e["headers"]
        if k in ("Cookie", "Authorization", "X-App")
    ]
    assert kept == [
        ["Cookie", "app=1"],
        ["Cookie", "theme=dark; app=2"],
        ["Authorization", "Bearer the-jobs-own-token"],
        ["X-App", "kept"],
    ]


async def test_pipelined_requests_are_each_checked_and_answered_in_order(setup: Setup) -> None:
    cookie = await setup.login("web")
    other = await setup.login("other")
    host = setup.host("web")
    c = await setup.client()
    ours = (("Cookie", f"neuro_session={cookie}"),)
    c.send(
        b"".join(
            [
                request(host, "/echo?n=0", ours),
                request(host, "/echo?n=1", ours, method="POST", body=b"x" * 1000),
                request(host, "/echo?n=2", ours),
                request(host, "/echo?n=3", (("Cookie", f"neuro_session={other}"),)),
            ]
        )
    )
    answers = [await c.response() for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 401]
    assert [json.loads(a[2])["path"] for a in answers[:3]] == [f"/echo?n={i}" for i in range(3)]
    assert json.loads(answers[1][2])["body"] == 1000
    assert await c.closed()
    assert len(setup.seen) == 3 and all(_ours_in(e, setup, cookie, other) == [] for e in setup.seen)


async def test_chunked_upload_and_large_downloads_pass_intact(setup: Setup) -> None:
    token = setup.tokens["alice"]
    auth = {"Authorization": f"Bearer {token}", "Host": setup.host("web")}
    upload = os.urandom(5 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        for i, size in enumerate(range(0, len(upload), 300_001)):
            yield upload[size : size + 300_001]
            if i % 4 == 0:
                await asyncio.sleep(0)

    url = f"http://127.0.0.1:{setup.ingress.port}"
    async with aiohttp.ClientSession() as session:
        t0 = time.monotonic()
        async with session.post(f"{url}/upload", data=chunks(), headers=auth) as r:
            got = await r.json()
        up_s = time.monotonic() - t0
        assert r.status == 200 and got["length"] == len(upload)
        assert got["sha256"] == hashlib.sha256(upload).hexdigest()
        assert ["Transfer-Encoding", "chunked"] in got["headers"] and token not in json.dumps(got)
        for path in ("/blob", "/blob-chunked"):
            t0 = time.monotonic()
            async with session.get(f"{url}{path}", headers=auth) as r:
                body = await r.read()
            down_s = time.monotonic() - t0
            assert (
                r.status == 200 and hashlib.sha256(body).digest() == hashlib.sha256(BLOB).digest()
            )
            print(f"{path}: {len(BLOB) / down_s / 2**20:.0f} MiB/s")
    print(f"chunked upload: {len(upload) / up_s / 2**20:.0f} MiB/s")


async def test_a_websocket_upgrade_passes_and_then_is_spliced(setup: Setup) -> None:
    cookie = await setup.login("web")
    url = f"http://127.0.0.1:{setup.ingress.port}/ws"
    headers = {"Host": setup.host("web"), "Cookie": f"neuro_session={cookie}; app=1"}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        for i in range(3):
            await ws.send_str(f"hello {i}")
            msg = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert msg.data == f"echo: hello {i}"
    assert len(setup.seen) == 1 and _ours_in(setup.seen[0], setup, cookie) == []
    assert ["Cookie", "app=1"] in setup.seen[0]["headers"]


async def test_forged_expired_other_jobs_and_gone_users_sessions_are_refused(setup: Setup) -> None:
    cookie = await setup.login("web")
    sessions = setup.ingress.sessions
    payload, mac = cookie.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["u"] == "alice" and claims["j"] == setup.jobs["web"]
    assert 11.9 * 3600 < claims["e"] - time.time() <= 12 * 3600
    forged_payload = (
        base64.urlsafe_b64encode(json.dumps({**claims, "j": setup.jobs["other"]}).encode())
        .rstrip(b"=")
        .decode()
    )
    cases = {
        "other job's": (await setup.login("other"), 401),
        "forged": (f"{forged_payload}.{mac}", 401),
        "expired": (sessions.issue("alice", setup.jobs["web"], now=time.time() - 13 * 3600), 401),
        "a gone user's": (sessions.issue("mallory", setup.jobs["web"]), 401),
        "an API token as cookie": (setup.tokens["alice"], 401),
        "unshared bob's": (await setup.login("web", user="bob"), 403),
        "valid": (cookie, 200),
    }
    for what, (value, want) in cases.items():
        c = await setup.client()
        c.send(request(setup.host("web"), headers=(("Cookie", f"neuro_session={value}"),)))
        status, _, body = await c.response()
        await c.close()
        assert status == want, (what, status, body)
    with pytest.raises(AuthError):  # a session is not an API token
        setup.ingress.state.auth.verify(cookie)
    assert setup.store.remove_user("alice")  # revocation of the user counts at once
    c = await setup.client()
    c.send(request(setup.host("web"), headers=(("Cookie", f"neuro_session={cookie}"),)))
    assert (await c.response())[0] == 401
    await c.close()


async def test_a_later_request_for_another_job_is_refused_on_that_connection(setup: Setup) -> None:
    token = setup.tokens["alice"]
    c = await setup.client()
    auth = (("Authorization", f"Bearer {token}"),)
    c.send(request(setup.host("web"), headers=auth))
    assert (await c.response())[0] == 200
    c.send(request(setup.host("other"), headers=auth))
    status, _, body = await c.response()
    assert status == 421 and b"open another one" in body and await c.closed()
    assert len(setup.seen) == 1


CHUNKED = b"POST /echo HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "bad",
    [
        CHUNKED.replace(b"Transfer", b"Content-Length: 5\r\nTransfer")
        + b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: HOST\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: HOST\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /echo HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n x: y\r\n\r\n0\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: HOST\nX: y\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: HOST\r\nHost: HOST\r\n\r\n",
        b"POST /echo HTTP/1.0\r\nHost: HOST\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET http://HOST/echo HTTP/1.1\r\nHost: HOST\r\n\r\n",
        b"GET /echo HTTP/2.0\r\nHost: HOST\r\n\r\n",
        CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n",
        CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n",
        CHUNKED + b"3\r\nhello\r\n0\r\n\r\n",
    ],
    ids=[
        "cl-and-te",
        "two-lengths",
        "te-gzip",
        "space-before-colon",
        "folded",
        "bare-lf",
        "two-hosts",
        "te-in-1.0",
        "absolute-form",
        "http2",
        "chunk-size-space",
        "chunk-size-sign",
        "chunk-too-long",
    ],
)
async def test_what_cannot_be_framed_safely_is_answered_400_and_closed(
    setup: Setup, bad: bytes
) -> None:
    host = setup.host("open")
    c = await setup.client()
    c.send(request(host, "/echo?first"))
    assert (await c.response())[0] == 200
    c.send(bad.replace(b"HOST", host.encode()))
    status, _, body = await c.response()
    assert status == 400 and body.startswith(b"Bad request: "), (status, body)
    assert await c.closed()
    assert [e["path"] for e in setup.seen] == ["/echo?first"]  # nothing else reached a handler


async def test_an_http_1_0_request_is_the_last_of_its_connection(setup: Setup) -> None:
    host = setup.host("open")
    c = await setup.client()
    c.send(
        b"GET /echo?a HTTP/1.0\r\nHost: " + host.encode() + b"\r\nConnection: keep-alive\r\n"
        b"Content-Length: 0, 0\r\n\r\n" + request(host, "/echo?b")
    )
    assert (await c.response())[0] == 200
    assert await c.closed()
    assert [e["path"] for e in setup.seen] == ["/echo?a"]
    assert ["Content-Length", "0"] in setup.seen[0]["headers"]  # (as the ingress framed it)


async def test_expect_100_continue_passes(setup: Setup) -> None:
    c = await setup.client()
    c.send(
        request(
            setup.host("open"),
            "/upload",
            method="POST",
            headers=(("Expect", "100-continue"), ("Content-Length", "5")),
        )
    )
    status, _, _ = await c.response()
    assert status == 100
    c.send(b"hello")
    status, _, body = await c.response()
    assert status == 200 and json.loads(body)["sha256"] == hashlib.sha256(b"hello").hexdigest()


async def test_the_job_can_neither_set_our_cookie_nor_take_the_connection_to_h2c(
    setup: Setup,
) -> None:
    token = setup.tokens["alice"]
    c = await setup.client()
    c.send(request(setup.host("open"), "/set-cookie"))
    status, headers, _ = await c.response()
    assert status == 200 and headers["set-cookie"] == ["app=1; Path=/"]
    c.send(
        request(
            setup.host("open"),
            headers=(
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
                ("Authorization", f"Bearer {token}"),
            ),
        )
    )
    assert (await c.response())[0] == 200
    await c.close()
    names = {k.lower() for k, _ in setup.seen[-1]["headers"]}
    assert not names & {"upgrade", "http2-settings", "connection", "authorization"}, names


RawJob = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _raw_job(setup: Setup, name: str, handler: RawJob) -> asyncio.base_events.Server:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    setup.add_job(name, auth=False, target=server.sockets[0].getsockname()[:2])
    return server


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
    ],
    ids=["cl-and-te", "unasked-101", "two-lengths", "bare-lf", "not-http"],
)
async def test_a_job_answer_that_cannot_be_framed_is_a_502(setup: Setup, answer: bytes) -> None:
    async def job(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        await reader.read()
        writer.close()

    server = await _raw_job(setup, "raw", job)
    try:
        c = await setup.client()
        c.send(request(setup.host("raw")))
        status, _, body = await c.response()
        assert status == 502 and body.startswith(f"Job {setup.jobs['raw']}: ".encode()), body
        assert await c.closed()
    finally:
        server.close()


async def test_the_job_gets_bodies_framed_as_the_ingress_read_them(setup: Setup) -> None:
    """Chunk extensions and a request's trailers (where a Cookie could hide) are dropped;
    what the job reads is exactly one request per request sent."""
    got = bytearray()

    async def job(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            got.extend(data)
            if got.endswith(b"0\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        writer.close()

    server = await _raw_job(setup, "raw", job)
    try:
        c = await setup.client()
        c.send(
            f"POST /up HTTP/1.1\r\nHost: {setup.host('raw')}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
            + b"5;ext=1\r\nhello\r\n0\r\nCookie: neuro_session=x\r\nX-T: 1\r\n\r\n"
        )
        assert (await c.response())[0] == 200
        assert bytes(got).endswith(b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    finally:
        server.close()


async def test_a_dead_token_of_ours_is_stripped_too(setup: Setup) -> None:
    import jwt

    dead = jwt.encode(
        {"identity": "alice", "jti": "revoked-long-ago"},
        load_secret(setup.ingress.state.config.data_dir),
        algorithm="HS256",
    )
    c = await setup.client()
    for value in (f"Bearer {dead}", dead, "Bearer not-ours"):
        c.send(request(setup.host("open"), headers=(("Authorization", value),)))
        assert (await c.response())[0] == 200
    assert [[k, v] for k, v in setup.seen[2]["headers"] if k == "Authorization"] == [
        ["Authorization", "Bearer not-ours"]
    ]
    assert not any(k == "Authorization" for e in setup.seen[:2] for k, _ in e["headers"])


async def test_the_job_closing_an_idle_connection_closes_the_clients(setup: Setup) -> None:
    async def job(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()  # a keep-alive timeout, at once

    server = await _raw_job(setup, "raw", job)
    try:
        c = await setup.client()
        c.send(request(setup.host("raw")))
        assert (await c.response())[2] == b"hi"
        assert await c.closed()  # its next request goes to a new connection
    finally:
        server.close()
