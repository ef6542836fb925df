"""The raw side of the Docker Engine API for the docker runtime: hijacked streams (attach, exec
start) that need a half-close for stdin EOF, byte-exact log streams with their stream ids, a small
blocking client for ``Runtime.inspect`` (which is synchronous), and image-name validation.

The JSON calls (create, start, inspect, kill, exec create...) go through aiodocker; what is here
is what aiodocker does not give: its log reader decodes the output to text and drops which
stream a line came from, and its attach/exec streams cannot close stdin without closing the
connection.  Works over a unix socket (``unix:///run/podman.sock``) or plain TCP
(``tcp://host:2375``); TLS is not supported here.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import http.client
import json
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

API = "/v1.41"  # Docker 20.10+, Podman 3+; every call used here exists there
FRAME = struct.Struct(">BxxxL")  # stream, length: the multiplexed stream of non-TTY containers
READ_SIZE = 64 << 10
CONNECT_TIMEOUT = 10.0
HEAD_TIMEOUT = 30.0


class EngineError(Exception):
    """The engine answered with an error (``status``), or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    """Where the engine listens: a unix socket path, or host and port."""

    path: str = ""
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        if url.startswith("unix://"):
            return cls(path=url[len("unix://") :])
        if url.startswith("/"):
            return cls(path=url)
        m = re.fullmatch(r"(?:tcp|http)://([^:/]+|\[[0-9a-fA-F:]+\]):(\d+)/?", url)
        if m:
            return cls(host=m.group(1).strip("[]"), port=int(m.group(2)))
        raise ValueError(f"unsupported engine URL {url!r}: use unix:///path or tcp://host:port")

    @property
    def url(self) -> str:
        """The URL as aiodocker takes it."""
        return f"unix://{self.path}" if self.path else f"tcp://{self.host}:{self.port}"

    @property
    def local(self) -> bool:
        """The engine runs on this host (its pids and cgroups are ours to look at)."""
        return bool(self.path) or self.host in ("127.0.0.1", "localhost", "::1")

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> tuple[Any, Any]:
        try:
            if self.path:
                return await asyncio.wait_for(
                    asyncio.open_unix_connection(self.path, limit=1 << 20), timeout
                )
            return await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=1 << 20), timeout
            )
        except (OSError, TimeoutError) as e:
            raise EngineError(0, f"cannot reach the container engine at {self.url}: {e}") from e


def path(template: str, *args: str, **query: Any) -> str:
    """``path("/containers/{}/logs", cid, follow=1)`` -> ``/v1.41/containers/ID/logs?follow=1``."""
    p = API + template.format(*(quote(a, safe="") for a in args))
    if query:
        p += "?" + urlencode({k: v for k, v in query.items() if v is not None})
    return p


# -- one raw request -------------------------------------------------------------------------


class Response:
    """A response head; the body (or, after an upgrade, the raw stream) is read from ``reader``."""

    def __init__(self, reader: Any, writer: Any, status: int, headers: dict[str, str]) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left = int(length) if length is not None and not self._chunked else None
        self._chunk_left = 0
        self._done = False

    async def read(self, n: int = READ_SIZE) -> bytes:
        """The next piece of the body (chunked encoding removed); b"" at its end."""
        if self._done:
            return b""
        data: bytes
        try:
            if self._chunked:
                if self._chunk_left == 0:
                    line = await self.reader.readline()
                    size = int(line.split(b";")[0].strip() or b"0", 16) if line else 0
                    if size == 0:
                        self._done = True
                        return b""
                    self._chunk_left = size
                data = await self.reader.read(min(n, self._chunk_left))
                self._chunk_left -= len(data)
                if data and self._chunk_left == 0:
                    await self.reader.readexactly(2)  # the chunk's CRLF
            elif self._left is not None:
                data = await self.reader.read(min(n, self._left)) if self._left else b""
                self._left -= len(data)
            else:
                data = await self.reader.read(n)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            data = b""
        if not data:
            self._done = True
        return data

    async def body(self, limit: int = 8 << 20) -> bytes:
        out = bytearray()
        while len(out) < limit and (piece := await self.read()):
            out += piece
        return bytes(out)

    async def json(self) -> Any:
        raw = await self.body()
        return json.loads(raw) if raw.strip() else None

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def request(
    ep: Endpoint,
    method: str,
    target: str,
    body: Any = None,
    *,
    upgrade: bool = False,
    head_timeout: float = HEAD_TIMEOUT,
) -> Response:
    """Send one request on a new connection; raise EngineError for an error status (its
    message from the engine's JSON) or when the engine cannot be reached."""
    reader, writer = await ep.open()
    try:
        data = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {target} HTTP/1.1", "Host: docker", "User-Agent: neuro-server"]
        lines += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
        if body is not None:
            lines.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(data)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await writer.drain()
        # the head comes at once (Podman may never answer an attach to a container that just
        # exited: the caller must not hang on it)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), head_timeout)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        resp = Response(reader, writer, status, headers)
        if status >= 400:
            raw = await resp.body(1 << 20)
            await resp.aclose()
            raise EngineError(status, error_message(raw) or f"HTTP {status}")
        return resp
    except EngineError:
        writer.close()
        raise
    except TimeoutError as e:
        writer.close()
        raise EngineError(
            0, f"the container engine at {ep.url} did not answer {method} {target}"
        ) from e
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
        writer.close()
        raise EngineError(0, f"the container engine at {ep.url} failed: {e}") from e
    except BaseException:
        writer.close()
        raise


async def get_json(ep: Endpoint, target: str) -> Any:
    resp = await request(ep, "GET", target)
    try:
        return await resp.json()
    finally:
        await resp.aclose()


