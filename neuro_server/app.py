"""The aiohttp application: routes of protocol.md, authentication and error middlewares."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .auth import Authenticator, AuthError, load_secret
from .config import ServerConfig
from .diskfull import describe, disk_full
from .handlers import (
    attach,
    disks,
    jobs,
    monitoring,
    oauth,
    port_forward,
    secrets,
    shares,
    signals,
    storage,
    top,
)
from .handlers import exec as exec_
from .handlers.common import STATE, USER, error_response
from .jobusers import JobUsers
from .runtime.base import Runtime
from .scheduler import Scheduler
from .serialize import server_config_json
from .store import Store

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = {"/api/v1/ping", "/ping", "/oauth/authorize"}  # (the login page checks the token)
OPTIONAL_AUTH = {"/api/v1/config"}


@dataclasses.dataclass
class State:
    config: ServerConfig
    store: Store
    runtime: Runtime
    scheduler: Scheduler
    auth: Authenticator
    execs: dict[str, Any] = dataclasses.field(default_factory=dict)  # legacy exec sessions
    live_execs: dict[str, Any] = dataclasses.field(default_factory=dict)  # resumable execs
    reap_tasks: set[Any] = dataclasses.field(default_factory=set)  # their reapers in flight
    sessions: dict[str, int] = dataclasses.field(default_factory=dict)  # job -> attach/exec open
    runtime_reason: str = ""
    ingress: Any = None  # the jobs' HTTP ingress (neuro_server.ingress), when serving
    users: JobUsers | None = None  # who jobs run as (the process runtime)

    def runtime_info(self) -> dict[str, Any]:
        """Which runtime serves the jobs and why (our extension of /config), and whether it
        keeps users apart (``users``, ``ports``: the process runtime)."""
        info, can = self.runtime.info(), self.runtime.capabilities
        volumes = (
            f"unavailable: {can.mounts}"
            if can.mounts
            else info.volumes
            or (
                "bound into the job's container"
                if can.runs_images
                else "placed in a mount namespace of the job's own"
            )
        )
        return {
            "name": info.name,
            "image_used": can.runs_images,
            "limits": info.limits,
            "note": info.note,
            "reason": self.runtime_reason,
            "volumes": volumes,
            **(self.users.describe() if self.users is not None else {}),
        }


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


class _BadRequestLines(logging.Filter):
    """aiohttp answers a request it cannot parse (an unknown method, a garbled line, a
    header too long) with 400 itself, and logs it with a traceback unless it came first on
    its connection.  It is a client's mistake: one line at INFO, so that no one can fill the
    server's log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first = (exc.message or "").strip().splitlines()[:1]
            record.msg, record.args = "bad request refused: %s %s", (exc.code, "".join(first))
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _quiet_bad_request_lines() -> None:
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _BadRequestLines) for f in logger.filters):
        logger.addFilter(_BadRequestLines())


