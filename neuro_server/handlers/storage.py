"""The storage API at ``storage_url`` (the shape of the platform's, WebHDFS-like): every path is
in the caller's own tree (neuro_server/storage.py keeps it there).

    GET    {storage_url}/PATH?op=LIST_STATUS      {"FileStatuses": {"FileStatus": [...]}}
    GET    {storage_url}/PATH?op=GET_FILE_STATUS  {"FileStatus": {...}}
    GET    {storage_url}/PATH?op=OPEN             the file's bytes
    PUT    {storage_url}/PATH?op=CREATE           body: the file's bytes (streamed, replaced)
    PUT    {storage_url}/PATH?op=MKDIRS           (with parents)
    DELETE {storage_url}/PATH?op=DELETE[&recursive=true]
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid

from aiohttp import web

from .. import storage
from .common import app_state, caller, fail, parse_bool

CHUNK = 1 << 20


def _target(request: web.Request, *, must_exist: bool = False):  # type: ignore[no-untyped-def]
    root = storage.user_root(app_state(request).config.data_dir, caller(request))
    try:
        return root, storage.resolve(root, request.match_info.get("path", ""), must_exist=must_exist)
    except storage.StorageError as e:
        fail({403: web.HTTPForbidden, 404: web.HTTPNotFound}.get(e.status, web.HTTPBadRequest), str(e))


async def get(request: web.Request) -> web.StreamResponse:
    op = request.query.get("op", "OPEN").upper()
    root, path = _target(request, must_exist=True)
    if op == "LIST_STATUS":
        items = await asyncio.to_thread(storage.listing, path, root)
        return web.json_response({"FileStatuses": {"FileStatus": items}})
    if op == "GET_FILE_STATUS":
        return web.json_response({"FileStatus": storage.status(path, root)})
    if op != "OPEN":
        fail(web.HTTPBadRequest, f"unknown op {op!r}")
    if path.is_dir():
        fail(web.HTTPBadRequest, f"{request.match_info.get('path', '/')} is a directory")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(os.fstat(f.fileno()).st_size)})
        await resp.prepare(request)
        while data := await asyncio.to_thread(f.read, CHUNK):
            await resp.write(data)
        await resp.write_eof()
    return resp


async def put(request: web.Request) -> web.Response:
    op = request.query.get("op", "CREATE").upper()
    root, path = _target(request)
    if op == "MKDIRS":
        if path.exists() and not path.is_dir():
            fail(web.HTTPConflict, f"{request.match_info.get('path')} exists and is a file")
        path.mkdir(parents=True, exist_ok=True)
        return web.Response(status=201)
    if op != "CREATE":
        fail(web.HTTPBadRequest, f"unknown op {op!r}")
    if path == root or path.is_dir():
        fail(web.HTTPConflict, f"{request.match_info.get('path', '/')} is a directory")
    if not path.parent.is_dir():
        fail(web.HTTPNotFound, f"no such directory: {path.parent.relative_to(root).as_posix()}")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            async for data in request.content.iter_chunked(CHUNK):
                await asyncio.to_thread(f.write, data)
        # the directory must still be inside the tree (a job may have swapped in a link)
        storage.resolve(root, path.relative_to(root).as_posix())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return web.Response(status=201)


async def delete(request: web.Request) -> web.Response:
    root, path = _target(request, must_exist=True)
    if path == root:
        fail(web.HTTPBadRequest, "the root of your storage cannot be removed")
    recursive = parse_bool(request.query.get("recursive"), "recursive")
    if path.is_dir() and not path.is_symlink():
        if not recursive and any(path.iterdir()):
            fail(web.HTTPConflict, f"{request.match_info.get('path')} is a directory that is not "
                                   "empty (remove it recursively)")
        await asyncio.to_thread(shutil.rmtree, path)
    else:
        path.unlink()
    return web.Response(status=204)
