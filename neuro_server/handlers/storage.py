"""The storage API at ``storage_url`` (the shape of the platform's, WebHDFS-like): every path is
in the caller's own tree (neuro_server/storage/ keeps it there, and says how links and
special files are handled).

    GET    {storage_url}/PATH?op=LIST_STATUS      {"FileStatuses": {"FileStatus": [...]}}
    GET    {storage_url}/PATH?op=GET_FILE_STATUS  {"FileStatus": {...}}
    GET    {storage_url}/PATH?op=OPEN             the file's bytes
    PUT    {storage_url}/PATH?op=CREATE           body: the file's bytes (streamed, replaced)
    PUT    {storage_url}/PATH?op=MKDIRS           (with parents)
    DELETE {storage_url}/PATH?op=DELETE[&recursive=true]

Where users' jobs run as uids of their own (jobusers.py), what MKDIRS and CREATE make is the
user's (and their tree is made theirs first), so that their jobs can write there.

No file I/O runs on the event loop: every operation is a thread's (storage/operations.py), so
a slow disk or a FIFO a job made cannot stop the server.  Errors are one line: 400 a bad path
or a file that is not served, 403 out of the tree, 404 missing, 409 in the way (a file where a
directory should be, a directory not empty), 507 over the storage quota or the disk full (the
partial file removed).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

from aiohttp import web

from .. import storage
from .common import app_state, caller, fail, parse_bool

CHUNK = 1 << 20
log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
_HTTP: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    507: web.HTTPInsufficientStorage,
}


def _refuse(e: storage.StorageError) -> NoReturn:
    cls = _HTTP.get(e.status, web.HTTPInternalServerError)
    if cls is web.HTTPInternalServerError:
        log.error("storage: %s", e)
    fail(cls, str(e))


async def _io(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn`` in a thread, its StorageError the answer."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except storage.StorageError as e:
        _refuse(e)


async def _owned(
    release: Callable[[R], object], fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """``_io`` for what must be let go of (a descriptor, an upload): when the handler is
    cancelled meanwhile, the thread's result is released as soon as it comes, not leaked."""
    task = asyncio.ensure_future(_io(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(
            lambda t: None if t.cancelled() or t.exception() else release(t.result())
        )
        raise


def _where(request: web.Request) -> tuple[Path, str]:
    """The caller's tree and the path the URL names in it (checked by storage.clean)."""
    root = app_state(request).config.data_dir / "storage" / caller(request)
    path = request.match_info.get("path", "")
    try:
        storage.clean(path)
    except storage.StorageError as e:
        _refuse(e)
    return root, path


async def get(request: web.Request) -> web.StreamResponse:
    op = request.query.get("op", "OPEN").upper()
    if op not in ("LIST_STATUS", "GET_FILE_STATUS", "OPEN"):
        fail(web.HTTPBadRequest, f"unknown op {op[:40]!r}")
    root, path = _where(request)
    if op == "LIST_STATUS":
        items = await _io(storage.list_status, root, path)
        return web.json_response({"FileStatuses": {"FileStatus": items}})
    if op == "GET_FILE_STATUS":
        return web.json_response({"FileStatus": await _io(storage.file_status, root, path)})
    fd, size = await _owned(lambda got: os.close(got[0]), storage.open_file, root, path)
    try:
        resp = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        )
        await resp.prepare(request)
        left = size  # what was promised: a file growing meanwhile is cut there
        while left > 0 and (data := await asyncio.to_thread(os.read, fd, min(CHUNK, left))):
            await resp.write(data)
            left -= len(data)
        await resp.write_eof()
    finally:
        os.close(fd)
    return resp


async def _owner(request: web.Request, root: Path) -> storage.Owner:
    """Who what the caller makes in their tree belongs to (their tree made theirs first);
    None: the server's user."""
    users = app_state(request).users
    owner = users.owner_ids(caller(request)) if users is not None else None
    if owner is not None:
        try:
            await asyncio.to_thread(storage.own_tree, root, *owner)
        except OSError as e:
            _refuse(storage.os_error(e, ""))
    return owner


async def put(request: web.Request) -> web.Response:
    op = request.query.get("op", "CREATE").upper()
    if op not in ("MKDIRS", "CREATE"):
        fail(web.HTTPBadRequest, f"unknown op {op[:40]!r}")
    root, path = _where(request)
    owner = await _owner(request, root)
    if op == "MKDIRS":
        await _io(storage.make_dirs, root, path, owner)
        return web.Response(status=201)
    quota = app_state(request).config.storage_quota
    usage = storage.usage_of(root, quota) if quota else None
    if usage is not None:
        await usage.refresh()
    upload = await _owned(storage.Upload.abort, storage.Upload, root, path, owner)
    try:
        await _receive(request, upload, usage)
    except storage.StorageError as e:
        _refuse(e)
    return web.Response(status=201)


async def _receive(
    request: web.Request, upload: storage.Upload, usage: storage.Usage | None
) -> None:
    """The body into ``upload``, within the quota; on any failure (the quota, a full disk, the
    client gone) the partial file is removed."""
    reserved = 0
    committed = False
    try:
        if usage is not None:
            usage.reserve(upload, request.content_length or 0)
            reserved = request.content_length or 0
        async for data in request.content.iter_chunked(CHUNK):
            if usage is not None and upload.written + len(data) > reserved:
                usage.reserve(upload, upload.written + len(data) - reserved)
                reserved = upload.written + len(data)
            await asyncio.to_thread(upload.write, data)
        await asyncio.to_thread(upload.commit)
        committed = True
    except asyncio.CancelledError:
        upload.abort()  # the handler is going away: no await (a quick unlink)
        raise
    except BaseException:
        await asyncio.to_thread(upload.abort)
        raise
    finally:
        if usage is not None:
            usage.settle(upload, reserved, committed)


async def delete(request: web.Request) -> web.Response:
    root, path = _where(request)
    recursive = parse_bool(request.query.get("recursive"), "recursive")
    freed = await _io(storage.remove, root, path, recursive)
    quota = app_state(request).config.storage_quota
    if quota:
        storage.usage_of(root, quota).freed(freed)
    return web.Response(status=204)
