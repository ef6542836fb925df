"""The light HTTP/1.1 transport of :class:`Client`: plain requests without aiohttp.

``import aiohttp`` costs a one-shot command (``neuro ps``) far more than its request does, so
the client sends plain requests through this small HTTP/1.1 client instead: keep-alive
connections per host, ``Content-Length``, chunked and read-to-close bodies streamed as they
arrive, gzip and deflate, TLS with the verification aiohttp uses (``ssl.create_default_context``),
the client's timeouts.  aiohttp stays for what this does not do: websockets, streamed uploads,
proxies (:func:`env_proxy`) and redirects; the client picks per request (``Client._request``).

Two ways to do the I/O on the same sockets (our own: closed with or without a loop), picked
per request:

* on a running asyncio loop: the loop's non-blocking socket calls (``sock_recv``...);
* with no running loop (a coroutine driven by plain ``coro.send(None)``, as the CLI does for its
  one-shot commands so as not to import asyncio): blocking calls, so that the coroutine never
  suspends.  No asyncio code can run in that thread then, so nothing is held up.

TLS goes through an ``SSLObject`` on memory BIOs either way.

Errors before the first byte of an answer (refused, DNS, TLS, timeouts, the server closing the
connection) are :class:`_ConnectError`, which the client maps as it maps aiohttp's connection
errors; a body cut short raises :class:`ServerUnreachable`, a read timeout in the body
:class:`TimeoutError`, as aiohttp's ``SocketTimeoutError`` is one.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, Self

from yarl import URL

from ._errors import ServerUnreachable

if TYPE_CHECKING:
    import asyncio
    import socket
    import ssl
    import types
    import zlib

    import aiohttp

    # for type checkers the stand-in below is aiohttp's class: the same fields, the same
    # constructor, and what Client and Factory accept
    _Timeout = aiohttp.ClientTimeout
else:

    class _Timeout:
        """Stands in for ``aiohttp.ClientTimeout`` (same fields, read-only), without importing
        aiohttp.  (Not a dataclass: making one costs an import of neuro_sdk 0.6 ms.)"""

        FIELDS = ("total", "connect", "sock_read", "sock_connect", "ceil_threshold")
        __slots__ = ("ceil_threshold", "connect", "sock_connect", "sock_read", "total")

        def __init__(
            self,
            total: float | None = None,
            connect: float | None = None,
            sock_read: float | None = None,
            sock_connect: float | None = None,
            ceil_threshold: float = 5,
        ) -> None:
            for name, value in zip(
                self.FIELDS, (total, connect, sock_read, sock_connect, ceil_threshold), strict=False
            ):
                object.__setattr__(self, name, value)

        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError(f"cannot assign to field {name!r}")

        def _fields(self) -> tuple[object, ...]:
            return tuple(getattr(self, name) for name in self.FIELDS)

        def __eq__(self, other: object) -> bool:
            if not isinstance(other, _Timeout):
                return NotImplemented
            return self._fields() == other._fields()

        def __hash__(self) -> int:
            return hash(self._fields())

        def __repr__(self) -> str:
            return (
                "ClientTimeout("
                + ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
                + ")"
            )


CHUNK = 2**16
MAX_HEAD = 2**16 + 2**13  # a response's status line and headers (aiohttp: 8190 a line)
MAX_IDLE = 8  # idle connections kept per host
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate"}  # as aiohttp sends


class _LazyModule:
    """A module imported when one of its attributes is first read (keeps imports light)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module = sys.modules.get(self._name) or importlib.import_module(self._name)
        return getattr(module, attr)


def lazy_import(name: str) -> Any:
    return _LazyModule(name)


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        return getattr(logging.getLogger(self._name), attr)


