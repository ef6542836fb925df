"""Helpers shared by the handlers: JSON errors, the caller, the job a request names."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NoReturn

from aiohttp import web

from ..store import JobRecord

STATE: web.AppKey[Any] = web.AppKey("state")
# the authenticated caller (None on routes where a token is optional)
USER: Any = web.RequestKey("user", str) if hasattr(web, "RequestKey") else "user"

MAX_HEADER_ERROR = 1024  # bytes of X-Error (a client takes headers of 8 KiB at most, all told)
MAX_BODY_ERROR = 16 * 1024  # characters of the message in the JSON body


def _cut(message: str, limit: int) -> str:
    """The message, at most ``limit`` characters: errors quote what the client sent, which
    may be any size; a cut one ends with an ellipsis."""
    return message if len(message) <= limit else message[: limit - 1] + "\u2026"


def _header(message: str, extra: dict[str, Any]) -> str:
    """The X-Error JSON, at most MAX_HEADER_ERROR bytes: a character may take 12 as an
    escape (ASCII only in a header), so the message is cut to fit what it encodes to."""

    def encoded(n: int) -> str:
        return json.dumps({"error": _cut(message, n), **extra})

    if len(header := encoded(MAX_HEADER_ERROR)) <= MAX_HEADER_ERROR:
        return header
    fits, too_long = 1, MAX_HEADER_ERROR  # the longest cut that fits lies in between
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if len(encoded(middle)) <= MAX_HEADER_ERROR:
            fits = middle
        else:
            too_long = middle
    return encoded(fits)


def error_response(
    cls: type[web.HTTPException],
    message: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.HTTPException:
    body = json.dumps({"error": _cut(message, MAX_BODY_ERROR), **extra})
    header = _header(message, extra)
    kw: dict[str, Any] = {
        "text": body,
        "content_type": "application/json",
        "headers": {**(headers or {}), "X-Error": header},
    }
    if cls in (web.HTTPRequestEntityTooLarge, web.HTTPMethodNotAllowed):
        # their constructors insist on sizes or methods; build a plain one of the status
        exc = web.HTTPException(**kw)
        exc.set_status(cls.status_code)
        return exc
    return cls(**kw)


def fail(cls: type[web.HTTPException], message: str) -> NoReturn:
    raise error_response(cls, message)


def not_running(job: JobRecord) -> str:
    """Why ``job`` is not running, in words (as the CLI says it): "it has already finished
    (succeeded)", "it has not started yet (pending)"..."""
    if job.restarting:
        return f"it waits to restart ({job.description})"
    return {
        "pending": "it has not started yet (pending)",
        "suspended": "it is suspended",
        "succeeded": "it has already finished (succeeded)",
        "failed": "it has already finished (failed)",
        "cancelled": "it was already cancelled",
    }.get(job.status.value, f"its status is {job.status.value}")


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
    job: JobRecord | None = state.store.get_job(job_id)
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
        dt = dt.replace(tzinfo=UTC)
    try:
        dt.astimezone(UTC)  # the store compares in UTC: 0001-01-01+23:59 has none
    except OverflowError:
        fail(web.HTTPBadRequest, f"invalid '{name}': {value!r} is out of range")
    return dt


async def read_json(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        fail(
            web.HTTPRequestEntityTooLarge,
            f"request body too large (at most {request.app[STATE].config.max_body_bytes} bytes)",
        )
    if not raw:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        fail(web.HTTPBadRequest, "the request body is not valid JSON")
    except RecursionError:
        fail(web.HTTPBadRequest, f"the request body is nested too deeply (at most {MAX_DEPTH})")
    check_json(body)
    return body


MAX_DEPTH = 32


def check_json(body: Any) -> None:
    """Refuse what JSON parses but the server cannot keep: nesting deeper than MAX_DEPTH
    (recursive code down the line would overflow) and strings with lone surrogates (valid
    as JSON escapes, but no UTF-8 text: the store and the log could not encode them)."""
    todo: list[tuple[Any, int]] = [(body, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, str):
            _text(value)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            fail(web.HTTPBadRequest, f"the request body is nested too deeply (at most {MAX_DEPTH})")
        if isinstance(value, dict):
            for k, v in value.items():
                _text(k)
                todo.append((v, depth + 1))
        else:
            todo.extend((v, depth + 1) for v in value)


def _text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        fail(
            web.HTTPBadRequest,
            f"the request body has a string that is not valid Unicode "
            f"text ({e.reason}: {value[e.start]!r})",
        )
