"""Talking to running jobs (protocol.md 2.1 legacy table, 4.1, 4.3, 4.4): attach, exec (the
single-websocket generation and the legacy exec_create/exec_start/exec_inspect/exec_resize),
resize, port forwarding, telemetry and signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import signal as signal_mod
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from ..runtime.base import RuntimeError_, State, StdioSession
from ..store import JobRecord
from ..validation import signal_number
from . import exec_resume
from .common import app_state, caller, error_response, fail, get_job, parse_bool

V2 = "v2.channels.neu.ro"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# our extension: with ?offset=N|end the first frame is 0x05 + JSON {"offset": N}: the byte of
# the job's output the stream starts at, so that a client can reconnect and resume exactly
OFFSET = 5


class _Skip:
    """A session whose first ``n`` output bytes are dropped (resuming at a byte offset)."""

    def __init__(self, session: StdioSession, n: int) -> None:
        self._s = session
        self._left = n

    async def read(self) -> tuple[int, bytes] | None:
        while True:
            item = await self._s.read()
            if item is None or self._left <= 0:
                return item
            fileno, data = item
            if len(data) <= self._left:
                self._left -= len(data)
                continue
            data, self._left = data[self._left:], 0
            return fileno, data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


MAX_SESSIONS = 64  # attach and exec sessions open on one job (its supervisor takes 128 clients)


class _Counted:
    """A session that counts among its job's open sessions until it is closed."""

    def __init__(self, session: StdioSession, counts: dict[str, int], job_id: str) -> None:
        self._s = session
        self._counts = counts
        self._job_id = job_id
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            _release(self._counts, self._job_id)
        await self._s.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def _release(counts: dict[str, int], job_id: str) -> None:
    counts[job_id] -= 1
    if not counts[job_id]:
        del counts[job_id]


async def _open_session(request: web.Request, job_id: str,
                        opener: Callable[[], Awaitable[StdioSession]]) -> StdioSession:
    """Open an attach or exec session with the job, at most MAX_SESSIONS at a time: past
    its supervisor's own limit it would drop the connection, and the server answer 500."""
    counts: dict[str, int] = app_state(request).sessions
    if counts.get(job_id, 0) >= MAX_SESSIONS:
        fail(web.HTTPTooManyRequests, f"job {job_id} has {MAX_SESSIONS} attach and exec sessions "
                                      "open: close one first")
    counts[job_id] = counts.get(job_id, 0) + 1  # taken before waiting: others count it
    try:
        session = await opener()
    except ConnectionError as e:  # (the supervisor hung up: it is gone, or full)
        _release(counts, job_id)
        raise RuntimeError_(f"job {job_id} did not take the session: {e}",
                            reason="Unavailable") from None
    except BaseException:
        _release(counts, job_id)
        raise
    return _Counted(session, counts, job_id)


def _running_job(request: web.Request) -> JobRecord:
    job = get_job(request, need="write")
    if job.status != "running":
        fail(web.HTTPNotFound, f"job {job.id} is not running (it is {job.status})")
    return job


def _flags(request: web.Request, *names: str) -> dict[str, bool]:
    return {n: parse_bool(request.query.get(n), n) for n in names}


def _runtime_error(e: RuntimeError_) -> web.HTTPException:
    if e.reason in ("NotFound", "NotRunning"):
        return error_response(web.HTTPNotFound, str(e))
    return error_response(web.HTTPBadRequest, str(e))


async def _pump_session(ws: web.WebSocketResponse, session: StdioSession, *, v2: bool,
                        exit_code: Any = None, streams: frozenset[int] = frozenset({1, 2})) -> None:
    """Copy the session's output (the ``streams`` asked for) to the websocket and the
    websocket's input to the session until either ends; then send the exit code frame (v2)
    when there is one."""

    async def output() -> None:
        while True:
            item = await session.read()
            if item is None:
                return
            fileno, data = item
            if fileno in streams:
                await ws.send_bytes(bytes([fileno]) + data)

    async def input_() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    return
                continue
            data: bytes = msg.data
            if not v2:
                await session.write(data)
                continue
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDIN:
                await session.write(payload)
            elif channel == RESIZE and (size := exec_resume.resize_frame(payload)) is not None:
                await session.resize(*size)
            elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                await session.close_stdin()

    out = asyncio.create_task(output())
    inp = asyncio.create_task(input_())
    try:
        done, _ = await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if out in done and not out.cancelled() and out.exception() is None and exit_code:
            code = await exit_code()
            if v2 and code is not None and not ws.closed:
                await ws.send_bytes(bytes([STATUS]) + json.dumps({"exit_code": code}).encode())
    finally:
        for t in (out, inp):
            t.cancel()
        for t in (out, inp):
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError, Exception):
                await t
        await session.close()
        if not ws.closed:
            await ws.close()


