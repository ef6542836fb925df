"""Sharing jobs with other users, in the shape of the platform's permissions API:

    POST   {users_url}/{user}/permissions        [{"uri": "job://CLUSTER/OWNER/JOB_ID", "action": "read"}]
    DELETE {users_url}/{user}/permissions?uri=job://...
    GET    {API}/jobs/{job_id}/shares            [{"user", "action"}]   (the owner, or manage)

Actions: read (see the job, its logs and telemetry), write (also attach, exec, port-forward,
signal, kill), manage (also share it).  Only jobs can be shared here."""

from __future__ import annotations

from aiohttp import web

from .common import LEVELS, app_state, caller, fail, get_job, read_json


def _job_id(uri: object) -> str:
    if not isinstance(uri, str) or not uri.startswith("job:"):
        fail(web.HTTPBadRequest, f"only jobs can be shared: {uri!r} is not a job URI (job:ID)")
    job_id = uri.rstrip("/").rsplit("/", 1)[-1].removeprefix("job:")
    if not job_id.startswith("job-"):
        fail(web.HTTPBadRequest, f"not a job URI: {uri!r}")
    return job_id


def _user(request: web.Request) -> str:
    user = request.match_info["user"]
    if not app_state(request).store.user_exists(user):
        fail(web.HTTPNotFound, f"no user {user!r}")
    if user == caller(request):
        fail(web.HTTPBadRequest, "you cannot share a job with yourself")
    return user


async def grant(request: web.Request) -> web.Response:
    body = await read_json(request)
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not body:
        fail(web.HTTPBadRequest, 'expected a list of {"uri": ..., "action": ...}')
    user = _user(request)
    granted = []
    for item in body:
        if not isinstance(item, dict):
            fail(web.HTTPBadRequest, 'expected a list of {"uri": ..., "action": ...}')
        action = item.get("action")
        if not isinstance(action, str) or action not in LEVELS:  # ([] is no dict key)
            fail(web.HTTPBadRequest, f"invalid action {action!r}: read, write or manage")
        job = get_job(request, _job_id(item.get("uri")), need="manage")
        granted.append((job, str(action)))
    store = app_state(request).store
    for job, action in granted:
        if job.owner != user:  # (its owner has every right already)
            store.share(job.id, user, action)
    return web.json_response([{"uri": f"job:{j.id}", "action": a} for j, a in granted], status=201)


async def revoke(request: web.Request) -> web.Response:
    user = _user(request)
    job = get_job(request, _job_id(request.query.get("uri")), need="manage")
    if not app_state(request).store.unshare(job.id, user):
        fail(web.HTTPNotFound, f"job {job.id} is not shared with {user}")
    return web.Response(status=204)


async def list_shares(request: web.Request) -> web.Response:
    job = get_job(request, need="manage")
    return web.json_response(
        [{"user": u, "action": a} for u, a in app_state(request).store.shares(job.id)]
    )
