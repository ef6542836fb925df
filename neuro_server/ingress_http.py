"""HTTP/1.x framing for the ingress: where each request and response of a connection begins
and ends, so that the ingress can rewrite every request head (a keep-alive connection carries
many) and never forwards bytes that the job could frame differently from us.

Strict on purpose (RFC 9112, with none of its leniencies): a head with a bare CR or LF, a folded
line, a space before a colon, two Hosts, a Content-Length together with a Transfer-Encoding,
differing Content-Lengths, or a chunk size that is not plain hex is a ``FramingError``, which
the ingress answers (400, or 502 when the job sent it) and then closes: the classic request
smuggling tricks all live in those leniencies.  Bodies are copied as they come, 256 KiB at a
time, never buffered whole; chunked bodies are re-chunked with the sizes as read (extensions
dropped), a request's trailers too (a job must not find a Cookie there).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from typing import Any

MAX_HEAD = 64 * 1024
MAX_LINE = 4096  # a chunk-size line
CHUNK = 1 << 18  # what one read of a socket brings at most (asyncio's)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([^\x00-\x20\x7f]+) HTTP/1\.([01])")
_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([1-9][0-9]{2})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_HOST = re.compile(r"[A-Za-z0-9.\-]*(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")
_DIGITS = re.compile(r"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[\x20-\x7e\t]*)?\r\n")


class FramingError(Exception):
    """A message the ingress cannot frame unambiguously (or will not serve)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Truncated(ConnectionError):
    """The peer closed in the middle of a message."""


Fields = list[tuple[str, str]]


@dataclasses.dataclass
class Body:
    """How a message's body is framed: ``length`` bytes, or chunked, or (responses only)
    everything up to the end of the connection."""

    length: int = 0
    chunked: bool = False
    to_close: bool = False


@dataclasses.dataclass
class Request:
    method: str
    target: str
    minor: int  # HTTP/1.<minor>
    fields: Fields
    host: str  # without the port, lower case
    body: Body
    last: bool  # the client's last request on this connection (Connection: close, HTTP/1.0)
    websocket: bool  # asks to upgrade to a websocket

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclasses.dataclass
class Response:
    status_line: str
    status: int
    fields: Fields
    body: Body
    last: bool  # the job closes after it


def values(fields: Fields, name: str) -> list[str]:
    return [v for k, v in fields if k.lower() == name]


def tokens(fields: Fields, name: str) -> list[str]:
    """The comma-separated list of all ``name`` fields, lower case."""
    return [t.strip().lower() for v in values(fields, name) for t in v.split(",") if t.strip()]


def _fields(head: bytes, who: int) -> tuple[str, Fields]:
    text = head.decode("latin-1")[:-4]
    if "\r" in text.replace("\r\n", "") or "\n" in text.replace("\r\n", ""):
        raise FramingError(who, "a bare CR or LF in the head")
    start, *lines = text.split("\r\n")
    fields: Fields = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise FramingError(who, f"a malformed header line: {line[:80]!r}")
        value = value.strip(" \t")
        if _BAD_VALUE.search(value):
            raise FramingError(who, f"a control character in header {name}")
        fields.append((name, value))
    return start, fields


def _length(fields: Fields, who: int) -> int | None:
    lengths = {v.strip() for v in ",".join(values(fields, "content-length")).split(",")} - {""}
    if not values(fields, "content-length"):
        return None
    if len(lengths) != 1 or not _DIGITS.fullmatch(next(iter(lengths))):
        raise FramingError(who, "a missing, bad or ambiguous Content-Length")
    return int(next(iter(lengths)))


def parse_request(head: bytes) -> Request:
    start, fields = _fields(head, 400)
    m = _REQUEST_LINE.fullmatch(start)
    if m is None:
        raise FramingError(400, f"a malformed request line: {start[:80]!r} (HTTP/1.x only)")
    method, target, minor = m.group(1), m.group(2), int(m.group(3))
    if method == "CONNECT":
        raise FramingError(400, "CONNECT is not served here")
    if not target.startswith("/") and not (target == "*" and method == "OPTIONS"):
        raise FramingError(400, "only origin-form request targets (/path) are served")
    hosts = values(fields, "host")
    if (
        len(hosts) > 1
        or (minor == 1 and not hosts)
        or not _HOST.fullmatch(hosts[0] if hosts else "")
    ):
        raise FramingError(400, "a request needs one valid Host header")
    host = hosts[0].lower() if hosts else ""
    host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    codings = tokens(fields, "transfer-encoding")
    length = _length(fields, 400)
    if values(fields, "transfer-encoding"):
        if length is not None:
            raise FramingError(400, "both Content-Length and Transfer-Encoding")
        if minor == 0:
            raise FramingError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if codings != ["chunked"]:
            raise FramingError(400, f"unsupported Transfer-Encoding {', '.join(codings)!r}")
    conn = tokens(fields, "connection")
    websocket = "upgrade" in conn and tokens(fields, "upgrade") == ["websocket"]
    return Request(
        method,
        target,
        minor,
        fields,
        host,
        Body(length=length or 0, chunked=bool(codings)),
        last=minor == 0 or "close" in conn,
        websocket=websocket,
    )


