"""Send a signal to a running job (``POST .../kill?signal=``, protocol 2.1): by name or number,
SIGKILL when none is given (as the platform does)."""

from __future__ import annotations

import signal as signal_mod

from aiohttp import web

from neuro_sdk._wire import signal_number

from ..runtime.base import RuntimeError_
from .common import app_state, fail, get_job, not_running
from .sessions import runtime_error


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
    if job.status != "running" or job.restarting:
        fail(web.HTTPBadRequest, f"job {job.id} is not running: {not_running(job)}; no signal sent")
    try:
        await app_state(request).runtime.signal(job.id, signum)
    except RuntimeError_ as e:
        raise runtime_error(e) from None
    return web.Response(status=204)
