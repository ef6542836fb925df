from __future__ import annotations

import json
import socket

import pytest
from aiohttp import web

import neuro_sdk._errors as errors_module
from neuro_sdk import (
    AuthenticationError,
    AuthError,
    AuthorizationError,
    BadGateway,
    Client,
    ClientError,
    IllegalArgumentError,
    InsufficientStorage,
    NeuroError,
    ProtocolError,
    ResourceNotFound,
    ServerError,
    ServerNotAvailable,
    ServerUnreachable,
)

from .helpers import TOKEN
from .stub_server import StubServer

STATUS_CASES = [
    (400, IllegalArgumentError),
    (401, AuthenticationError),
    (403, AuthorizationError),
    (404, ResourceNotFound),
    (405, ClientError),
    (409, IllegalArgumentError),
    (422, IllegalArgumentError),
    (500, ServerError),
    (502, BadGateway),
    (503, ServerNotAvailable),
    (504, ServerError),
    (507, InsufficientStorage),
]
STATUS_IDS = [str(s) for s, _ in STATUS_CASES]


def test_hierarchy() -> None:
    assert issubclass(ClientError, NeuroError)
    assert issubclass(IllegalArgumentError, (ClientError, ValueError))
    assert issubclass(ServerError, IllegalArgumentError)
    assert issubclass(InsufficientStorage, ServerError)
    assert issubclass(AuthenticationError, AuthError) and issubclass(AuthError, ClientError)
    assert issubclass(AuthorizationError, AuthError)
    assert issubclass(ResourceNotFound, ValueError)
    assert issubclass(ServerNotAvailable, ValueError)
    assert not issubclass(BadGateway, ValueError)
    assert issubclass(ServerUnreachable, OSError) and issubclass(ServerUnreachable, NeuroError)
    assert issubclass(ProtocolError, ValueError)


def test_hierarchy_tree_is_documented() -> None:
    doc = errors_module.__doc__ or ""
    for name in dir(errors_module):
        obj = getattr(errors_module, name)
        if (
            isinstance(obj, type)
            and issubclass(obj, BaseException)
            and obj.__module__ == errors_module.__name__
        ):
            assert name in doc, name


@pytest.mark.parametrize(("status", "cls"), STATUS_CASES, ids=STATUS_IDS)
async def test_http_status_mapping(
    stub: StubServer, client: Client, status: int, cls: type[ClientError]
) -> None:
    stub.add("GET", "/api/v1/jobs/job-x", json={"error": f"boom {status}"}, status=status)
    with pytest.raises(ClientError) as info:
        await client.jobs.status("job-x")
    assert type(info.value) is cls
    assert info.value.status == status
    assert str(info.value) == f"boom {status}"


async def test_error_plain_text_body(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-x", body=b"no such job", status=400)
    with pytest.raises(IllegalArgumentError, match="^no such job$"):
        await client.jobs.status("job-x")


async def test_error_json_without_error_key(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-x", json={"detail": "x"}, status=400)
    with pytest.raises(IllegalArgumentError, match="detail"):
        await client.jobs.status("job-x")


async def test_kill_not_found(stub: StubServer, client: Client) -> None:
    stub.add("DELETE", "/api/v1/jobs/job-x", json={"error": "job not found"}, status=404)
    with pytest.raises(ResourceNotFound, match="job not found"):
        await client.jobs.kill("job-x")


@pytest.mark.parametrize(("status", "cls"), STATUS_CASES, ids=STATUS_IDS)
async def test_websocket_handshake_x_error_json(
    stub: StubServer, client: Client, status: int, cls: type[ClientError]
) -> None:
    stub.add(
        "GET",
        "/api/v1/jobs/job-x/log_ws",
        status=status,
        headers={"X-Error": json.dumps({"error": f"ws boom {status}"})},
    )
    with pytest.raises(ClientError) as info:
        async for _ in client.jobs.monitor("job-x"):
            pass
    assert type(info.value) is cls
    assert info.value.status == status
    assert str(info.value) == f"ws boom {status}"


async def test_websocket_handshake_x_error_plain_text(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-x/log_ws", status=404, headers={"X-Error": "job is gone"})
    with pytest.raises(ResourceNotFound, match="^job is gone$"):
        async for _ in client.jobs.monitor("job-x"):
            pass


async def test_websocket_handshake_without_upgrade(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-x/log_ws", json={"not": "a websocket"})
    with pytest.raises(ProtocolError):
        async for _ in client.jobs.monitor("job-x"):
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_server_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/v1"
    async with Client(url, TOKEN, server_config={"clusters": []}) as client:
        with pytest.raises(ServerUnreachable) as info:
            await client.jobs.status("job-1")
    assert url in str(info.value)
    assert info.value.url.startswith(url)
    assert isinstance(info.value, OSError)


async def test_websocket_connection_refused_is_server_unreachable() -> None:
    port = free_port()
    config = {"clusters": [{"name": "c", "monitoring_url": f"http://127.0.0.1:{port}/jobs"}]}
    async with Client(f"http://127.0.0.1:{port}/api/v1", TOKEN, server_config=config) as client:
        with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}/jobs/job-1/log_ws"):
            async for _ in client.jobs.monitor("job-1"):
                pass


async def test_invalid_json_response_is_protocol_error(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-1", body=b"<html>", headers={"Content-Type": "text/html"})
    with pytest.raises(ProtocolError, match="not JSON"):
        await client.jobs.status("job-1")


async def test_missing_required_key_is_protocol_error(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-1", json={"id": "job-1", "owner": "alice"})
    with pytest.raises(ProtocolError, match="job-1.*cluster_name"):
        await client.jobs.status("job-1")


def test_error_from_status_unknown_4xx() -> None:
    err = errors_module.error_from_status(418, "teapot")
    assert type(err) is IllegalArgumentError and err.status == 418


async def test_ws_handler_error_response_body_ignored(stub: StubServer, client: Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "body is not read"}, status=400)

    stub.add("GET", "/api/v1/jobs/job-x/log_ws", handler)
    with pytest.raises(IllegalArgumentError) as info:
        async for _ in client.jobs.monitor("job-x"):
            pass
    assert info.value.status == 400
