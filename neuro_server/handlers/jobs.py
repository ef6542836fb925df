"""Jobs endpoints of platform-api (protocol.md 2.1): create, list, status, kill, life span, tags."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from typing import Any

from aiohttp import web

from ..model import ACTIVE, FINISHED, JobRecord, StorageVolume
from ..scheduler import NameTaken, QuotaExhausted
from ..serialize import job_json
from ..validation import (
    MAX_LIFE_SPAN,
    ValidationError,
    check_job_name,
    check_secret_owners,
    finite,
    parse_run,
    parse_start,
)
from .common import app_state, caller, fail, get_job, parse_bool, parse_time, read_json

STATUSES = ACTIVE + FINISHED


def _json(request: web.Request, job: JobRecord, with_transitions: bool = True) -> dict[str, Any]:
    st = app_state(request)
    trans = st.store.transitions(job.id) if with_transitions else None
    return job_json(job, trans, st.config, st.runtime, st.ingress)


async def create_job(request: web.Request) -> web.Response:
    st = app_state(request)
    body = await read_json(request)
    if st.users is not None and (why := st.users.refusal(caller(request))):
        fail(web.HTTPForbidden, why)  # (a server that cannot keep users apart: jobusers.py)
    can = st.runtime.capabilities
    parse = parse_start if "from_preset" in request.query else parse_run
    try:
        new = parse(
            body, st.config, capacity=st.runtime.capacity(), needs_command=can.needs_command
        )
        check_secret_owners(new.spec, caller(request), st.config, st.store.user_exists)
    except ValidationError as e:
        fail(web.HTTPBadRequest, str(e))
    c = new.spec.container
    missing = sorted(c.secret_keys() - set(st.store.secret_keys(caller(request))))
    if missing:
        fail(
            web.HTTPBadRequest,
            f"no secret {missing[0]!r}: add it with `neuro secret add {missing[0]} VALUE`",
        )
    volumes, new_dirs = await _storage_paths(request, c.volumes)
    disk_volumes = []
    for v in c.disk_volumes:
        d = st.store.disk(caller(request), v.ref)
        if d is None:
            fail(web.HTTPBadRequest, f"no disk {v.ref!r}: create it with `neuro disk create SIZE`")
        disk_volumes.append(dataclasses.replace(v, id=d.id))
    new = dataclasses.replace(
        new,
        spec=dataclasses.replace(
            new.spec,
            container=dataclasses.replace(c, volumes=volumes, disk_volumes=tuple(disk_volumes)),
        ),
    )
    if c.has_mounts and (why := can.mounts):
        fail(web.HTTPBadRequest, f"secret files, storage and disk volumes: {why}")
    if (
        new.spec.pass_config
        and not can.loopback_reachable
        and st.config.host in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::", "")
    ):
        # (the URL given to the job must name an address containers reach the server at)
        fail(
            web.HTTPBadRequest,
            "pass_config needs a server that containers can reach at a "
            "known address: serve it with --host ADDRESS (not loopback, "
            "not 0.0.0.0)",
        )
    if new.spec.privileged and not can.privileged:
        fail(
            web.HTTPBadRequest,
            "privileged jobs need the docker runtime: the process runtime "
            "runs jobs as the server's user on the host",
        )
    from .. import storage

    root = storage.user_root(st.config.data_dir, caller(request))
    # (the caller's, where their jobs run as a uid of their own: their jobs write there)
    owner = st.users.owner_ids(caller(request)) if st.users is not None and new_dirs else None
    try:  # volumes' directories are made only now: a refused job leaves none behind
        if owner is not None:
            await asyncio.to_thread(storage.own_tree, root, *owner)
        made = await asyncio.to_thread(storage.make_new_dirs, root, new_dirs, owner)
    except OSError as e:  # (own_tree: the tree is the server's to give)
        fail(
            web.HTTPInsufficientStorage
            if storage.os_error(e, "").status == 507
            else web.HTTPInternalServerError,
            f"your storage: {e.strerror or e}",
        )
    except storage.StorageError as e:
        fail(web.HTTPBadRequest if e.status != 403 else web.HTTPForbidden, f"volume: {e}")
    try:
        job = st.scheduler.create(caller(request), new)
    except (NameTaken, QuotaExhausted) as e:
        await asyncio.to_thread(storage.remove_new_dirs, root, made)
        fail(web.HTTPConflict if isinstance(e, NameTaken) else web.HTTPBadRequest, str(e))
    return web.json_response(_json(request, job), status=202)


async def list_jobs(request: web.Request) -> web.StreamResponse:
    st = app_state(request)
    q = request.query
    statuses = q.getall("status", [])
    for s in statuses:
        if s not in STATUSES:
            fail(web.HTTPBadRequest, f"invalid status {s!r}: one of {', '.join(STATUSES)}")
    me = caller(request)
    owners = [o for o in q.getall("owner", []) if o]  # none: any owner, of what ``me`` may see
    limit = q.get("limit")
    lim: int | None = None
    if limit:
        try:
            lim = int(limit)
        except ValueError:
            fail(web.HTTPBadRequest, f"invalid 'limit': {limit!r}")
        if lim < 0:
            fail(web.HTTPBadRequest, "'limit' must not be negative")
    if q.get("name"):
        try:
            check_job_name(q["name"])
        except ValidationError as e:
            fail(web.HTTPBadRequest, str(e))
    clusters = [c for c in q.getall("cluster_name", []) if c]
    orgs = {o for o in q.getall("org_name", []) if o and o != "NO_ORG"}
    projects = {p for p in q.getall("project_name", []) if p}
    other_cluster = bool(clusters) and st.config.cluster_name not in clusters
    jobs = (
        st.store.list_jobs(
            owners=owners,
            viewer=me,
            statuses=statuses,
            name=q.get("name") or None,
            tags=q.getall("tag", []),
            since=parse_time(q.get("since"), "since"),
            until=parse_time(q.get("until"), "until"),
            reverse=parse_bool(q.get("reverse"), "reverse"),
            limit=None if (orgs or projects) else lim,
        )
        if not other_cluster
        else iter(())
    )

    def wanted(job: JobRecord) -> bool:
        return (not orgs or job.spec.org_name in orgs) and (
            not projects or job.spec.project_name in projects
        )

    if "application/x-ndjson" not in request.headers.get("Accept", ""):
        items = [_json(request, j) for j in jobs if wanted(j)]
        return web.json_response({"jobs": items[:lim] if lim is not None else items})
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    sent = 0
    try:
        buf: list[bytes] = []
        for job in jobs:
            if lim is not None and sent >= lim:
                break
            if not wanted(job):
                continue
            buf.append(json.dumps(_json(request, job)).encode() + b"\n")
            sent += 1
            if len(buf) >= 20:
                await resp.write(b"".join(buf))
                buf.clear()
        if buf:
            await resp.write(b"".join(buf))
    except (ConnectionResetError, ConnectionError):
        raise
    except Exception as e:  # noqa: BLE001 - mid-stream: a final error line, as platform-api does
        await resp.write(json.dumps({"error": f"listing failed: {e}"}).encode() + b"\n")
    await resp.write_eof()
    return resp


def _etag(job: JobRecord) -> str:
    """Changes whenever the job's state does (status, reason, description, exit, restarts,
    life span, tags): what someone waiting for a change cares about."""
    import hashlib

    key = (
        f"{job.status}|{job.reason}|{job.description}|{job.exit_code}|{job.restarts}|"
        f"{job.life_span}|{job.started_at}|{job.finished_at}|{','.join(job.tags)}"
    )
    return '"' + hashlib.sha1(key.encode()).hexdigest()[:16] + '"'


MAX_WAIT = 30.0


def _prefer_wait(request: web.Request) -> float:
    """Seconds of RFC 7240 ``Prefer: wait=N`` (capped), 0 without one."""
    for part in request.headers.get("Prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                wait = float(value.strip().strip('"'))
            except ValueError:
                return 0.0
            return min(max(wait, 0.0), MAX_WAIT) if math.isfinite(wait) else 0.0
    return 0.0


async def get_job_status(request: web.Request) -> web.Response:
    """The job's description.  A long poll: with ``If-None-Match: <the ETag of an earlier
    answer>`` and ``Prefer: wait=N``, answers as soon as the job changes, or after N seconds
    (at most 30) with 304 Not Modified, so a client waiting for a job to start learns of it at
    once instead of polling."""
    job = get_job(request)
    known = request.headers.get("If-None-Match")
    wait = _prefer_wait(request) if known else 0.0
    if known and _etag(job) == known and wait > 0:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        scheduler = app_state(request).scheduler
        while _etag(job) == known and (left := deadline - loop.time()) > 0:
            await scheduler.wait_change(job.id, left)
            job = get_job(request)
    etag = _etag(job)
    if known is not None and etag == known:
        return web.Response(status=304, headers={"ETag": etag})
    return web.json_response(_json(request, job), headers={"ETag": etag})


async def kill_job(request: web.Request) -> web.Response:
    job = get_job(request, need="write")
    await app_state(request).scheduler.kill(job)
    return web.Response(status=204)


async def bump_life_span(request: web.Request) -> web.Response:
    st = app_state(request)
    job = get_job(request, need="write")
    body = await read_json(request)
    if not isinstance(body, dict):
        fail(web.HTTPBadRequest, "the request body must be a JSON object")
    minutes = body.get("additional_max_run_time_minutes")
    seconds = body.get("additional_max_run_time_seconds")
    for key, value in (
        ("additional_max_run_time_minutes", minutes),
        ("additional_max_run_time_seconds", seconds),
    ):
        if value is not None and finite(value) is None:
            fail(web.HTTPBadRequest, f"'{key}' must be a number")
    if seconds is not None:
        add = float(seconds)
    elif minutes is not None:
        if not isinstance(minutes, int):
            fail(web.HTTPBadRequest, "'additional_max_run_time_minutes' must be an integer")
        add = minutes * 60.0
    else:
        fail(web.HTTPBadRequest, "'additional_max_run_time_minutes' is required")
    if add <= 0:
        fail(web.HTTPBadRequest, "the life span can only be extended by a positive amount")
    if job.is_finished:
        fail(web.HTTPBadRequest, f"job {job.id} is already {job.status}")
    if job.life_span is None:
        fail(web.HTTPBadRequest, f"job {job.id} has no life span limit to extend")
    if job.life_span + add > MAX_LIFE_SPAN:
        fail(
            web.HTTPBadRequest,
            f"a life span can be at most {MAX_LIFE_SPAN / 60:.0f} minutes (100 years)",
        )
    st.scheduler.bump_life_span(job, add)
    return web.Response(status=204)


async def tags(request: web.Request) -> web.Response:
    return web.json_response({"tags": app_state(request).store.tags(caller(request))})


async def capacity(request: web.Request) -> web.Response:
    return web.json_response(app_state(request).scheduler.capacity())


async def browse(request: web.Request) -> web.Response:
    """A one-time link that logs the caller's browser in to the job's HTTP host."""
    st = app_state(request)
    job = get_job(request)
    if job.spec.container.http is None:
        fail(web.HTTPBadRequest, f"job {job.id} has no HTTP port (run it with --http-port)")
    if st.ingress is None:
        fail(web.HTTPBadRequest, "this server does not serve jobs over HTTP")
    return web.json_response(
        {"url": st.ingress.url(job), "login_url": st.ingress.login_url(job, caller(request))}
    )


async def _storage_paths(
    request: web.Request, volumes: tuple[StorageVolume, ...]
) -> tuple[tuple[StorageVolume, ...], list[str]]:
    """Resolve each storage volume in the caller's tree: a read-only one must exist.  The
    volumes with their paths in the tree, and the read-write ones' paths that are missing,
    to be made once the job is accepted."""
    from .. import storage

    st = app_state(request)
    me = caller(request)
    root = storage.user_root(st.config.data_dir, me)
    resolved: list[StorageVolume] = []
    missing: list[str] = []
    for v in volumes:
        try:
            rel = storage.clean(storage.uri_path(v.uri, st.config.cluster_name, me))
            path = rel.as_posix()
            exists = await asyncio.to_thread(storage.volume_exists, root, path)
        except storage.StorageError as e:
            fail(
                web.HTTPBadRequest if e.status != 403 else web.HTTPForbidden, f"volume {v.uri}: {e}"
            )
        if not exists:
            if v.read_only:
                fail(
                    web.HTTPBadRequest,
                    f"volume {v.uri}: no such file or directory: "
                    f"{storage.shown(path)} (a read-only volume "
                    "must exist)",
                )
            missing.append(path)
        resolved.append(dataclasses.replace(v, path=path))
    return tuple(resolved), missing