def error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace").strip()
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data.get("cause") or data)
    return str(data)


# -- multiplexed and raw streams -------------------------------------------------------------


class Demux:
    """(stream, bytes) pieces from a stream: frames of the multiplexed format (non-TTY
    containers), or raw bytes as stream 1 (TTY).  None at the end."""

    def __init__(self, read: Callable[[], Awaitable[bytes]], tty: bool) -> None:
        self._read = read
        self.tty = tty
        self._buf = bytearray()
        self._pos = 0

    async def next(self) -> tuple[int, bytes] | None:
        if self.tty:
            data = await self._read()
            return (1, data) if data else None
        while True:
            avail = len(self._buf) - self._pos
            if avail >= FRAME.size:
                stream, size = FRAME.unpack_from(self._buf, self._pos)
                if avail >= FRAME.size + size:
                    start = self._pos + FRAME.size
                    payload = bytes(self._buf[start : start + size])
                    self._pos = start + size
                    if self._pos > READ_SIZE:
                        del self._buf[: self._pos]
                        self._pos = 0
                    if size:
                        return (2 if stream in (2, 3) else 1), payload
                    continue
            data = await self._read()
            if not data:
                return None  # a frame cut short by the end is dropped
            self._buf += data


class Hijack:
    """A hijacked connection (attach, exec start): output in, stdin out, half-close for EOF."""

    def __init__(self, resp: Response, tty: bool) -> None:
        self._resp = resp
        self.tty = tty
        self._demux = Demux(self._read, tty)
        self._closed = False

    async def _read(self) -> bytes:
        try:
            data: bytes = await self._resp.reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return b""
        return data

    async def read(self) -> tuple[int, bytes] | None:
        if self._closed:
            return None
        return await self._demux.next()

    async def write(self, data: bytes) -> bool:
        """False when the connection is gone."""
        if self._closed or self._resp.writer.is_closing():
            return False
        try:
            self._resp.writer.write(data)
            await self._resp.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    def write_eof(self) -> None:
        w = self._resp.writer
        with contextlib.suppress(OSError, RuntimeError):
            if not w.is_closing() and w.can_write_eof():
                w.write_eof()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._resp.aclose()


async def hijack(
    ep: Endpoint, target: str, body: Any = None, *, tty: bool, head_timeout: float = HEAD_TIMEOUT
) -> Hijack:
    resp = await request(ep, "POST", target, body, upgrade=True, head_timeout=head_timeout)
    if resp.status not in (101, 200):
        await resp.aclose()
        raise EngineError(
            resp.status, f"the engine did not hand over the stream (HTTP {resp.status})"
        )
    return Hijack(resp, tty)


# -- the log API -----------------------------------------------------------------------------

_STAMP = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def parse_stamp(stamp: bytes) -> tuple[float, float] | None:
    """``(unix time, resolution)`` of an RFC 3339 time as the engines print them (Podman to
    the second, Docker to the nanosecond)."""
    m = _STAMP.fullmatch(stamp)
    if not m:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    t = float(calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)))
    frac = m.group(7)
    resolution = 1.0
    if frac:
        t += float(frac)
        resolution = 10.0 ** -(len(frac) - 1)
    tz = m.group(8)
    if tz != b"Z":
        sign = 1 if tz[:1] == b"+" else -1
        t -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return t, resolution


def parse_time(text: str | None) -> float | None:
    """Unix time of an engine's ``StartedAt``/``FinishedAt``; None for the zero time."""
    if not text or text.startswith("0001-"):
        return None
    parsed = parse_stamp(text.encode())
    return None if parsed is None else parsed[0]


# -- blocking calls (for the synchronous Runtime.inspect and info) ---------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, sock_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._sock_path = sock_path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._sock_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def get_json_blocking(
    ep: Endpoint, target: str, timeout: float = 5.0, *, method: str = "GET"
) -> tuple[int, Any]:
    """``(status, JSON body)``; EngineError(0, ...) when the engine cannot be reached."""
    conn: http.client.HTTPConnection = (
        _UnixConnection(ep.path, timeout)
        if ep.path
        else http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
    )
    try:
        conn.request(method, target, headers={"Host": "docker"})
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise EngineError(0, f"cannot reach the container engine at {ep.url}: {e}") from e
    finally:
        conn.close()
    try:
        data = json.loads(raw) if raw.strip() else None
    except ValueError:
        data = None
    return resp.status, data


def ping_blocking(ep: Endpoint, timeout: float = 3.0) -> dict[str, str]:
    """The headers of ``GET /_ping`` (they say which engine it is)."""
    conn: http.client.HTTPConnection = (
        _UnixConnection(ep.path, timeout)
        if ep.path
        else http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
    )
    try:
        conn.request("GET", "/_ping", headers={"Host": "docker"})
        resp = conn.getresponse()
        resp.read()
        return {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, http.client.HTTPException) as e:
        raise EngineError(0, f"cannot reach the container engine at {ep.url}: {e}") from e
    finally:
        conn.close()


# -- image names -----------------------------------------------------------------------------

_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)"
_DOMAIN = rf"(?:{_HOST}(?:\.{_HOST})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?"
)


def image_name_error(image: str) -> str | None:
    """Why ``image`` is not a valid image reference (Docker's grammar), or None."""
    if not image:
        return "no image given"
    if len(image) > 512 or not _REFERENCE.fullmatch(image):
        return f"invalid image name {image!r}: not a valid image reference"
    name = image.split("@", 1)[0]
    if len(name.rsplit(":", 1)[0] if "/" not in name.rsplit(":", 1)[-1] else name) > 255:
        return f"invalid image name {image!r}: the repository name is longer than 255 characters"
    return None