def _ws(request: web.Request, protocols: tuple[str, ...] = ()) -> tuple[web.WebSocketResponse, bool]:
    asked = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    v2 = any(p in (V2, "attach.apolo.us") for p in asked)
    return web.WebSocketResponse(protocols=protocols, heartbeat=30, max_msg_size=8 << 20), v2


async def _job_exit_code(request: web.Request, job_id: str, timeout: float = 10.0) -> int | None:
    st = app_state(request)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = st.runtime.inspect(job_id)
        if state.state == State.EXITED and state.exit is not None:
            return state.exit.exit_code
        if asyncio.get_running_loop().time() > deadline:
            return None
        await st.scheduler.wait_change(job_id, 0.2)


async def attach(request: web.Request) -> web.WebSocketResponse:
    job = _running_job(request)
    f = _flags(request, "tty", "stdin", "stdout", "stderr", "logs")
    if not (f["stdin"] or f["stdout"] or f["stderr"]):
        fail(web.HTTPBadRequest, "attach needs at least one of stdin, stdout, stderr")
    tty = bool(job.spec.get("tty"))
    stdin = f["stdin"] and tty  # only TTY jobs keep their stdin open (as the platform does)
    st = app_state(request)
    raw_offset = request.query.get("offset")
    offset: int | None = None
    if raw_offset is not None:
        if raw_offset == "end":
            offset = st.runtime.log_size(job.id)
        else:
            try:
                offset = int(raw_offset)
            except ValueError:
                offset = -1
            if offset < 0:
                fail(web.HTTPBadRequest, f"invalid offset {raw_offset!r}: a byte count or 'end'")
    try:
        session: StdioSession = await _open_session(request, job.id, lambda: st.runtime.attach(
            job.id, stdin=stdin, stdout=f["stdout"], stderr=f["stderr"] and not tty,
            logs=f["logs"] or offset is not None))
    except RuntimeError_ as e:
        raise _runtime_error(e) from None
    if offset:
        session = _Skip(session, offset)  # type: ignore[assignment]
    ws, v2 = _ws(request, (V2, "attach.apolo.us"))
    try:
        await ws.prepare(request)
        if offset is not None and v2:
            await ws.send_bytes(bytes([OFFSET]) + json.dumps({"offset": offset}).encode())
    except BaseException:
        await session.close()
        raise
    await _pump_session(ws, session, v2=v2, exit_code=lambda: _job_exit_code(request, job.id))
    return ws


async def exec_ws(request: web.Request) -> web.WebSocketResponse:
    job = _running_job(request)
    f = _flags(request, "tty", "stdin", "stdout", "stderr", "resumable")
    st = app_state(request)
    await exec_resume.reap(st)
    resume = request.query.get("resume")
    if resume is not None:
        return await _exec_resume(request, job, resume)
    argv = _split_cmd(request.query.get("cmd"))
    if not (f["stdin"] or f["stdout"] or f["stderr"]):
        fail(web.HTTPBadRequest, "exec needs at least one of stdin, stdout, stderr")
    # our extension: a TTY opens at the client's size (h, w as exec_resize takes them), so a
    # command that reads it at once sees the terminal's and not 24x80
    size = _size(request) if f["tty"] and ("h" in request.query or "w" in request.query) else None
    st = app_state(request)
    try:
        session = await _open_session(request, job.id, lambda: st.runtime.exec(
            job.id, argv, tty=f["tty"], stdin=f["stdin"], size=size))
    except RuntimeError_ as e:
        raise _runtime_error(e) from None
    ws, _ = _ws(request, (V2,))
    try:
        await ws.prepare(request)
    except BaseException:
        await session.close()
        raise
    # on a TTY everything arrives as stdout
    wanted = frozenset({1} if f["stdout"] or f["tty"] else set()) | frozenset(
        {2} if f["stderr"] and not f["tty"] else set())
    if f["resumable"]:
        if len(exec_resume.registry(st)) >= exec_resume.MAX_LIVE:
            await session.close()
            await ws.close()
            return ws
        rec = exec_resume.new_live_exec(st, caller(request), job.id, session, wanted)
        await exec_resume.serve(ws, rec, 0)
        exec_resume.schedule_reap(st)
        return ws
    await _pump_session(ws, session, v2=True, exit_code=session.wait, streams=wanted)
    return ws


