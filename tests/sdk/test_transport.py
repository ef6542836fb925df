"""The light transport of plain requests (neuro_sdk/_transport.py) against aiohttp's path.

Every behaviour runs three ways: ``light`` (asyncio streams, on the test's loop), ``blocking``
(no event loop: the coroutine is driven by ``send(None)`` in a worker thread, as the CLI's
one-shot commands drive theirs, and must finish without ever suspending) and ``aiohttp``
(the client's aiohttp session, as before the light transport).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from neuro_sdk import (
    Client,
    ClientError,
    NeuroError,
    ServerUnreachable,
    _transport,
)

from .helpers import TOKEN, job_json, server_config
from .stub_server import StubServer
from .test_errors import STATUS_CASES, STATUS_IDS, free_port

MODES = ["light", "blocking", "aiohttp"]
Fn = Callable[[Client], Coroutine[Any, Any, Any]]


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine with no event loop, as the CLI's one-shot commands do."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    coro.close()
    raise AssertionError("the coroutine suspended: it waited on an event loop")


async def run_in(mode: str, client: Client, fn: Fn) -> Any:
    if mode == "aiohttp":
        client._light = None  # every request through the aiohttp session
    if mode == "blocking":
        return await asyncio.to_thread(drive, fn(client))
    return await fn(client)


def make_client(url: URL | str, raw_config: dict[str, Any] | None = None, **kw: Any) -> Client:
    return Client(url, TOKEN, server_config=raw_config or {"clusters": []}, **kw)


def ndjson(*jobs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(j).encode() + b"\n" for j in jobs)


# -- the same results and the same requests ------------------------------------------------


async def scenario(client: Client) -> dict[str, Any]:
    """Plain requests of every kind the SDK makes."""
    out: dict[str, Any] = {}
    out["list"] = [j async for j in client.jobs.list(name="x", tags=["a", "b"])]
    out["list-json"] = [j.id async for j in client.jobs.list(owners=["bob"])]
    out["status"] = await client.jobs.status("job-1")
    out["tags"] = await client.jobs.tags()
    await client.jobs.kill("job-1")
    out["capacity"] = await client.jobs.get_capacity()
    await client.jobs.bump_life_span("job-1", 60)
    out["ls"] = await client.storage.ls("dir")
    async with client.storage.open("big") as chunks:
        out["big"] = b"".join([c async for c in chunks])
    out["gzip"] = await client.jobs.shares("job-gz")
    for status, _ in STATUS_CASES:
        try:
            await client.jobs.status(f"job-{status}")
        except ClientError as e:
            out[f"error {status}"] = (type(e), e.status, str(e))
    return out


def stub_scenario(stub: StubServer) -> None:
    async def ndjson_handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("owner") == "bob":
            return web.json_response({"jobs": [job_json("job-j")]})
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)  # chunked, one write a job
        for i in range(3):
            await resp.write(ndjson(job_json(f"job-{i}")))
        await resp.write_eof()
        return resp

    big = bytes(range(256)) * 1200  # 300 KiB: many reads
    shares = json.dumps([{"user": "bob", "action": "read"}]).encode()
    stub.add("GET", "/api/v1/jobs", ndjson_handler)
    stub.add("GET", "/api/v1/jobs/job-1", json=job_json("job-1"))
    stub.add("GET", "/api/v1/tags", json={"tags": ["a", "b"]})
    stub.add("DELETE", "/api/v1/jobs/job-1", status=204)
    stub.add("GET", "/api/v1/jobs/capacity", json={"cpu-small": 3})
    stub.add("PUT", "/api/v1/jobs/job-1/max_run_time_minutes", status=204)
    stub.add(
        "GET",
        "/storage/dir",
        json={
            "FileStatuses": {
                "FileStatus": [
                    {"path": "a.txt", "type": "FILE", "length": 3, "modificationTime": 1700000000}
                ]
            }
        },
    )
    stub.add("GET", "/storage/big", body=big)
    stub.add(
        "GET",
        "/api/v1/jobs/job-gz/shares",
        body=gzip.compress(shares),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    for status, _ in STATUS_CASES:
        stub.add(
            "GET", f"/api/v1/jobs/job-{status}", json={"error": f"boom {status}"}, status=status
        )


HEADERS = (
    "Authorization",
    "User-Agent",
    "Content-Type",
    "Accept",
    "Accept-Encoding",
    "Content-Length",
    "Transfer-Encoding",
)


async def test_transport_same_results_and_requests(stub: StubServer) -> None:
    stub_scenario(stub)
    raw = server_config(str(stub.monitoring_url))
    raw["clusters"][0]["storage_url"] = str(stub.url / "storage")
    results, requests = {}, {}
    for mode in MODES:
        stub.requests.clear()
        async with make_client(stub.api_url, raw) as client:
            results[mode] = await run_in(mode, client, scenario)
            assert (client._session is None) == (mode != "aiohttp")  # aiohttp never loaded
        requests[mode] = [
            (r.method, r.path, r.query_string, r.body, {h: r.headers.get(h) for h in HEADERS})
            for r in stub.requests
        ]
    assert results["light"] == results["aiohttp"] == results["blocking"]
    assert [j.id for j in results["light"]["list"]] == ["job-0", "job-1", "job-2"]
    assert results["light"]["big"] == bytes(range(256)) * 1200
    assert results["light"]["gzip"] == [("bob", "read")]
    assert requests["light"] == requests["aiohttp"] == requests["blocking"]


@pytest.mark.parametrize("mode", MODES)
async def test_transport_posts_json(stub: StubServer, raw_config: dict, mode: str) -> None:
    stub.add("POST", "/api/v1/users/bob/permissions", status=201)
    async with make_client(stub.api_url, raw_config) as client:
        await run_in(mode, client, lambda c: c.jobs.share("job-1", "bob", "write"))
    rec = stub.only("POST", "/api/v1/users/bob/permissions")
    assert rec.json() == [{"uri": "job:job-1", "action": "write"}]
    assert rec.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("mode", ["light", "blocking"])
async def test_transport_ndjson_streams_before_the_end(
    stub: StubServer, raw_config: dict, mode: str
) -> None:
    got_first = threading.Event()  # set by the reader, which may be in another thread

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        await resp.write(ndjson(job_json("job-1")))
        # the rest only once the client has parsed job-1: no buffering of the whole body
        assert await asyncio.to_thread(got_first.wait, 10)
        await resp.write(ndjson(job_json("job-2")))
        await resp.write_eof()
        return resp

    async def read(client: Client) -> list[str]:
        seen = []
        async with client.jobs.list() as it:
            async for job in it:
                seen.append(job.id)
                got_first.set()
        return seen

    stub.add("GET", "/api/v1/jobs", handler)
    async with make_client(stub.api_url, raw_config) as client:
        assert await run_in(mode, client, read) == ["job-1", "job-2"]


@pytest.mark.parametrize("mode", ["light", "blocking"])
async def test_transport_keeps_connections_alive(stub: StubServer, mode: str) -> None:
    peers = []

    async def handler(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"tags": []})

    stub.add("GET", "/api/v1/tags", handler)

    async def three(client: Client) -> None:
        for _ in range(3):
            await client.jobs.tags()

    async with make_client(stub.api_url) as client:
        await run_in(mode, client, three)
    assert len(peers) == 3 and len(set(peers)) == 1


# -- a raw server, for what aiohttp.web does not send ---------------------------------------


@dataclass
class Raw:
    """Answers each request with ``answer(request, n)``: the bytes to send and what then
    (``keep`` the connection, ``close`` it, or ``hold`` it open without a word more)."""

    answer: Callable[[bytes, int], tuple[bytes, str]]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                data, then = self.answer(request, len(self.requests))
                writer.write(data)
                await writer.drain()
                if then == "hold":
                    await asyncio.sleep(30)
                if then != "keep":
                    return
        finally:
            writer.close()
            self.closed.set()


@asynccontextmanager
async def raw_server(
    answer: Callable[[bytes, int], tuple[bytes, str]], tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Raw, URL]]:
    raw = Raw(answer)
    tasks: set[asyncio.Task[None]] = set()

    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(raw.handle(reader, writer))
        tasks.add(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield raw, URL(f"{'https' if tls else 'http'}://127.0.0.1:{port}/api/v1")
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def response(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", "Content-Type: application/json", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TAGS = b'{"tags": ["a", "b"]}'
FRAMINGS = {
    "content-length": response(TAGS),
    "chunked-ext-trailer": response(
        b"5;ext=1\r\n"
        + TAGS[:5]
        + b"\r\n"
        + f"{len(TAGS) - 5:x}".encode()
        + b"\r\n"
        + TAGS[5:]
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "Transfer-Encoding: chunked",
    ),
    "until-close": response(TAGS, "Connection: close", "Transfer-Encoding: identity").replace(
        b"Transfer-Encoding: identity\r\n", b""
    ),
    "http-1.0": response(TAGS).replace(b"HTTP/1.1", b"HTTP/1.0"),
    "100-continue": b"HTTP/1.1 100 Continue\r\n\r\n" + response(TAGS),
    "deflate-zlib": response(zlib.compress(TAGS), "Content-Encoding: deflate"),
    "deflate-raw": response(zlib.compress(TAGS)[2:-4], "Content-Encoding: deflate"),
    "gzip-chunked": response(
        b"%x\r\n" % len(gzip.compress(TAGS)) + gzip.compress(TAGS) + b"\r\n0\r\n\r\n",
        "Content-Encoding: gzip",
        "Transfer-Encoding: chunked",
    ),
}


@pytest.mark.parametrize("framing", list(FRAMINGS), ids=list(FRAMINGS))
@pytest.mark.parametrize("mode", MODES)
async def test_transport_body_framings(framing: str, mode: str) -> None:
    def answer(request: bytes, n: int) -> tuple[bytes, str]:
        return FRAMINGS[framing], "close" if framing == "until-close" else "keep"

    async with raw_server(answer) as (raw, url), make_client(url) as client:
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["a", "b"]
    assert raw.requests[0].startswith(b"GET /api/v1/tags HTTP/1.1\r\n")


@pytest.mark.parametrize("mode", ["light", "blocking"])
async def test_transport_retries_a_connection_the_server_closed(mode: str) -> None:
    def answer(request: bytes, n: int) -> tuple[bytes, str]:
        return response(TAGS), "close"  # says keep-alive (HTTP/1.1), closes all the same

    async with raw_server(answer) as (raw, url), make_client(url) as client:
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["a", "b"]
        await asyncio.wait_for(raw.closed.wait(), 10)
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["a", "b"]
    assert raw.connections == 2


@pytest.mark.parametrize("mode", ["light", "blocking"])
async def test_transport_304_and_head_have_no_body(mode: str) -> None:
    def answer(request: bytes, n: int) -> tuple[bytes, str]:
        return (
            b'HTTP/1.1 304 Not Modified\r\nETag: "e1"\r\n\r\n' if n == 1 else response(TAGS)
        ), "keep"

    async def twice(client: Client) -> tuple[int, str | None, list[str]]:
        async with client._request("GET", client.url / "jobs" / "job-1") as resp:
            first = (resp.status, resp.headers.get("etag"))
        return (*first, await client.jobs.tags())

    async with raw_server(answer) as (raw, url), make_client(url) as client:
        assert await run_in(mode, client, twice) == (304, '"e1"', ["a", "b"])
    assert raw.connections == 1  # the 304 left the connection ready for the next request


@pytest.mark.parametrize("mode", MODES)
async def test_transport_redirect_is_followed(stub: StubServer, mode: str) -> None:
    stub.add("GET", "/api/v1/tags", status=307, headers={"Location": "/api/v1/tags2"})
    stub.add("GET", "/api/v1/tags2", json={"tags": ["moved"]})
    async with make_client(stub.api_url) as client:
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["moved"]


# -- errors: mapped as aiohttp's are ---------------------------------------------------------


@pytest.mark.parametrize(("status", "cls"), STATUS_CASES, ids=STATUS_IDS)
@pytest.mark.parametrize("mode", MODES)
async def test_transport_http_errors(
    stub: StubServer, mode: str, status: int, cls: type[ClientError]
) -> None:
    stub.add("DELETE", "/api/v1/jobs/job-x", json={"error": f"boom {status}"}, status=status)
    async with make_client(stub.api_url) as client:
        with pytest.raises(ClientError) as info:
            await run_in(mode, client, lambda c: c.jobs.kill("job-x"))
    assert (type(info.value), info.value.status, str(info.value)) == (cls, status, f"boom {status}")


@pytest.mark.parametrize("mode", MODES)
async def test_transport_connection_refused(mode: str) -> None:
    port = free_port()
    async with make_client(f"http://127.0.0.1:{port}/api/v1") as client:
        with pytest.raises(ServerUnreachable) as info:
            await run_in(mode, client, lambda c: c.jobs.tags())
    assert str(info.value).startswith(
        f"Cannot reach the server at http://127.0.0.1:{port}/api/v1/tags: "
        f"Cannot connect to host 127.0.0.1:{port} ssl:default ["
    )
    assert info.value.url == f"http://127.0.0.1:{port}/api/v1/tags"

    async def with_query(c: Client) -> None:
        async with c._request("GET", c.url / "jobs", params={"status": "running"}):
            pass

    async with make_client(f"http://127.0.0.1:{port}/api/v1") as client:
        with pytest.raises(ServerUnreachable) as info:
            await run_in(mode, client, with_query)
    assert info.value.url == f"http://127.0.0.1:{port}/api/v1/jobs"  # (no query, as before)


def silent(request: bytes, n: int) -> tuple[bytes, str]:
    return b"", "hold"


def head_only(request: bytes, n: int) -> tuple[bytes, str]:
    return response(TAGS)[:-5], "hold"  # the headers and part of the body, then nothing


def disconnect(request: bytes, n: int) -> tuple[bytes, str]:
    return b"", "close"


@pytest.mark.parametrize("mode", MODES)
async def test_transport_read_timeout_before_the_answer(mode: str) -> None:
    async with (
        raw_server(silent) as (_, url),
        make_client(url, timeout=aiohttp.ClientTimeout(sock_read=0.2)) as client,
    ):
        with pytest.raises(ServerUnreachable, match="Timeout on reading data from socket$"):
            await run_in(mode, client, lambda c: c.jobs.tags())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", [silent, head_only], ids=["before-answer", "in-body"])
async def test_transport_total_timeout(mode: str, answer: Callable[[bytes, int], Any]) -> None:
    async with (
        raw_server(answer) as (_, url),
        make_client(url, timeout=aiohttp.ClientTimeout(total=0.3)) as client,
    ):
        with pytest.raises(TimeoutError) as info:
            await run_in(mode, client, lambda c: c.jobs.tags())
    assert not isinstance(info.value, NeuroError)


@pytest.mark.parametrize("mode", MODES)
async def test_transport_read_timeout_in_the_body(mode: str) -> None:
    async with (
        raw_server(head_only) as (_, url),
        make_client(url, timeout=aiohttp.ClientTimeout(sock_read=0.2)) as client,
    ):
        with pytest.raises(TimeoutError, match="Timeout on reading data from socket"):
            await run_in(mode, client, lambda c: c.jobs.tags())


@pytest.mark.parametrize("mode", MODES)
async def test_transport_disconnected_before_the_answer(mode: str) -> None:
    async with raw_server(disconnect) as (_, url), make_client(url) as client:
        with pytest.raises(ServerUnreachable, match=": Server disconnected$"):
            await run_in(mode, client, lambda c: c.jobs.tags())


@pytest.mark.parametrize("mode", ["light", "blocking"])
@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            response(TAGS)[:-5],
            "Lost the connection to .*/api/v1/tags: the response payload is not completed",
        ),
        (
            b"NOT HTTP\r\n\r\n",
            "Cannot reach the server at .*/api/v1/tags: Bad status line 'NOT HTTP'",
        ),
        (response(b"", "Content-Encoding: br"), "Unsupported Content-Encoding 'br'"),
        (
            response(TAGS, f"Content-Length: {len(TAGS)}", f"content-length: {len(TAGS)}"),
            "Duplicate Content-Length headers",
        ),
    ],
    ids=["cut-body", "not-http", "unknown-encoding", "two-lengths"],
)
async def test_transport_broken_answers(mode: str, data: bytes, error: str) -> None:
    # (aiohttp raises its own ClientPayloadError or ClientResponseError here: the light transport
    # keeps to the SDK's errors, as a lost connection)
    async with raw_server(lambda r, n: (data, "close")) as (_, url), make_client(url) as client:
        with pytest.raises(ServerUnreachable, match=error):
            await run_in(mode, client, lambda c: c.jobs.tags())


# -- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return d / "cert.pem", d / "key.pem"


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*certificate)
    return ctx


def tls_answer(request: bytes, n: int) -> tuple[bytes, str]:
    return response(TAGS), "keep"


@pytest.mark.parametrize("mode", MODES)
async def test_transport_tls_unknown_certificate(certificate: tuple[Path, Path], mode: str) -> None:
    async with (
        raw_server(tls_answer, server_tls(certificate)) as (_, url),
        make_client(url) as client,
    ):
        with pytest.raises(ServerUnreachable) as info:
            await run_in(mode, client, lambda c: c.jobs.tags())
    message = str(info.value)
    assert message.startswith(f"Cannot reach the server at {url}/tags: Cannot connect to host")
    assert "CERTIFICATE_VERIFY_FAILED" in message


@pytest.mark.parametrize("mode", ["light", "blocking"])
async def test_transport_tls_trusted_certificate(
    certificate: tuple[Path, Path], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the default context, with the system's CA store made of our certificate only
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    monkeypatch.setattr(_transport, "_ssl_context", None)
    async with (
        raw_server(tls_answer, server_tls(certificate)) as (raw, url),
        make_client(url) as client,
    ):
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["a", "b"]
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["a", "b"]
    assert raw.connections == 1
    assert _transport._tls_context().verify_mode == ssl.CERT_REQUIRED
    assert _transport._tls_context().check_hostname


# -- proxies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_transport_http_proxy_from_the_environment(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(request: bytes, n: int) -> tuple[bytes, str]:
        return response(TAGS), "keep"

    async with raw_server(answer) as (proxy, proxy_url):
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pw@127.0.0.1:{proxy_url.port}")
        async with make_client("http://api.example.test/api/v1") as client:
            assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["a", "b"]
    head = proxy.requests[0].decode()
    assert head.startswith("GET http://api.example.test/api/v1/tags HTTP/1.1\r\n")
    auth = base64.b64encode(b"user:pw").decode()
    assert f"Proxy-Authorization: Basic {auth}" in head
    assert f"Authorization: Bearer {TOKEN}" in head


@pytest.mark.parametrize("mode", MODES)
async def test_transport_loopback_is_never_proxied(
    stub: StubServer, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.add("GET", "/api/v1/tags", json={"tags": ["direct"]})
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nobody listens
    async with make_client(stub.api_url) as client:
        assert await run_in(mode, client, lambda c: c.jobs.tags()) == ["direct"]


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({}, "http://api.example.test/x", None),
        ({"HTTPS_PROXY": "http://p:3128"}, "https://api.example.test/x", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://api.example.test/x", None),
        (
            {"http_proxy": "http://low:1", "HTTP_PROXY": "http://up:1"},
            "http://a.test/",
            "http://low:1",
        ),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "example.test"},
            "http://api.example.test/",
            None,
        ),
        ({"HTTP_PROXY": "http://p:1", "no_proxy": ".example.test"}, "http://example.test/", None),
        (
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": "other.test"},
            "http://api.example.test/",
            "http://p:1",
        ),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, "http://api.example.test/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://localhost:8080/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://127.0.0.5:8080/", None),
        ({"HTTP_PROXY": "http://p:1"}, "http://[::1]:8080/", None),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://a.test/", None),
        ({"HTTPS_PROXY": "https://p:1"}, "https://a.test/", None),  # aiohttp ignores those
    ],
    ids=[
        "none",
        "https",
        "scheme-mismatch",
        "lowercase-first",
        "no-proxy-suffix",
        "no-proxy-dot",
        "no-proxy-other",
        "no-proxy-star",
        "localhost",
        "127/8",
        "ipv6-loopback",
        "cgi",
        "https-proxy",
    ],
)
def test_transport_env_proxy(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str, expected: str | None
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    proxy = _transport.env_proxy(URL(url))
    assert (str(proxy) if proxy else None) == expected


# -- the rest of the client ----------------------------------------------------------------------


async def test_transport_streamed_upload_goes_through_aiohttp(
    stub: StubServer, raw_config: dict
) -> None:
    stub.add("PUT", "/storage/up.bin", status=201)
    raw_config["clusters"][0]["storage_url"] = str(stub.url / "storage")

    async def data() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    for mode in ("light", "blocking"):
        async with make_client(stub.api_url, raw_config) as client:
            await run_in(mode, client, lambda c: c.storage.create("up.bin", data()))
    assert [r.body for r in stub.requests] == [b"hello world", b"hello world"]


async def test_transport_closed_client_closes_its_connections(stub: StubServer) -> None:
    stub.add("GET", "/api/v1/tags", json={"tags": []})
    client = make_client(stub.api_url)
    await client.jobs.tags()
    assert client._light is not None and any(client._light._idle.values())
    await client.close()
    assert not any(client._light._idle.values())


def test_transport_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid header"):
        _transport._Transport._serialize("GET", URL("http://h/x"), {"X": "a\r\nEvil: 1"}, None)


def test_transport_request_bytes() -> None:
    data = _transport._Transport._serialize(
        "DELETE", URL("http://h:8080/a%20b?x=1&y=%2F"), {"Authorization": "Bearer t"}, None
    )
    assert data == (
        b"DELETE /a%20b?x=1&y=/ HTTP/1.1\r\nHost: h:8080\r\nAccept: */*\r\n"
        b"Accept-Encoding: gzip, deflate\r\nAuthorization: Bearer t\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert _transport._Transport._serialize("GET", URL("https://[::1]/"), {}, None).startswith(
        b"GET / HTTP/1.1\r\nHost: [::1]\r\n"
    )


def test_transport_blocking_mode_needs_no_loop_for_sockets() -> None:
    # (the blocking mode is picked when no loop runs: here, a plain test function)
    assert _transport.running_loop() is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_client(f"http://127.0.0.1:{port}/api/v1")
    with pytest.raises(ServerUnreachable):
        drive(client.jobs.tags())
    drive(client.close())


def test_transport_sdk_import_is_light() -> None:
    """aiohttp, asyncio and ssl are imported on first use only (a websocket, a loop, TLS)."""
    code = (
        "import json, sys, neuro_sdk\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert [m for m in json.loads(out) if m in ("aiohttp", "asyncio", "ssl", "logging")] == []


def test_transport_client_used_on_two_loops_in_turn() -> None:
    """A connection kept on a loop that has ended is not used again (nor its closing tried)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Tags(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(TAGS)))
            self.end_headers()
            self.wfile.write(TAGS)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tags)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = make_client(f"http://127.0.0.1:{server.server_address[1]}/api/v1")
        assert asyncio.run(client.jobs.tags()) == ["a", "b"]
        assert asyncio.run(client.jobs.tags()) == ["a", "b"]  # the first loop is closed now
        assert drive(client.jobs.tags()) == ["a", "b"]  # and without a loop
        assert client._light is not None
        assert [key[-1] for key in client._light._idle] == [None]  # the loops' ones: closed
        drive(client.close())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
