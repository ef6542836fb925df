"""HTTP ingress: a job's HTTP port (``http`` in its spec) served at its own host name,
``http://JOB_ID.DOMAIN:PORT/`` and ``http://NAME--OWNER.DOMAIN:PORT/`` (DOMAIN defaults to
``jobs.localhost``, which browsers and curl resolve to this machine).

A raw TCP proxy: it reads a request's head, finds the job from the Host header, checks the
caller when the job ``requires_auth`` (the owner, or a user the job is shared with: a bearer
token, or the ``neuro_session`` cookie that ``neuro job browse`` sets through a one-time code),
then splices the connection to the job's port (runtime.connect_port: no port is published).
Websockets, streaming and keep-alive pass through untouched.  Our cookie, and an
``Authorization`` header that carried our token, are removed before the job sees the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

if TYPE_CHECKING:
    from .store import JobRecord

log = logging.getLogger(__name__)

COOKIE = "neuro_session"
LOGIN_PATH = "/__neuro_login"
MAX_HEAD = 64 * 1024
CODE_TTL = 120.0


class Ingress:
    def __init__(self, state: Any, host: str, port: int, domain: str) -> None:
        self.state = state
        self.host = host
        self.port = port
        self.domain = domain.strip(".").lower()
        self._server: asyncio.base_events.Server | None = None
        self._codes: dict[str, tuple[str, str, float]] = {}  # code -> (user, job id, expiry)
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    # -- URLs ------------------------------------------------------------------------------
    def url(self, job: "JobRecord") -> str | None:
        if not job.spec.get("http"):
            return None
        return f"http://{job.id}.{self.domain}:{self.port}/"

    def named_url(self, job: "JobRecord") -> str | None:
        if not job.spec.get("http") or not job.name:
            return None
        return f"http://{job.name}--{job.owner}.{self.domain}:{self.port}/"

    def login_url(self, job: "JobRecord", user: str) -> str:
        """A one-time link that logs ``user``'s browser in to the job's host."""
        now = time.monotonic()
        self._codes = {c: v for c, v in self._codes.items() if v[2] > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = (user, job.id, now + CODE_TTL)
        return f"{self.url(job)}{LOGIN_PATH[1:]}?code={code}"

    # -- a connection ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except Exception:  # noqa: BLE001 - one broken connection must not stop the ingress
            log.exception("ingress connection")
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _reply(writer, 431, "Request header fields too large")
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            await _reply(writer, 400, "Bad request")
            return
        headers = [(k.strip(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:] if l)]
        get = {k.lower(): v for k, v in headers}
        host = get.get("host", "").rsplit(":", 1)[0].lower()
        job = self._job_for(host)
        if job is None:
            await _reply(writer, 404, f"No job serves HTTP at {host or 'this address'}")
            return
        http = job.spec.get("http") or {}
        if not http:
            await _reply(writer, 404, f"Job {job.id} serves no HTTP port (run it with --http-port)")
            return
        path = urlsplit(target).path
        if path == LOGIN_PATH:
            await self._login(writer, job, target)
            return
        token_used = ""
        if http.get("requires_auth"):
            user, token_used = self._user(get)
            if user is None:
                await _reply(writer, 401, "This job requires you to log in: open it with "
                                          f"`neuro job browse {job.name or job.id}`, or send "
                                          "Authorization: Bearer TOKEN")
                return
            if not self._may_read(job, user):
                await _reply(writer, 403, f"{user} has no access to job {job.id}")
                return
        if job.status != "running":
            await _reply(writer, 502, f"Job {job.id} is {job.status}, not running")
            return
        from .runtime.base import RuntimeError_

        try:
            up_r, up_w = await self.state.runtime.connect_port(job.id, int(http["port"]))
        except RuntimeError_ as e:
            await _reply(writer, 502, f"Job {job.id}: {e}")
            return
        out = [lines[0]]
        for k, v in headers:
            if k.lower() == "cookie":
                v = _without_cookie(v)
                if not v:
                    continue
            if k.lower() == "authorization" and token_used and token_used in v:
                continue
            out.append(f"{k}: {v}")
        up_w.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        try:
            await _splice(reader, writer, up_r, up_w)
        finally:
            up_w.close()

    def _job_for(self, host: str) -> "JobRecord | None":
        suffix = "." + self.domain
        if not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        store = self.state.store
        if label.startswith("job-"):
            return store.get_job(label)
        name, sep, owner = label.partition("--")
        if not sep:
            return None
        for job in store.list_jobs(owners=[owner], name=name, reverse=True, limit=1):
            return job
        return None

    def _user(self, get: dict[str, str]) -> tuple[str | None, str]:
        candidates = []
        auth = get.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            candidates.append(auth[7:].strip())
        with contextlib.suppress(CookieError):
            jar: SimpleCookie = SimpleCookie(get.get("cookie", ""))
            if COOKIE in jar:
                candidates.append(jar[COOKIE].value)
        for token in candidates:
            try:
                return self.state.auth.verify(token), token
            except Exception:  # noqa: BLE001 - a bad or revoked token: try the next
                continue
        return None, ""

    def _may_read(self, job: "JobRecord", user: str) -> bool:
        return job.owner == user or self.state.store.share_action(job.id, user) is not None

    async def _login(self, writer: asyncio.StreamWriter, job: "JobRecord", target: str) -> None:
        code = (parse_qs(urlsplit(target).query).get("code") or [""])[0]
        entry = self._codes.pop(code, None)
        if entry is None or entry[2] < time.monotonic() or entry[1] != job.id:
            await _reply(writer, 403, "This login link is not valid (any more): run "
                                      f"`neuro job browse {job.name or job.id}` again")
            return
        token = self.state.auth.issue(entry[0])
        cookie = f"{COOKIE}={quote(token)}; Path=/; HttpOnly; SameSite=Lax"
        writer.write(("HTTP/1.1 302 Found\r\nLocation: /\r\n"
                      f"Set-Cookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                     .encode("latin-1"))
        await writer.drain()


def _without_cookie(header: str) -> str:
    parts = [p.strip() for p in header.split(";")]
    return "; ".join(p for p in parts if p and not p.startswith(COOKIE + "="))


async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    reasons = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
               431: "Request Header Fields Too Large", 502: "Bad Gateway"}
    body = (text + "\n").encode()
    writer.write(f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
                 f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n".encode("latin-1") + body)
    await writer.drain()


async def _splice(cr: asyncio.StreamReader, cw: asyncio.StreamWriter,
                  ur: asyncio.StreamReader, uw: asyncio.StreamWriter) -> None:
    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(1 << 16):
                w.write(data)
                await w.drain()
            if w.can_write_eof():
                w.write_eof()
        except (ConnectionError, OSError):
            pass

    tasks = [asyncio.ensure_future(pipe(cr, uw)), asyncio.ensure_future(pipe(ur, cw))]
    try:
        # the job's side ending ends the connection; the client's side ending only half-closes
        done, _ = await asyncio.wait([tasks[1]], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