async def _exec_resume(request: web.Request, job: JobRecord, exec_id: str) -> web.WebSocketResponse:
    st = app_state(request)
    rec = exec_resume.registry(st).get(exec_id)
    if rec is None or rec.job_id != job.id or rec.owner != caller(request):
        fail(web.HTTPNotFound, f"no such exec session to resume: {exec_id} (it ended or expired)")
    try:
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        offset = -1
    if offset < rec.start or offset > rec.end:
        fail(web.HTTPBadRequest, f"cannot resume at byte {offset}: output from {rec.start} to "
                                 f"{rec.end} is kept")
    ws, _ = _ws(request, (V2,))
    await ws.prepare(request)
    await exec_resume.serve(ws, rec, offset)
    exec_resume.schedule_reap(st)
    return ws


def _split_cmd(cmd: str | None) -> list[str]:
    if not cmd:
        fail(web.HTTPBadRequest, "'cmd' is required")
    try:
        argv = shlex.split(cmd)
    except ValueError as e:
        fail(web.HTTPBadRequest, f"'cmd' cannot be parsed: {e}")
    if not argv:
        fail(web.HTTPBadRequest, "'cmd' is empty")
    if any("\0" in arg for arg in argv):
        fail(web.HTTPBadRequest, "'cmd' has a NUL character: no program can be given one")
    return argv


# -- legacy exec sessions (SDK 20.x-21.x): create, start over a websocket, inspect, resize -----


@dataclass
class ExecRecord:
    id: str
    job_id: str
    owner: str
    argv: list[str]
    command: str
    tty: bool
    stdin: bool
    created: float = field(default_factory=time.monotonic)
    running: bool = False
    exit_code: int | None = None
    session: StdioSession | None = None
    started: bool = False


MAX_EXECS = 1000
EXEC_TTL = 3600.0


def _execs(request: web.Request) -> dict[str, ExecRecord]:
    execs: dict[str, ExecRecord] = app_state(request).execs
    now = time.monotonic()
    for key in [k for k, r in execs.items() if not r.running and now - r.created > EXEC_TTL]:
        del execs[key]
    return execs


def _evict(execs: dict[str, ExecRecord], n: int) -> None:
    """Make room: drop the ``n`` oldest records that do not run, finished ones first, then
    those never started; running sessions stay."""
    finished = [k for k, r in execs.items() if r.started and not r.running]
    unstarted = [k for k, r in execs.items() if not r.started]
    for key in (finished + unstarted)[:n]:
        del execs[key]


def _exec_record(request: web.Request, job: JobRecord) -> ExecRecord:
    rec = _execs(request).get(request.match_info["exec_id"])
    if rec is None or rec.job_id != job.id or rec.owner != caller(request):
        fail(web.HTTPNotFound, f"no such exec session: {request.match_info['exec_id']}")
    return rec


async def exec_create(request: web.Request) -> web.Response:
    job = _running_job(request)
    from .common import read_json

    body = await read_json(request)
    if not isinstance(body, dict):
        fail(web.HTTPBadRequest, "the request body must be a JSON object")
    command = body.get("command")
    if not isinstance(command, str):
        fail(web.HTTPBadRequest, "'command' must be a string")
    argv = _split_cmd(command)
    tty, stdin = body.get("tty", False), body.get("stdin", True)
    if not isinstance(tty, bool) or not isinstance(stdin, bool):
        fail(web.HTTPBadRequest, "'tty' and 'stdin' must be true or false")
    execs = _execs(request)
    if len(execs) >= MAX_EXECS:
        _evict(execs, len(execs) - MAX_EXECS + 1)
    if len(execs) >= MAX_EXECS:
        fail(web.HTTPTooManyRequests, "too many exec sessions; try again later")
    rec = ExecRecord(id=uuid.uuid4().hex, job_id=job.id, owner=caller(request), argv=argv,
                     command=command, tty=tty, stdin=stdin)
    execs[rec.id] = rec
    return web.json_response({"exec_id": rec.id})


async def exec_start(request: web.Request) -> web.WebSocketResponse:
    job = _running_job(request)
    rec = _exec_record(request, job)
    if rec.started:
        fail(web.HTTPBadRequest, f"exec session {rec.id} was already started")
    rec.started = rec.running = True  # running from now on: never evicted while it starts
    st = app_state(request)
    try:
        session = await _open_session(request, job.id, lambda: st.runtime.exec(
            job.id, rec.argv, tty=rec.tty, stdin=rec.stdin))
    except RuntimeError_ as e:
        rec.exit_code, rec.running = 127, False
        raise _runtime_error(e) from None
    except BaseException:
        rec.running = False
        raise
    rec.session = session
    ws, _ = _ws(request)
    try:
        await ws.prepare(request)
    except BaseException:
        await session.close()
        rec.running = False
        raise

    async def record_exit() -> int | None:
        rec.exit_code = await session.wait()
        rec.running = False  # before the socket closes: the client inspects right after
        return rec.exit_code

    try:
        await _pump_session(ws, session, v2=False, exit_code=record_exit)
    finally:
        try:
            if rec.exit_code is None:  # the client went first: the session killed the command
                with contextlib.suppress(Exception):
                    rec.exit_code = await asyncio.wait_for(session.wait(), 2.0)
        finally:
            rec.running = False
            rec.session = None
    return ws