def parse_response(head: bytes, method: str) -> Response:
    start, fields = _fields(head, 502)
    m = _STATUS_LINE.fullmatch(start)
    if m is None:
        raise FramingError(502, f"a malformed status line: {start[:80]!r}")
    minor, status = int(m.group(1)), int(m.group(2))
    conn = tokens(fields, "connection")
    last = "close" in conn or (minor == 0 and "keep-alive" not in conn)
    length = _length(fields, 502)
    codings = tokens(fields, "transfer-encoding")
    if values(fields, "transfer-encoding") and length is not None:
        raise FramingError(502, "both Content-Length and Transfer-Encoding")
    if method == "HEAD" or status < 200 or status in (204, 304):
        body = Body()
    elif values(fields, "transfer-encoding"):
        chunked = codings[-1:] == ["chunked"] and codings.count("chunked") == 1
        body = Body(chunked=chunked, to_close=not chunked)
    elif length is not None:
        body = Body(length=length)
    else:
        body = Body(to_close=True)
    return Response(start, status, fields, body, last=last or body.to_close)


def serialize(start: str, fields: Fields) -> bytes:
    return "".join([start, "\r\n", *(f"{k}: {v}\r\n" for k, v in fields), "\r\n"]).encode("latin-1")


class Reader:
    """A buffered reader over an asyncio-like one (``read(n)`` only: a StreamReader, the
    docker runtime's relay).  One read of the underlying reader is in flight at a time, and
    waiting for it (``readable``) never loses what it brings."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._buf = bytearray()
        self._eof = False
        self._pending: asyncio.Future[bytes] | None = None

    def readable(self) -> asyncio.Future[Any]:
        """Done once there are bytes (or the end) to read; reading nothing."""
        if self._buf or self._eof:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._raw.read(CHUNK))
        return self._pending

    async def _read(self) -> bytes:
        """The next bytes from the underlying reader (b"": the end), past the buffer."""
        if self._eof:
            return b""
        if (pending := self._pending) is not None:
            await asyncio.wait([pending])  # (not cancelled with the caller: it is shared)
            self._pending = None
            data: bytes = pending.result()
        else:
            data = await self._raw.read(CHUNK)
        self._eof = not data
        return data

    async def head(self, *, skip_blank: bool, who: int) -> bytes | None:
        """The next head, up to its blank line; None at the end before one begins."""
        searched = 0
        while True:
            while skip_blank and self._buf[:2] == b"\r\n":
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n", max(0, searched - 3))
            if end >= 0:
                head = bytes(self._buf[: end + 4])
                del self._buf[: end + 4]
                return head
            searched = len(self._buf)
            if searched > MAX_HEAD:
                raise FramingError(431 if who == 400 else who, "header fields too large")
            if not (data := await self._read()):
                if not self._buf or (skip_blank and self._buf == b"\r"):
                    return None
                raise Truncated("the connection closed in a head")
            self._buf += data

    async def line(self, limit: int, who: int) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > limit:
                raise FramingError(who, "a bad line in a chunked body")
            if not (data := await self._read()):
                raise Truncated("the connection closed in a chunked body")
            self._buf += data
        out = bytes(self._buf[: end + 2])
        del self._buf[: end + 2]
        if len(out) > limit:
            raise FramingError(who, "a bad line in a chunked body")
        return out

    async def some(self, n: int) -> bytes:
        """Up to ``n`` bytes, as soon as there are any; b"" at the end."""
        if not self._buf:  # (a body's bytes: not through the buffer, where it can be helped)
            data = await self._read()
            if len(data) <= n:
                return data
            self._buf += memoryview(data)[n:]
            return data[:n]
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                self._pending.exception()


async def copy_exact(src: Reader, dst: Any, n: int) -> None:
    while n > 0:
        data = await src.some(min(n, CHUNK))
        if not data:
            raise Truncated("the connection closed in a body")
        dst.write(data)
        await dst.drain()
        n -= len(data)


async def copy_chunked(src: Reader, dst: Any, *, trailers: bool, who: int) -> None:
    while True:
        m = _CHUNK_SIZE.fullmatch(await src.line(MAX_LINE, who))
        if m is None:
            raise FramingError(who, "a bad chunk size")
        size = int(m.group(1), 16)
        dst.write(b"%x\r\n" % size)
        if size == 0:
            break
        await copy_exact(src, dst, size)
        if await src.line(2, who) != b"\r\n":
            raise FramingError(who, "a chunk longer than its size")
        dst.write(b"\r\n")
    total = 0
    while (line := await src.line(MAX_HEAD, who)) != b"\r\n":
        total += len(line)
        name, sep, _ = line.decode("latin-1").partition(":")
        if total > MAX_HEAD or not sep or not _TOKEN.fullmatch(name):
            raise FramingError(who, "bad trailers in a chunked body")
        if trailers:
            dst.write(line)
    dst.write(b"\r\n")
    await dst.drain()


async def copy_body(src: Reader, dst: Any, body: Body, *, trailers: bool, who: int) -> None:
    if body.chunked:
        await copy_chunked(src, dst, trailers=trailers, who=who)
    elif body.to_close:
        await pipe(src, dst)
    else:
        await copy_exact(src, dst, body.length)


async def pipe(src: Reader, dst: Any) -> None:
    """Everything to the end, then half-close ``dst``."""
    while data := await src.some(CHUNK):
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()