async def _head_has_no_body(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp leaves the body out of a HEAD answer for a plain Response, not for a streamed
    one: its bytes would be read as the next answer on the connection (a job's log could
    forge one).  Drop them."""
    if request.method == "HEAD" and not isinstance(response, (web.Response, web.WebSocketResponse)):

        async def discard(data: bytes | bytearray | memoryview) -> None:
            return None

        response.write = discard  # type: ignore[method-assign]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or e.content_type == "application/json":
            raise
        # aiohttp's own errors (404 route, 405, 413...) get a JSON body too
        message = e.reason if not e.text or e.text.startswith(f"{e.status}:") else e.text
        if e.status == 404 and not (e.text or "").startswith("{"):
            message = f"not found: {request.path}"
        headers = {}
        if isinstance(e, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(e.allowed_methods))
            message = (
                f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
            )
            headers["Allow"] = allowed
        raise error_response(type(e), message, headers=headers) from None
    except ConnectionError:
        if request.transport is not None and not request.transport.is_closing():
            log.exception("unhandled error on %s %s", request.method, request.path)
            raise error_response(web.HTTPInternalServerError, "internal server error") from None
        # the client left while it was being answered: nothing to tell it, nothing to log
        log.debug("client left during %s %s", request.method, request.path)
        return web.Response(status=499)  # (nginx's "client closed request"; never sent)
    except Exception as e:
        if disk_full(e):  # not the client's mistake, nor a bug: say what it is
            log.warning("%s %s: the disk is full: %s", request.method, request.path, describe(e))
            raise error_response(
                web.HTTPInsufficientStorage,
                f"the server's disk is full ({describe(e)}): the request could not be "
                "completed; try again once space is freed on the server",
            ) from None
        log.exception("unhandled error on %s %s", request.method, request.path)
        raise error_response(web.HTTPInternalServerError, "internal server error") from None


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        return await handler(request)
    state: State = request.app[STATE]
    token = _bearer(request)
    if token is None:
        if request.path in OPTIONAL_AUTH:
            request[USER] = None
            return await handler(request)
        raise error_response(web.HTTPUnauthorized, "missing 'Authorization: Bearer <token>' header")
    try:
        request[USER] = state.auth.verify(token)
    except AuthError as e:
        raise error_response(web.HTTPUnauthorized, f"{e}: log in again (neuro login)") from None
    return await handler(request)


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="Pong")


def base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def get_config(request: web.Request) -> web.Response:
    state: State = request.app[STATE]
    return web.json_response(
        server_config_json(
            state.config,
            base_url(request),
            request[USER],
            state.runtime_info(),
            state.runtime.capacity(),
        )
    )


def make_app(
    config: ServerConfig,
    store: Store,
    runtime: Runtime,
    runtime_reason: str = "",
    users: JobUsers | None = None,
) -> web.Application:
    """``users``: who jobs run as (default: as jobusers.py says for this server's user)."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=config.max_body_bytes
    )
    _quiet_bad_request_lines()
    app.on_response_prepare.append(_head_has_no_body)
    scheduler = Scheduler(config, store, runtime)
    auth = Authenticator(store, load_secret(config.data_dir))
    if users is None:
        users = JobUsers(config, store, host_users=runtime.capabilities.host_users)
    app[STATE] = State(
        config, store, runtime, scheduler, auth, runtime_reason=runtime_reason, users=users
    )
    scheduler.issue_token = auth.issue
    scheduler.users = users
    r = app.router
    r.add_get("/ping", ping)
    r.add_get("/api/v1/ping", ping)
    r.add_get("/api/v1/config", get_config)
    r.add_get("/oauth/authorize", oauth.authorize)
    r.add_post("/oauth/authorize", oauth.authorize)
    r.add_get("/api/v1/tags", jobs.tags)
    r.add_post("/api/v1/users/{user}/permissions", shares.grant)
    r.add_delete("/api/v1/users/{user}/permissions", shares.revoke)
    for prefix in ("/api/v1/storage", "/api/v1/storage/{path:.*}"):
        r.add_get(prefix, storage.get)
        r.add_put(prefix, storage.put)
        r.add_delete(prefix, storage.delete)
    r.add_post("/api/v1/disk", disks.create)
    r.add_get("/api/v1/disk", disks.list_disks)
    r.add_get("/api/v1/disk/{disk}", disks.get_disk)
    r.add_delete("/api/v1/disk/{disk}", disks.delete)
    r.add_get("/api/v1/secrets", secrets.list_secrets)
    r.add_post("/api/v1/secrets", secrets.add_secret)
    r.add_get("/api/v1/secrets/{key}", secrets.get_secret)
    r.add_delete("/api/v1/secrets/{key}", secrets.delete_secret)
    # monitoring_url is {API}/jobs: fixed names go before /jobs/{job_id}
    r.add_get("/api/v1/jobs/capacity", jobs.capacity)
    r.add_post("/api/v1/jobs", jobs.create_job)
    r.add_get("/api/v1/jobs", jobs.list_jobs)
    r.add_get("/api/v1/jobs/{job_id}", jobs.get_job_status)
    r.add_get("/api/v1/jobs/{job_id}/shares", shares.list_shares)
    r.add_post("/api/v1/jobs/{job_id}/browse", jobs.browse)
    r.add_delete("/api/v1/jobs/{job_id}", jobs.kill_job)
    r.add_put("/api/v1/jobs/{job_id}/max_run_time_minutes", jobs.bump_life_span)
    r.add_get("/api/v1/jobs/{job_id}/log_ws", monitoring.log_ws)
    r.add_get("/api/v1/jobs/{job_id}/log", monitoring.log_http)
    r.add_route("*", "/api/v1/jobs/{job_id}/attach", attach.attach)
    r.add_route("*", "/api/v1/jobs/{job_id}/exec", exec_.exec_ws)
    r.add_post("/api/v1/jobs/{job_id}/exec_create", exec_.exec_create)
    r.add_get("/api/v1/jobs/{job_id}/{exec_id}/exec_start", exec_.exec_start)
    r.add_get("/api/v1/jobs/{job_id}/{exec_id}/exec_inspect", exec_.exec_inspect)
    r.add_post("/api/v1/jobs/{job_id}/{exec_id}/exec_resize", exec_.exec_resize)
    r.add_post("/api/v1/jobs/{job_id}/resize", attach.resize)
    r.add_get("/api/v1/jobs/{job_id}/port_forward/{port}", port_forward.port_forward)
    r.add_get("/api/v1/jobs/{job_id}/top", top.top)
    r.add_post("/api/v1/jobs/{job_id}/kill", signals.send_signal)

    async def on_startup(app: web.Application) -> None:
        await scheduler.start()

    async def on_cleanup(app: web.Application) -> None:
        await scheduler.close()
        assert users is not None
        await users.close(
            idle=not any(
                users.apart(j.owner) for j in store.jobs_with_status(("running", "suspended"))
            )
        )
        store.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
