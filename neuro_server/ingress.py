"""HTTP ingress: a job's HTTP port (``http`` in its spec) served at its own host name,
``http://JOB_ID.DOMAIN:PORT/`` and ``http://NAME--OWNER.DOMAIN:PORT/`` (DOMAIN defaults to
``jobs.localhost``, which browsers and curl resolve to this machine).

A proxy that speaks HTTP/1.x in both directions (ingress_http.py frames every message), so
that every request of a keep-alive or pipelined connection is checked and rewritten, not only
the first: the job is found from each request's Host, the caller checked when the job
``requires_auth`` (the owner, or a user the job is shared with: a bearer token, the
platform's ``dat`` cookie holding an API token, or the ``neuro_session`` cookie that the login
flow sets through a one-time code: ``neuro job browse``, or the login page at the cluster
config's ``auth_url`` that a browser without credentials is redirected to), and our
credentials removed (both cookies, whatever their value; an ``Authorization`` that carries a
token or session of this server, valid or not) before the job sees the request.  Other cookies
and headers pass untouched.  The session cookie is not an API token (ingress_session.py):
signed for one job, for ``session_ttl`` seconds, and a job's own ``Set-Cookie`` of either name
is dropped.  The job's port is reached with runtime.connect_port (no port is published).  With
a certificate (``ssl``) the ingress speaks HTTPS only, and job URLs begin with https://.

Responses are framed too, so that the ingress answers for itself (401, 403, 404, 421, 502: and
then closes) only after the job's answers to earlier requests, and knows when a websocket
upgrade succeeded (a 101 from the job): from there the connection is spliced as raw bytes.
Other upgrades (h2c) are removed from the request: after them the client would speak a
protocol whose headers the ingress cannot see.  Bodies stream through, never buffered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .auth import AuthError, load_secret
from .ingress_http import (
    FramingError,
    Reader,
    Request,
    copy_body,
    parse_request,
    parse_response,
    pipe,
    serialize,
)
from .ingress_session import (
    COOKIE,
    PLATFORM_COOKIE,
    SESSION_TTL,
    SessionError,
    Sessions,
    cookies,
    local_path,
    sets_our_cookie,
    without_our_cookies,
)

if TYPE_CHECKING:
    import ssl as ssl_

    from .store import JobRecord, Store

log = logging.getLogger(__name__)

LOGIN_PATH = "/__neuro_login"
MAX_HEAD = 64 * 1024
CODE_TTL = 120.0
MAX_PIPELINED = 32  # requests sent on to the job and not answered yet, per connection


class Ingress:
    def __init__(
        self,
        state: Any,
        host: str,
        port: int,
        domain: str,
        *,
        session_ttl: float = SESSION_TTL,
        secret: bytes | None = None,
        auth_url: str | None = None,
        ssl: ssl_.SSLContext | None = None,
    ) -> None:
        """``auth_url``: the login page a browser without credentials is sent to (None: a
        401 for it too); ``ssl``: serve HTTPS with it."""
        self.state = state
        self.auth_url = auth_url
        self.ssl = ssl
        self.scheme = "https" if ssl is not None else "http"
        if secret is None:
            secret = load_secret(state.config.data_dir)
        self.sessions = Sessions(state.store, secret, session_ttl)
        self.host = host
        self.port = port
        self.domain = domain.strip(".").lower()
        self._server: asyncio.base_events.Server | None = None
        self._codes: dict[str, tuple[str, str, float]] = {}  # code -> (user, job id, expiry)
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_HEAD, ssl=self.ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    # -- URLs ------------------------------------------------------------------------------
    def url(self, job: JobRecord) -> str | None:
        if job.spec.container.http is None:
            return None
        return f"{self.scheme}://{job.id}.{self.domain}:{self.port}/"

    def named_url(self, job: JobRecord) -> str | None:
        if job.spec.container.http is None or not job.name:
            return None
        return f"{self.scheme}://{job.name}--{job.owner}.{self.domain}:{self.port}/"

    def login_url(self, job: JobRecord, user: str, then: str = "/") -> str:
        """A one-time link that logs ``user``'s browser in to the job's host, and then goes
        on to ``then`` (a path on it)."""
        now = time.monotonic()
        self._codes = {c: v for c, v in self._codes.items() if v[2] > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = (user, job.id, now + CODE_TTL)
        more = "" if then == "/" else "&" + urlencode({"next": local_path(then)})
        return f"{self.url(job)}{LOGIN_PATH[1:]}?code={code}{more}"

    def job_at(self, url: str) -> tuple[JobRecord, str] | None:
        """The job serving HTTP that ``url`` is on (this ingress's scheme and port, a job's
        host, no user info) and the path it names; None for any other URL (the login page
        sends browsers only to our own job hosts)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        host = (parts.hostname or "").lower()
        if parts.scheme != self.scheme or port != self.port or "@" in parts.netloc:
            return None
        job = self._job_for(host)
        if job is None or job.spec.container.http is None:
            return None
        return job, local_path(parts.path + (f"?{parts.query}" if parts.query else ""))

    # -- a connection ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await _Connection(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the ingress closing (asyncio 3.11 would log it)
            pass
        except FramingError as e:  # the job broke a response it had begun: nothing to say
            log.info("ingress: closed a connection: %s", e)
        except Exception:  # one broken connection must not stop the ingress
            log.exception("ingress connection")
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- a request -----------------------------------------------------------------------------
    async def admit(self, req: Request, conn: _Connection) -> _Local | None:
        """Check one request (of any on a connection): None to send it on to the job (the
        connection to the job opened by the first), or the ingress's own answer."""
        job = self._job_for(req.host)
        if job is None:
            return _Local(404, f"No job serves HTTP at {req.host or 'this address'}")
        if conn.job_id is not None and job.id != conn.job_id:
            return _Local(
                421, f"This connection is to job {conn.job_id}, not {job.id}: open another one"
            )
        http = job.spec.container.http
        if http is None:
            return _Local(404, f"Job {job.id} serves no HTTP port (run it with --http-port)")
        if req.path == LOGIN_PATH:
            return self._login(job, req.target)
        if http.requires_auth:
            user = self._user(req, job.id)
            if user is None and self.auth_url and _browser(req):
                back = f"{self.scheme}://{req.host}:{self.port}{local_path(req.target)}"
                to = f"{self.auth_url}?{urlencode({'redirect_uri': back})}"
                return _Local(302, f"Log in at {to}", (("Location", to),))
            if user is None:
                return _Local(
                    401,
                    "This job requires you to log in: open it with "
                    f"`neuro job browse {job.name or job.id}`, or send "
                    "Authorization: Bearer TOKEN",
                )
            if not self._may_read(job, user):
                return _Local(403, f"{user} has no access to job {job.id}")
        if job.status != "running":
            return _Local(502, f"Job {job.id} is {job.status}, not running")
        if conn.job_id is None:
            from .runtime.base import RuntimeError_

            try:
                up_r, up_w = await self.state.runtime.connect_port(job.id, http.port)
            except RuntimeError_ as e:
                return _Local(502, f"Job {job.id}: {e}")
            conn.connected(job.id, up_r, up_w)
        return None

    def outgoing(self, req: Request) -> bytes:
        """The request's head as the job gets it: without our credentials, and without an
        upgrade other than to a websocket."""
        fields, framed = [], False
        for name, value in req.fields:
            low = name.lower()
            if low in ("content-length", "transfer-encoding"):  # one, in one spelling
                value = "" if framed else ("chunked" if req.body.chunked else str(req.body.length))
                framed = True
            elif low == "cookie":
                value = without_our_cookies(value)
            elif (low == "authorization" and self._ours(value)) or (
                not req.websocket and low in ("upgrade", "http2-settings")
            ):
                continue
            elif not req.websocket and low == "connection":
                value = ", ".join(
                    t
                    for t in (t.strip() for t in value.split(","))
                    if t and t.lower() not in ("upgrade", "http2-settings")
                )
            if value:
                fields.append((name, value))
        return serialize(f"{req.method} {req.target} HTTP/1.{req.minor}", fields)

    def _ours(self, authorization: str) -> bool:
        credential = authorization.split(None, 1)[-1].strip() if authorization.strip() else ""
        return self.sessions.is_ours(authorization) or self.sessions.is_ours(credential)

    def _job_for(self, host: str) -> JobRecord | None:
        suffix = "." + self.domain
        if not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        store: Store = self.state.store
        if label.startswith("job-"):
            return store.get_job(label)
        name, sep, owner = label.partition("--")
        if not sep:
            return None
        for job in store.list_jobs(owners=[owner], name=name, reverse=True, limit=1):
            return job
        return None

    def _user(self, req: Request, job_id: str) -> str | None:
        """Who sends a request: the first bearer token, else session cookie, that is valid
        (a browser may hold cookies of several jobs' sessions, and ones a job set)."""
        for name, value in req.fields:
            if name.lower() == "authorization" and value[:7].lower() == "bearer ":
                with contextlib.suppress(AuthError):
                    return str(self.state.auth.verify(value[7:].strip()))
        for cookie in cookies(req.fields, COOKIE):
            with contextlib.suppress(SessionError):
                return self.sessions.verify(cookie, job_id)
        for token in cookies(req.fields, PLATFORM_COOKIE):
            with contextlib.suppress(AuthError):
                return str(self.state.auth.verify(token))
        return None

    def _may_read(self, job: JobRecord, user: str) -> bool:
        return job.owner == user or self.state.store.share_action(job.id, user) is not None

    def _login(self, job: JobRecord, target: str) -> _Local:
        code = (parse_qs(urlsplit(target).query).get("code") or [""])[0]
        entry = self._codes.pop(code, None)
        if entry is None or entry[2] < time.monotonic() or entry[1] != job.id:
            return _Local(
                403,
                "This login link is not valid (any more): run "
                f"`neuro job browse {job.name or job.id}` again",
            )
        cookie = (
            f"{COOKIE}={self.sessions.issue(entry[0], job.id)}; Path=/; "
            f"Max-Age={int(self.sessions.ttl)}; HttpOnly; SameSite=Lax"
            + ("; Secure" if self.ssl is not None else "")
        )
        then = (parse_qs(urlsplit(target).query).get("next") or ["/"])[0]
        return _Local(302, "", (("Location", local_path(then)), ("Set-Cookie", cookie)))


