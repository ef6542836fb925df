"""Run a command beside a running job (protocol 4.1, 2.1 legacy table): the single-websocket
exec (resumable by our extension, see exec_resume.py) and the legacy generation of SDK
20.x-21.x: exec_create, exec_start over a websocket, exec_inspect, exec_resize."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from neuro_sdk._wire import CHANNELS_PROTOCOL, Q_HEIGHT, Q_OFFSET, Q_RESUMABLE, Q_RESUME, Q_WIDTH

from ..model import JobRecord
from ..runtime.base import RuntimeError_, StdioSession
from . import exec_resume
from .common import app_state, caller, fail, get_job, read_json
from .sessions import (
    flags,
    open_session,
    pump_session,
    running_job,
    runtime_error,
    terminal_size,
    websocket,
)


async def exec_ws(request: web.Request) -> web.WebSocketResponse:
    job = running_job(request)
    f = flags(request, "tty", "stdin", "stdout", "stderr", Q_RESUMABLE)
    st = app_state(request)
    await exec_resume.reap(st)
    resume = request.query.get(Q_RESUME)
    if resume is not None:
        return await _exec_resume(request, job, resume)
    argv = _split_cmd(request.query.get("cmd"))
    if not (f["stdin"] or f["stdout"] or f["stderr"]):
        fail(web.HTTPBadRequest, "exec needs at least one of stdin, stdout, stderr")
    # our extension: a TTY opens at the client's size (h, w as exec_resize takes them), so a
    # command that reads it at once sees the terminal's and not 24x80
    wants_size = Q_HEIGHT in request.query or Q_WIDTH in request.query
    size = terminal_size(request) if f["tty"] and wants_size else None
    st = app_state(request)
    try:
        session = await open_session(
            request,
            job.id,
            lambda: st.runtime.exec(job.id, argv, tty=f["tty"], stdin=f["stdin"], size=size),
        )
    except RuntimeError_ as e:
        raise runtime_error(e) from None
    ws, _ = websocket(request, (CHANNELS_PROTOCOL,))
    try:
        await ws.prepare(request)
    except BaseException:
        await session.close()
        raise
    # on a TTY everything arrives as stdout
    wanted = frozenset({1} if f["stdout"] or f["tty"] else set()) | frozenset(
        {2} if f["stderr"] and not f["tty"] else set()
    )
    if f[Q_RESUMABLE]:
        if len(exec_resume.registry(st)) >= exec_resume.MAX_LIVE:
            await session.close()
            await ws.close()
            return ws
        rec = exec_resume.new_live_exec(st, caller(request), job.id, session, wanted)
        await exec_resume.serve(ws, rec, 0)
        exec_resume.schedule_reap(st)
        return ws
    await pump_session(ws, session, v2=True, exit_code=session.wait, streams=wanted)
    return ws


async def _exec_resume(request: web.Request, job: JobRecord, exec_id: str) -> web.WebSocketResponse:
    st = app_state(request)
    rec = exec_resume.registry(st).get(exec_id)
    if rec is None or rec.job_id != job.id or rec.owner != caller(request):
        fail(web.HTTPNotFound, f"no such exec session to resume: {exec_id} (it ended or expired)")
    try:
        offset = int(request.query.get(Q_OFFSET, "0"))
    except ValueError:
        offset = -1
    if offset < rec.start or offset > rec.end:
        fail(
            web.HTTPBadRequest,
            f"cannot resume at byte {offset}: output from {rec.start} to {rec.end} is kept",
        )
    ws, _ = websocket(request, (CHANNELS_PROTOCOL,))
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
    job = running_job(request)
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
    rec = ExecRecord(
        id=uuid.uuid4().hex,
        job_id=job.id,
        owner=caller(request),
        argv=argv,
        command=command,
        tty=tty,
        stdin=stdin,
    )
    execs[rec.id] = rec
    return web.json_response({"exec_id": rec.id})


async def exec_start(request: web.Request) -> web.WebSocketResponse:
    job = running_job(request)
    rec = _exec_record(request, job)
    if rec.started:
        fail(web.HTTPBadRequest, f"exec session {rec.id} was already started")
    rec.started = rec.running = True  # running from now on: never evicted while it starts
    st = app_state(request)
    try:
        session = await open_session(
            request, job.id, lambda: st.runtime.exec(job.id, rec.argv, tty=rec.tty, stdin=rec.stdin)
        )
    except RuntimeError_ as e:
        rec.exit_code, rec.running = 127, False
        raise runtime_error(e) from None
    except BaseException:
        rec.running = False
        raise
    rec.session = session
    ws, _ = websocket(request)
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
        await pump_session(ws, session, v2=False, exit_code=record_exit)
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
    return web.json_response(
        {
            "id": rec.id,
            "running": rec.running,
            "exit_code": rec.exit_code,
            "job_id": job.id,
            "tty": rec.tty,
            "entrypoint": rec.argv[0],
            "command": rec.command,
        }
    )


async def exec_resize(request: web.Request) -> web.Response:
    job = running_job(request)
    rec = _exec_record(request, job)
    h, w = terminal_size(request)
    if rec.session is not None:
        await rec.session.resize(h, w)
    return web.Response(status=204)