async def exec_inspect(request: web.Request) -> web.Response:
    job = get_job(request)
    rec = _exec_record(request, job)
    return web.json_response({
        "id": rec.id, "running": rec.running, "exit_code": rec.exit_code, "job_id": job.id,
        "tty": rec.tty, "entrypoint": rec.argv[0], "command": rec.command,
    })


def _size(request: web.Request) -> tuple[int, int]:
    try:
        w, h = int(request.query["w"]), int(request.query["h"])
    except (KeyError, ValueError):
        fail(web.HTTPBadRequest, "'w' and 'h' must be integers")
    if not (0 < w <= 10000 and 0 < h <= 10000):
        fail(web.HTTPBadRequest, "'w' and 'h' must be between 1 and 10000")
    return h, w


async def exec_resize(request: web.Request) -> web.Response:
    job = _running_job(request)
    rec = _exec_record(request, job)
    h, w = _size(request)
    if rec.session is not None:
        await rec.session.resize(h, w)
    return web.Response(status=204)


async def resize(request: web.Request) -> web.Response:
    job = _running_job(request)
    h, w = _size(request)
    try:
        await app_state(request).runtime.resize(job.id, h, w)
    except RuntimeError_ as e:
        raise _runtime_error(e) from None
    return web.Response(status=204)


# -- port forwarding ---------------------------------------------------------------------------


async def port_forward(request: web.Request) -> web.WebSocketResponse:
    raw = request.match_info["port"]
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        fail(web.HTTPBadRequest, f"invalid port {raw!r}: use 1-65535")
    job = _running_job(request)
    try:
        reader, writer = await app_state(request).runtime.connect_port(job.id, port)
    except RuntimeError_ as e:
        # clients show "error" (the SDK takes the message from it): say what failed there too
        msg = f"Cannot connect to port {port}"
        body = json.dumps({"msg": msg, "error": f"{msg}: {e}"})
        raise web.HTTPBadRequest(text=body, content_type="application/json",
                                 headers={"X-Error": body}) from None
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


# -- telemetry and signals ---------------------------------------------------------------------


async def top(request: web.Request) -> web.WebSocketResponse:
    job = get_job(request)
    if job.is_finished:
        fail(web.HTTPNotFound, f"job {job.id} is not running (it is {job.status})")
    st = app_state(request)
    ws = web.WebSocketResponse(protocols=("top.apolo.us",), heartbeat=30)
    await ws.prepare(request)

    async def send_samples() -> None:
        while True:
            current = st.store.get_job(job.id)
            if current is None or current.is_finished:
                return
            if current.status == "running":
                t = await st.runtime.stats(job.id)
                if t is not None:
                    frame: dict[str, Any] = {
                        "cpu": round(t.cpu, 4),
                        "memory": t.memory // (1 << 20),
                        "memory_bytes": t.memory,
                        "timestamp": t.timestamp,
                    }
                    if t.gpu_duty_cycle is not None:
                        frame["gpu_duty_cycle"] = t.gpu_duty_cycle
                    if t.gpu_memory is not None:
                        frame["gpu_memory"] = t.gpu_memory // (1 << 20)
                        frame["gpu_memory_bytes"] = t.gpu_memory
                    await ws.send_str(json.dumps(frame))
            await st.scheduler.wait_change(job.id, 1.0)

    async def client_gone() -> None:
        async for msg in ws:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                return

    tasks = [asyncio.create_task(send_samples()), asyncio.create_task(client_gone())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if not ws.closed:
            await ws.close()
    return ws


def parse_signal(value: str | None) -> int:
    """'USR1', 'SIGUSR1', 'usr1' or '10' -> 10; default SIGKILL (what the platform does)."""
    if value is None or value == "":
        return int(signal_mod.SIGKILL)
    num = signal_number(value)
    if num is not None:
        return num
    fail(web.HTTPBadRequest, f"invalid signal {value!r}: use a name like USR1 or TERM, or a number")


async def send_signal(request: web.Request) -> web.Response:
    job = get_job(request, need="write")
    signum = parse_signal(request.query.get("signal"))
    if job.status != "running":
        fail(web.HTTPBadRequest, f"job {job.id} is not running (it is {job.status}): no signal sent")
    try:
        await app_state(request).runtime.signal(job.id, signum)
    except RuntimeError_ as e:
        raise _runtime_error(e) from None
    return web.Response(status=204)