@dataclasses.dataclass
class _Local:
    """An answer of the ingress's own; the connection closes after it."""

    status: int
    text: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass
class _Forwarded:
    """A request sent on to the job, whose answer the job owes."""

    method: str
    last: bool
    upgrade: asyncio.Future[bool] | None = None  # a websocket's: did the job switch?


class _Connection:
    """One client connection, two pumps: requests (client to job: each head checked and
    rewritten, each body framed) and responses (job to client: each framed, in order, then
    the ingress's own answer if any).  The request pump queues what the response pump owes
    before it sends the request on, so the response pump always knows what comes next."""

    def __init__(
        self, ingress: Ingress, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.ingress = ingress
        self.client = Reader(reader)
        self.client_w = writer
        self.job_id: str | None = None
        self.up: Reader | None = None
        self.up_w: Any = None
        self.queue: asyncio.Queue[_Local | _Forwarded | None] = asyncio.Queue()  # None: done
        self.window = asyncio.Semaphore(MAX_PIPELINED)
        self.outstanding = 0  # requests sent on, not answered yet
        self.answering = False  # the response pump has begun the current answer

    def connected(self, job_id: str, up_r: Any, up_w: Any) -> None:
        self.job_id, self.up, self.up_w = job_id, Reader(up_r), up_w

    async def run(self) -> None:
        requests = asyncio.ensure_future(self._requests())
        responses = asyncio.ensure_future(self._responses())
        try:
            await asyncio.wait({requests, responses}, return_when=asyncio.FIRST_COMPLETED)
            if responses.done():
                responses.result()
            elif (error := requests.exception()) is None:
                await responses
            elif isinstance(error, FramingError):  # in a request's body, already on its way
                alone = self.outstanding == 1 and not self.answering
                responses.cancel()
                await asyncio.gather(responses, return_exceptions=True)
                if alone:
                    await _reply(self.client_w, error.status, f"Bad request: {error}")
            else:
                raise error
        finally:  # closing first: a cancellation (the ingress closing) may cut the awaits short
            for task in (requests, responses):
                task.cancel()
            self.client.close()
            if self.up is not None:
                self.up.close()
            if self.up_w is not None:
                self.up_w.close()
            await asyncio.gather(requests, responses, return_exceptions=True)
            if self.up_w is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.up_w.wait_closed(), 5)

    def _put(self, entry: _Local | _Forwarded | None) -> None:
        if isinstance(entry, _Forwarded):
            self.outstanding += 1
        self.queue.put_nowait(entry)

    async def _requests(self) -> None:
        self._put(await self._forward_requests())

    async def _forward_requests(self) -> _Local | None:
        """Send requests on until the client is done (None) or the ingress answers."""
        while True:
            try:
                head = await self.client.head(skip_blank=True, who=400)
                req = None if head is None else parse_request(head)
            except FramingError as e:
                return _Local(e.status, f"Bad request: {e}")
            if req is None:
                return None
            refusal = await self.ingress.admit(req, self)
            if refusal is not None:
                return refusal
            await self.window.acquire()
            upgrade = asyncio.get_running_loop().create_future() if req.websocket else None
            self._put(_Forwarded(req.method, req.last, upgrade))
            self.up_w.write(self.ingress.outgoing(req))
            await self.up_w.drain()
            await copy_body(self.client, self.up_w, req.body, trailers=False, who=400)
            if req.last:
                return None
            if upgrade is not None and await upgrade:
                await pipe(self.client, self.up_w)
                return None

    async def _responses(self) -> None:
        while (entry := await self._next()) is not None:
            if isinstance(entry, _Local):
                await _reply(self.client_w, entry.status, entry.text, entry.headers)
                return
            go_on = await self._relay(entry)
            self.outstanding -= 1
            self.answering = False
            self.window.release()
            if not go_on:
                return

    async def _next(self) -> _Local | _Forwarded | None:
        """What to answer next.  While nothing is owed, the job closing its side (a keep-alive
        timeout) ends the connection, so that the client's next request opens a new one rather
        than meeting a closed one (or bytes nobody asked for)."""
        if not self.queue.empty() or self.up is None:
            return await self.queue.get()
        get = asyncio.ensure_future(self.queue.get())
        await asyncio.wait({get, self.up.readable()}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        return None if self.queue.empty() else self.queue.get_nowait()

    async def _relay(self, entry: _Forwarded) -> bool:
        """The job's answer to one request (interim ones first); whether the connection goes
        on after it."""
        assert self.up is not None
        while True:
            try:
                head = await self.up.head(skip_blank=False, who=502)
                if head is None:
                    raise FramingError(502, "it closed the connection without an answer")
                resp = parse_response(head, entry.method)
                if resp.status == 101 and entry.upgrade is None:
                    raise FramingError(502, "it switched protocols unasked")
            except FramingError as e:
                if not self.answering:
                    await _reply(self.client_w, 502, f"Job {self.job_id}: {e}")
                return False
            self.answering = True
            self.client_w.write(
                serialize(
                    resp.status_line, [(k, v) for k, v in resp.fields if not sets_our_cookie(k, v)]
                )
            )
            await self.client_w.drain()
            if resp.status == 101 and entry.upgrade is not None:
                entry.upgrade.set_result(True)
                await pipe(self.up, self.client_w)
                return False
            if resp.status >= 200:
                break
        if entry.upgrade is not None:
            entry.upgrade.set_result(False)
        await copy_body(self.up, self.client_w, resp.body, trailers=True, who=502)
        return not (resp.last or entry.last)


def _browser(req: Request) -> bool:
    """A browser navigating (it asks for a page, with no credentials of its own): what is
    sent to the login page rather than answered 401."""
    accept = ",".join(v for k, v in req.fields if k.lower() == "accept")
    return (
        req.method in ("GET", "HEAD")
        and "text/html" in accept.lower()
        and not any(k.lower() == "authorization" for k, _ in req.fields)
    )


async def _reply(
    writer: asyncio.StreamWriter, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()
) -> None:
    reasons = {
        302: "Found",
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        421: "Misdirected Request",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }
    body = (text + "\n").encode() if text else b""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    writer.write(
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n{extra}"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode("latin-1")
        + body
    )
    await writer.drain()