def lazy_logger(name: str) -> Any:
    """``logging.getLogger(name)``, with logging imported when something is first logged."""
    return _LazyLogger(name)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop; None when there is none (and without importing asyncio)."""
    if "asyncio" not in sys.modules:
        return None
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def aiohttp_timeout(timeout: Any) -> Any:
    """An ``aiohttp.ClientTimeout`` for a timeout given either way."""
    import aiohttp

    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    return aiohttp.ClientTimeout(
        total=timeout.total,
        connect=timeout.connect,
        sock_read=timeout.sock_read,
        sock_connect=timeout.sock_connect,
    )


# -- proxies --------------------------------------------------------------------------------


def _env_proxies() -> dict[str, str]:
    """``*_proxy`` variables by scheme, lowercase names first (urllib's getproxies_environment)."""
    proxies: dict[str, str] = {}
    for name, value in os.environ.items():
        if value and name[-6:].lower() == "_proxy":
            proxies[name[:-6].lower()] = value
    if "REQUEST_METHOD" in os.environ:  # a CGI script: HTTP_PROXY may come from a client header
        proxies.pop("http", None)
    for name, value in os.environ.items():
        if name[-6:] == "_proxy":
            if value:
                proxies[name[:-6].lower()] = value
            else:
                proxies.pop(name[:-6].lower(), None)
    return proxies


def _bypassed(host: str, no_proxy: str | None) -> bool:
    """urllib's proxy_bypass_environment, plus loopback (as Go, so docker and kubectl, do): the
    embedded server is never reached through a proxy."""
    host = host.lower().rstrip(".")
    if (
        host in ("localhost", "::1")
        or host.endswith(".localhost")
        or (host.startswith("127.") and host.replace(".", "").isdigit())
    ):
        return True
    if not no_proxy:
        return False
    if no_proxy == "*":
        return True
    for name in no_proxy.split(","):
        name = name.strip().lstrip(".").lower()
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def env_proxy(url: URL) -> URL | None:
    """The proxy that ``HTTP_PROXY``/``HTTPS_PROXY`` (``WS_PROXY``/``WSS_PROXY``) name for
    *url*, unless ``NO_PROXY`` or loopback says no: what aiohttp's ``trust_env`` would use."""
    if not any(name[-6:].lower() == "_proxy" for name in os.environ):
        return None  # the common case, cheaply
    proxies = _env_proxies()
    proxy = proxies.get(url.scheme)
    if proxy is None or url.host is None or _bypassed(url.host, proxies.get("no")):
        return None
    proxy_url = URL(proxy)
    if proxy_url.scheme not in ("http", ""):
        return None  # aiohttp ignores https proxies (with a warning)
    return proxy_url


# -- connections ----------------------------------------------------------------------------


class _ConnectError(OSError):
    """No answer from the server (refused, DNS, TLS, timeout, disconnected before answering);
    ``str()`` is the message, in aiohttp's words."""


class _Redirect(Exception):
    """A redirect: aiohttp follows it."""


_ssl_context: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """The context of every TLS connection: aiohttp's default (system CAs, hostname check)."""
    global _ssl_context
    if _ssl_context is None:
        import ssl

        _ssl_context = ssl.create_default_context()
        _ssl_context.set_alpn_protocols(["http/1.1"])
    return _ssl_context


def _min(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


class _Deadline:
    """The request's timeouts: per read (``sock_read``), per connect, and ``total`` overall."""

    def __init__(self, timeout: Any) -> None:
        self.timeout = timeout
        self.end = None if timeout.total is None else time.monotonic() + timeout.total

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def connect(self) -> float | None:
        return _min(self.timeout.sock_connect, self.timeout.connect, self.left())

    def read(self) -> float | None:
        return _min(self.timeout.sock_read, self.left())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


class _Conn:
    """A connection of our own: a socket, with TLS through an ``SSLObject`` for https.  Read
    and written blocking when ``loop`` is None, else through the loop's non-blocking socket
    calls; either way the socket is ours to close, with or without a loop."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop | None) -> None:
        self.sock = sock
        self.loop = loop
        self.tls: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None

    async def _send_raw(self, data: bytes, timeout: float | None) -> None:
        if self.loop is None:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            return
        import asyncio

        async with asyncio.timeout(timeout):
            await self.loop.sock_sendall(self.sock, data)

    async def _recv_raw(self, timeout: float | None) -> bytes:
        if self.loop is None:
            self.sock.settimeout(timeout)
            return self.sock.recv(CHUNK)
        import asyncio

        async with asyncio.timeout(timeout):
            return await self.loop.sock_recv(self.sock, CHUNK)

    async def _flush(self, timeout: float | None) -> None:
        assert self._tls_out is not None
        if data := self._tls_out.read():
            await self._send_raw(data, timeout)

    async def start_tls(self, host: str, timeout: float | None) -> None:
        import ssl

        self._tls_in, self._tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = _tls_context().wrap_bio(self._tls_in, self._tls_out, server_hostname=host)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush(timeout)
                if not (data := await self._recv_raw(timeout)):
                    raise ConnectionResetError(
                        "the server closed the connection in the TLS handshake"
                    ) from None
                self._tls_in.write(data)
        await self._flush(timeout)

    async def send(self, data: bytes, timeout: float | None) -> None:
        if self.tls is None:
            await self._send_raw(data, timeout)
        else:
            self.tls.write(data)
            await self._flush(timeout)

    async def recv(self, timeout: float | None) -> bytes:
        """The next bytes, b"" at the end; ``TimeoutError`` after *timeout* seconds."""
        if self.tls is None:
            return await self._recv_raw(timeout)
        import ssl

        assert self._tls_in is not None
        while True:
            try:
                return self.tls.read(CHUNK)
            except ssl.SSLWantReadError:
                await self._flush(timeout)  # (a key update to answer, say)
                if not (data := await self._recv_raw(timeout)):
                    return b""  # closed without close_notify: the framing tells if it was cut
                self._tls_in.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def reusable(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        """Idle, still open (the server closes idle connections when it likes), and of this
        way of doing I/O (blocking, or this loop)."""
        if loop is not self.loop or (loop is not None and loop.is_closed()):
            return False
        import select

        try:  # readable while idle: closed by the server (or data nobody asked for)
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.sock.close()


def _connect_message(host: str, port: int, e: BaseException) -> str:
    """What aiohttp's ClientConnectorError (and its certificate variant) says."""
    if type(e).__name__ == "SSLCertVerificationError":
        return f"Cannot connect to host {host}:{port} ssl:True [{type(e).__name__}: {e.args}]"
    detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return f"Cannot connect to host {host}:{port} ssl:default [{detail}]"


async def _connect(loop: asyncio.AbstractEventLoop, host: str, port: int) -> socket.socket:
    """A connected non-blocking socket: each address in turn, as socket.create_connection."""
    import socket

    try:  # an IP address needs no lookup (and no thread of the loop's executor)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            return sock
        except OSError as e:
            sock.close()
            error = e
        except BaseException:
            sock.close()
            raise
    raise error


async def _open(url: URL, deadline: _Deadline) -> _Conn:
    import socket

    host, port = url.raw_host or "", url.port or (443 if url.scheme == "https" else 80)
    timeout = deadline.connect()
    loop = running_loop()
    conn = None
    try:
        if loop is None:
            # (an ASCII host as bytes: a str goes through the idna codec, another import)
            sock = socket.create_connection(
                (host.encode("ascii"), port),  # type: ignore[arg-type]
                timeout=timeout,
            )
        else:
            import asyncio

            async with asyncio.timeout(timeout):
                sock = await _connect(loop, host, port)
        conn = _Conn(sock, loop)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if url.scheme == "https":  # under the connect timeout, as aiohttp
            await conn.start_tls(host.rstrip("."), deadline.connect())
        return conn
    except BaseException as e:
        if conn is not None:
            conn.close()
        if isinstance(e, TimeoutError):
            if deadline.expired():
                raise TimeoutError() from e  # the total timeout: as aiohttp, a bare TimeoutError
            raise _ConnectError(f"Connection timeout to host {url}") from e
        if isinstance(e, OSError):
            raise _ConnectError(_connect_message(host, port, e)) from e
        raise


# -- responses ------------------------------------------------------------------------------

if TYPE_CHECKING:  # (typing only: what the SDK's modules may use of a response)

    class BodyStream(Protocol):
        """What the SDK reads from a response body (aiohttp's ``StreamReader`` has it too)."""

        def iter_any(self) -> AsyncIterator[bytes]: ...

        def iter_chunked(self, n: int) -> AsyncIterator[bytes]: ...

    class Response(Protocol):
        """What the SDK uses of a response: aiohttp's ``ClientResponse`` or :class:`_Response`."""

        @property
        def status(self) -> int: ...

        @property
        def reason(self) -> str | None: ...

        @property
        def headers(self) -> Mapping[str, str]: ...

        @property
        def content_type(self) -> str: ...

        @property
        def content(self) -> BodyStream: ...

        async def read(self) -> bytes: ...

        async def text(self, encoding: str | None = None, errors: str = "strict") -> str: ...

        async def __aenter__(self) -> Any: ...

        async def __aexit__(
            self,
            typ: type[BaseException] | None,
            value: BaseException | None,
            tb: types.TracebackType | None,
            /,
        ) -> Any: ...


class _Headers(dict[str, str]):
    """Response headers by lower-cased name, looked up in any case; a repeated one is joined
    with commas (RFC 9110 5.3)."""

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        super().__setitem__(key, f"{super().__getitem__(key)}, {value}" if key in self else value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Response:
    """A response of the light transport; the body is read from the connection as asked."""

    def __init__(
        self,
        transport: _Transport | None,
        key: tuple[Any, ...],
        conn: _Conn | None,
        url: URL,
        deadline: _Deadline,
    ) -> None:
        self._transport = transport
        self._key = key
        self._conn = conn
        self.url = url
        self._deadline = deadline
        self._buf = bytearray()
        self.status = 0
        self.reason: str | None = None
        self.version = (1, 1)
        self.headers: Mapping[str, str] = _Headers()
        self._framing = "none"  # none, length, chunked, eof
        self._left = 0  # length: bytes to come; chunked: bytes left in this chunk
        self._keep_alive = False
        self._done = True
        self._decoder: Any = None
        self._body: bytes | None = None

    @classmethod
    def buffered(
        cls, url: URL, status: int, reason: str | None, headers: Mapping[str, str], body: bytes
    ) -> _Response:
        """A response whose body is all here (from aiohttp on a private loop)."""
        resp = cls(None, (), None, url, _Deadline(_Timeout()))
        resp.status, resp.reason, resp.headers, resp._body = status, reason, headers, body
        return resp

    # -- the head --

    async def _read_head(self, method: str) -> None:
        while True:
            while (end := self._buf.find(b"\r\n\r\n")) < 0:
                if len(self._buf) > MAX_HEAD:
                    raise _ConnectError("Response headers are too long")
                data = await self._recv(head=True)
                if not data:
                    raise _ConnectError("Server disconnected")
                self._buf += data
            head = bytes(self._buf[:end]).decode("utf-8", "surrogateescape")
            del self._buf[: end + 4]
            status_line, _, fields = head.partition("\r\n")
            version, _, rest = status_line.partition(" ")
            code, _, reason = rest.partition(" ")
            if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
                raise _ConnectError(f"Bad status line {status_line[:100]!r}")
            self.status, self.reason = int(code), reason.strip()
            self.version = (1, 1) if version == "HTTP/1.1" else (1, 0)
            if 100 <= self.status < 200 and self.status != 101:
                continue  # 100 Continue, 103 Early Hints: the answer comes next
            break
        headers = _Headers()
        for line in fields.split("\r\n") if fields else ():
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[:1] in " \t":
                raise _ConnectError(f"Bad header line {line[:100]!r}")
            value = value.strip(" \t")
            if name.lower() == "content-length" and name in headers:
                raise _ConnectError("Duplicate Content-Length headers")  # (aiohttp: the same)
            headers.add(name, value)
        self.headers = headers
        connection = headers.get("Connection", "").lower()
        self._keep_alive = (
            "close" not in connection if self.version == (1, 1) else "keep-alive" in connection
        )
        coding = headers.get("Transfer-Encoding", "").lower()
        if method == "HEAD" or self.status < 200 or self.status in (204, 304):
            self._framing = "none"
        elif coding:
            if coding.rsplit(",", 1)[-1].strip() != "chunked":
                raise _ConnectError(f"Unsupported Transfer-Encoding {coding!r}")
            self._framing, self._left = "chunked", 0
        elif "Content-Length" in headers:
            length = headers["Content-Length"].strip()
            if not length.isdigit():
                raise _ConnectError(f"Bad Content-Length {length!r}")
            self._framing, self._left = "length", int(length)
        else:
            self._framing, self._keep_alive = "eof", False
        self._done = self._framing == "none" or (self._framing == "length" and not self._left)
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate") and self._framing != "none":
            self._decoder = encoding
        elif encoding not in ("", "identity"):
            raise _ConnectError(f"Unsupported Content-Encoding {encoding!r}")

    # -- the body --

    async def _recv(self, head: bool = False) -> bytes:
        assert self._conn is not None
        try:
            return await self._conn.recv(self._deadline.read())
        except TimeoutError as e:
            if self._deadline.expired():
                raise TimeoutError() from e  # total: a bare TimeoutError, as aiohttp
            if head:
                raise _ConnectError("Timeout on reading data from socket") from e
            raise TimeoutError("Timeout on reading data from socket") from e
        except OSError as e:
            if head:
                raise _ConnectError(str(e) or type(e).__name__) from e
            raise self._lost(str(e) or type(e).__name__) from e

    def _lost(self, why: str) -> ServerUnreachable:
        url = str(self.url.with_query(None))
        return ServerUnreachable(f"Lost the connection to {url}: {why}", url)

    async def _more(self) -> None:
        data = await self._recv()
        if not data:
            raise self._lost("the response payload is not completed")
        self._buf += data

    async def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > 8192:
                raise self._lost("a chunk header is too long")
            await self._more()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    async def _raw(self) -> bytes:
        """The next piece of the body as sent (b"" at its end)."""
        if self._done:
            return b""
        if self._framing == "eof":
            if not self._buf:
                data = await self._recv()
                if not data:
                    self._finish()
                    return b""
                return data
            data = bytes(self._buf)
            self._buf.clear()
            return data
        if self._framing == "chunked" and not self._left:
            size = await self._line()
            size = size.split(b";", 1)[0].strip()
            if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
                raise self._lost(f"bad chunk size {size[:20]!r}")
            self._left = int(size, 16)
            if not self._left:
                while await self._line():  # trailers, up to the empty line
                    pass
                self._finish()
                return b""
        if not self._buf:
            await self._more()
        piece = bytes(self._buf[: self._left])
        del self._buf[: len(piece)]
        self._left -= len(piece)
        if not self._left:
            if self._framing == "chunked":
                while len(self._buf) < 2:
                    await self._more()
                if self._buf[:2] != b"\r\n":
                    raise self._lost("a chunk does not end with CRLF")
                del self._buf[:2]
            else:
                self._finish()
        return piece

    def _finish(self) -> None:
        self._done = True

    async def _next(self) -> bytes:
        """The next piece of the body, decoded (b"" at its end)."""
        if self._body is not None:
            body, self._body = self._body, b""
            return body
        while True:
            raw = await self._raw()
            if self._decoder is None:
                return raw
            if isinstance(self._decoder, str):  # the first bytes tell zlib from raw deflate
                self._decoder = _decompressor(self._decoder, raw)
            try:
                data: bytes = self._decoder.decompress(raw) if raw else self._decoder.flush()
            except Exception as e:  # zlib.error
                raise self._lost(f"cannot decompress the body: {e}") from e
            if data or not raw:
                return data

    async def read(self) -> bytes:
        if self._body is not None and self._conn is None:
            return self._body
        parts = []
        while data := await self._next():
            parts.append(data)
        self._body = b"".join(parts)
        self._release()
        return self._body

    async def text(self, encoding: str | None = None, errors: str = "strict") -> str:
        body = await self.read()
        if encoding is None:
            for param in self.headers.get("Content-Type", "").split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.lower() == "charset" and value:
                    encoding = value.strip('"')
        try:
            return body.decode(encoding or "utf-8", errors)
        except LookupError:
            return body.decode("utf-8", errors)

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        return raw.split(";", 1)[0].strip().lower() if raw else "application/octet-stream"

    @property
    def content(self) -> _Response:
        return self

    async def iter_any(self) -> AsyncIterator[bytes]:
        while data := await self._next():
            yield data
        self._release()

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        buf = bytearray()
        while data := await self._next():
            buf += data
            while len(buf) >= n:
                yield bytes(buf[:n])
                del buf[:n]
        if buf:
            yield bytes(buf)
        self._release()

    def _release(self) -> None:
        """Back to the pool once the body was read to its end (else the connection closes)."""
        conn, self._conn = self._conn, None
        if conn is None or self._transport is None:
            return
        if self._done and self._keep_alive and not self._buf:
            self._transport._put(self._key, conn)
        else:
            self._transport._discard(conn)

    def close(self) -> None:
        if self._conn is not None:
            self._done = self._done and not self._buf
            self._keep_alive = self._keep_alive and self._done
            self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _decompressor(encoding: str, first: bytes) -> zlib._Decompress:
    import zlib

    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # deflate is meant to be zlib-wrapped; some servers send it raw (aiohttp accepts both)
    return zlib.decompressobj(
        zlib.MAX_WBITS if first[:1] and first[0] & 0x0F == 8 else -zlib.MAX_WBITS
    )


# -- the transport --------------------------------------------------------------------------


def _host_header(url: URL) -> str:
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return host if url.is_default_port() else f"{host}:{url.port}"


def _check_header(name: str, value: str) -> None:
    if any(c in name or c in value for c in "\r\n\0") or not name or ":" in name:
        raise ValueError(f"Invalid header {name!r}: {value[:100]!r}")


class _Transport:
    """Keep-alive connections per (scheme, host, port, loop) and the requests sent on them."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Any, ...], list[_Conn]] = {}

    def _put(self, key: tuple[Any, ...], conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            self._discard(conn)

    def _discard(self, conn: _Conn) -> None:
        conn.close()

    def _prune(self) -> None:
        """Close the idle connections of loops that have ended (a client used on several)."""
        for key in [k for k in self._idle if k[-1] is not None and k[-1].is_closed()]:
            for conn in self._idle.pop(key):
                conn.close()

    def _get(self, key: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.reusable(loop):
                return conn
            conn.close()
        return None

    async def request(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None, timeout: Any
    ) -> _Response:
        """Send the request, read the status line and headers; the body is read later.

        Raises :class:`_ConnectError` when no answer came, :class:`_Redirect` for a redirect.
        """
        request = self._serialize(method, url, headers, body)
        deadline = _Deadline(timeout)
        loop = running_loop()
        key = (url.scheme, url.raw_host, url.port, loop)
        while True:
            conn = self._get(key, loop)
            reused = conn is not None
            if conn is None:
                self._prune()
                conn = await _open(url, deadline)
            resp = _Response(self, key, conn, url, deadline)
            try:
                try:
                    await conn.send(request, deadline.read())
                except TimeoutError as e:
                    raise _ConnectError("Timeout on writing data to socket") from e
                except OSError as e:
                    raise _ConnectError(str(e) or "Server disconnected") from e
                await resp._read_head(method)
            except _ConnectError:
                resp._keep_alive = False
                resp.close()
                # a kept-alive connection that the server closed meanwhile: again on a new one
                # (idempotent requests only, as aiohttp)
                if reused and method in IDEMPOTENT and not resp.status:
                    continue
                raise
            except BaseException:
                resp._keep_alive = False
                resp.close()
                raise
            if resp.status in REDIRECTS and "Location" in resp.headers:
                resp.close()
                raise _Redirect(resp.headers["Location"])
            return resp

    @staticmethod
    def _serialize(method: str, url: URL, headers: dict[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {url.raw_path_qs} HTTP/1.1", f"Host: {_host_header(url)}"]
        given = {name.lower() for name in headers}
        for name, value in DEFAULT_HEADERS.items():
            if name.lower() not in given:
                lines.append(f"{name}: {value}")
        for name, value in headers.items():
            if name.lower() in ("host", "content-length", "transfer-encoding"):
                continue
            _check_header(name, value)
            lines.append(f"{name}: {value}")
        if body is not None or method not in NO_BODY_METHODS:
            lines.append(f"Content-Length: {len(body or b'')}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        return head + body if body else head

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
