"""Secrets (the platform's secrets API at ``secrets_url``): each user's named values, used by
jobs as environment variables (``secret_env``) or files (``secret_volumes``).

    GET    {secrets_url}          [{"key", "owner", "org_name", "project_name"}]
    POST   {secrets_url}          {"key": K, "value": base64} -> 201 (replaces an existing K)
    GET    {secrets_url}/{key}    {"key", "value": base64, ...}
    DELETE {secrets_url}/{key}    204

A value never appears in a job's description, an error message or the server's log."""

from __future__ import annotations

import base64
import binascii

from aiohttp import web

from ..validation import SECRET_KEY_RE
from .common import app_state, caller, fail, read_json

MAX_VALUE = 1 << 20


def _key(value: object) -> str:
    if not isinstance(value, str) or not SECRET_KEY_RE.fullmatch(value):
        fail(
            web.HTTPBadRequest,
            "invalid secret key: use letters, digits, '_', '-' and '.', "
            "starting with a letter or '_' (at most 253)",
        )
    return value


def _item(request: web.Request, key: str) -> dict[str, str]:
    config = app_state(request).config
    return {
        "key": key,
        "owner": caller(request),
        "org_name": config.org_name,
        "project_name": config.project_name,
    }


async def list_secrets(request: web.Request) -> web.Response:
    keys = app_state(request).store.secret_keys(caller(request))
    return web.json_response([_item(request, k) for k in keys])


async def add_secret(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        fail(web.HTTPBadRequest, "the request body must be a JSON object")
    key = _key(body.get("key"))
    raw = body.get("value")
    if not isinstance(raw, str):
        fail(web.HTTPBadRequest, "'value' must be a base64 string")
    try:
        value = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        fail(web.HTTPBadRequest, "'value' is not valid base64")
    if len(value) > MAX_VALUE:
        fail(web.HTTPBadRequest, f"a secret holds at most {MAX_VALUE} bytes")
    app_state(request).store.put_secret(caller(request), key, value)
    return web.json_response(_item(request, key), status=201)


async def get_secret(request: web.Request) -> web.Response:
    key = _key(request.match_info["key"])
    value = app_state(request).store.secret(caller(request), key)
    if value is None:
        fail(web.HTTPNotFound, f"no secret {key!r}")
    return web.json_response(
        {**_item(request, key), "value": base64.b64encode(value).decode("ascii")}
    )


async def delete_secret(request: web.Request) -> web.Response:
    key = _key(request.match_info["key"])
    if not app_state(request).store.delete_secret(caller(request), key):
        fail(web.HTTPNotFound, f"no secret {key!r}")
    return web.Response(status=204)
