"""Disks at ``disks_url`` (the platform's shape): a user's persistent filesystems of a fixed size.

    POST   {disks_url}            {"storage": BYTES, "name"?: NAME} -> 201 the disk
    GET    {disks_url}            [disk, ...]
    GET    {disks_url}/{id|name}  the disk
    DELETE {disks_url}/{id|name}  204 (409 while a job uses it)

A disk: {"id", "name", "owner", "storage", "used_bytes", "status": "Ready",
"created_at", "last_usage", "cluster_name", "org_name", "project_name"}."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from .. import disks
from ..store import ACTIVE, DiskRecord
from ..validation import NAME_RE
from .common import app_state, caller, fail, read_json


def disk_json(request: web.Request, d: DiskRecord) -> dict[str, Any]:
    config = app_state(request).config
    return {
        "id": d.id,
        "name": d.name,
        "owner": d.owner,
        "storage": d.size,
        "used_bytes": disks.used_bytes(config.data_dir, d.id),
        "status": "Ready",
        "created_at": d.created_at,
        "last_usage": d.last_usage,
        "cluster_name": config.cluster_name,
        "org_name": config.org_name,
        "project_name": config.project_name,
    }


def users_of(request: web.Request, disk_id: str) -> list[str]:
    """Active jobs that mount the disk."""
    return [
        j.id
        for j in app_state(request).store.jobs_with_status(ACTIVE)
        if any(v.id == disk_id for v in j.spec.container.disk_volumes)
    ]


async def create(request: web.Request) -> web.Response:
    st = app_state(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        fail(web.HTTPBadRequest, "the request body must be a JSON object")
    size = body.get("storage")
    if (
        isinstance(size, bool)
        or not isinstance(size, int)
        or not disks.MIN_SIZE <= size <= disks.MAX_SIZE
    ):
        fail(
            web.HTTPBadRequest,
            f"'storage' must be a size in bytes between "
            f"{disks.MIN_SIZE >> 20} MiB and {disks.MAX_SIZE >> 40} TiB",
        )
    name = body.get("name")
    if name is not None and (
        not isinstance(name, str) or not 3 <= len(name) <= 40 or not NAME_RE.fullmatch(name)
    ):
        fail(
            web.HTTPBadRequest,
            f"invalid disk name {name!r}: 3-40 lower-case letters, digits, dashes",
        )
    why = disks.why_unsupported()
    if why:
        fail(web.HTTPBadRequest, why)
    disk_id = f"disk-{uuid.uuid4()}"
    if not st.store.add_disk(disk_id, caller(request), name, size):
        fail(web.HTTPConflict, f"you already have a disk named {name!r}")
    try:
        await disks.create_image(st.config.data_dir, disk_id, size)
    except disks.DiskError as e:
        st.store.delete_disk(disk_id)
        fail(web.HTTPBadRequest if e.status < 500 else web.HTTPInternalServerError, str(e))
    made = st.store.disk(caller(request), disk_id)
    assert made is not None
    return web.json_response(disk_json(request, made), status=201)


def _disk(request: web.Request) -> DiskRecord:
    ref = request.match_info["disk"]
    d: DiskRecord | None = app_state(request).store.disk(caller(request), ref)
    if d is None:
        fail(web.HTTPNotFound, f"no disk {ref!r}")
    return d


async def list_disks(request: web.Request) -> web.Response:
    return web.json_response(
        [disk_json(request, d) for d in app_state(request).store.disks(caller(request))]
    )


async def get_disk(request: web.Request) -> web.Response:
    return web.json_response(disk_json(request, _disk(request)))


async def delete(request: web.Request) -> web.Response:
    st = app_state(request)
    d = _disk(request)
    users = users_of(request, d.id)
    if users:
        fail(web.HTTPConflict, f"disk {d.name or d.id} is in use by {', '.join(users)}")
    await disks.unmount(st.config.data_dir, d.id)
    disks.image(st.config.data_dir, d.id).unlink(missing_ok=True)
    mnt = disks.mountpoint(st.config.data_dir, d.id)
    if mnt.exists():
        mnt.rmdir()
    st.store.delete_disk(d.id)
    return web.Response(status=204)
