"""Helpers shared by the handlers: JSON errors, the caller, the job a request names."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, NoReturn

from aiohttp import web

from ..store import JobRecord

STATE: web.AppKey[Any] = web.AppKey("state")
# the authenticated caller (None on routes where a token is optional)
USER: Any = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"

def error_response(cls: type[web.HTTPException], message: str, **extra: Any) -> web.HTTPException:
    body = json.dumps({"error": message, **extra})
    kw: dict[str, Any] = {"text": body, "content_type": "application/json",
                          "headers": {"X-Error": body}}
    if cls is web.HTTPRequestEntityTooLarge:
        # its constructor insists on sizes; build it as a plain 413 instead
        exc = web.HTTPException(**kw)
        exc.set_status(413)
        return exc
    return cls(**kw)


def fail(cls: type[web.HTTPException], message: str) -> NoReturn:
    raise error_response(cls, message)


def caller(request: web.Request) -> str:
    return request[USER]  # type: ignore[no-any-return]


def app_state(request: web.Request) -> Any:
    return request.app[STATE]


LEVELS = {"read": 1, "write": 2, "manage": 3}


def get_job(request: web.Request, job_id: str | None = None, need: str = "read") -> JobRecord:
    """The job named in the URL, if the caller may ``need`` it (404 / 403 otherwise): its
    owner may do anything; a user it is shared with, up to the level shared (read: see it,
    its logs and telemetry; write: also attach, exec, forward ports, signal, kill; manage:
    also share it further)."""
    state = app_state(request)
    job_id = job_id or request.match_info["job_id"]
    if len(job_id) > 256:
        fail(web.HTTPBadRequest, "invalid job id")
    job = state.store.get_job(job_id)
    if job is None:
        fail(web.HTTPNotFound, f"no such job: {job_id}")
    me = caller(request)
    if job.owner != me:
        action = state.store.share_action(job.id, me)
        if action is None or LEVELS[action] < LEVELS[need]:
            what = "access" if action is None else f"{need} (shared with you: {action})"
            fail(web.HTTPForbidden, f"no permission to {what} job {job_id}")
    return job


def parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default if value is None else True
    v = value.lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    fail(web.HTTPBadRequest, f"invalid value for '{name}': {value!r} (use true or false)")


def parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        fail(web.HTTPBadRequest, f"invalid '{name}': {value!r} is not an ISO-8601 date and time")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


async def read_json(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        fail(web.HTTPRequestEntityTooLarge,
             f"request body too large (at most {request.app[STATE].config.max_body_bytes} bytes)")
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        fail(web.HTTPBadRequest, "the request body is not valid JSON")
