"""Client mistakes the fuzz test (test_fuzz.py) and the attack report found: each gets a 4xx
with one clear line, never a 500 or a traceback in the server's log, and stores nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from neuro_server.app import error_middleware
from neuro_server.handlers.common import MAX_BODY_ERROR, MAX_HEADER_ERROR
from neuro_server.validation import ENV_NAME_RE, NAME_RE
from tests.server.conftest import Api

GOOD = {"image": "ubuntu", "command": "true", "preset_name": "cpu-small"}
RUN = {
    "container": {
        "image": "ubuntu",
        "command": "true",
        "resources": {"cpu": 0.5, "memory": 64 << 20},
    }
}


@pytest.fixture
def server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """The server's error records (and any record with a traceback) during the test: none
    may be left at its end."""
    caplog.set_level(logging.INFO)
    records: list[logging.LogRecord] = []
    yield records
    records.extend(
        r
        for when in ("setup", "call")
        for r in caplog.get_records(when)
        if r.levelno >= logging.ERROR or r.exc_info
    )
    assert not records, "\n".join(r.getMessage() for r in records)


async def _request(
    api: Api,
    method: str,
    path: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    user: str = "alice",
) -> tuple[int, dict[str, Any], Any]:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    async with api.session.request(
        method,
        api.url + path,
        data=data,
        headers={**api.headers(user), "Content-Type": "application/json"},
    ) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def _jobs(api: Api) -> list[dict[str, Any]]:
    status, _, data = await _request(api, "GET", "/jobs")
    assert status == 200
    return data["jobs"]  # type: ignore[no-any-return]


async def _job(api: Api, **extra: Any) -> dict[str, Any]:
    status, _, job = await _request(api, "POST", "/jobs?from_preset", body={**GOOD, **extra})
    assert status == 202, job
    return job  # type: ignore[no-any-return]


# -- methods -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/ping"),
        ("PUT", "/api/v1/ping"),
        ("DELETE", "/api/v1/tags"),
        ("PATCH", "/api/v1/jobs"),
        ("OPTIONS", "/api/v1/jobs/capacity"),
    ],
)
async def test_wrong_method_is_a_json_405(
    api: Api, server_errors: list[Any], method: str, path: str
) -> None:
    base = api.url.removesuffix("/api/v1")
    async with api.session.request(method, base + path, headers=api.headers()) as r:
        assert r.status == 405
        error = (await r.json())["error"]
        assert error == (
            f"method {method} is not allowed on {path} (allowed: {r.headers['Allow']})"
        )
        assert "GET" in r.headers["Allow"]
        assert json.loads(r.headers["X-Error"])["error"] == error


async def test_unknown_method_is_refused_without_a_traceback(
    api: Api, server_errors: list[Any]
) -> None:
    base = api.url.removesuffix("/api/v1")
    # (aiohttp's parser refuses it before routing; a traceback unless first on its connection)
    for _ in range(2):
        async with api.session.get(base + "/ping") as r:
            assert r.status == 200
        async with api.session.request("FOO", base + "/ping") as r:
            assert r.status == 400


# -- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        json.dumps(
            {
                **GOOD,
                "env": {"A": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            }
        ).encode(),
    ],
    ids=["list", "object", "deep-but-parsable"],
)
async def test_deeply_nested_json_is_400(api: Api, server_errors: list[Any], raw: bytes) -> None:
    status, _, data = await _request(api, "POST", "/jobs?from_preset", raw=raw)
    assert status == 400, data
    assert data["error"] == "the request body is nested too deeply (at most 32)"
    assert await _jobs(api) == []


@pytest.mark.parametrize(
    "body",
    [
        {**GOOD, "tags": ["\ud800"]},
        {**GOOD, "command": "echo \udc00"},
        {**GOOD, "env": {"A": "x\udfff"}},
        {**GOOD, "description": "\ud800\udc00 is a pair, \ud800 not"},
        {**GOOD, "env": {"\ud800": "x"}},
    ],
    ids=["tag", "argv", "env", "description", "key"],
)
async def test_lone_surrogates_are_400(api: Api, server_errors: list[Any], body: Any) -> None:
    raw = json.dumps(body).encode()  # (ensure_ascii: "\ud800" travels as a valid JSON escape)
    status, _, data = await _request(api, "POST", "/jobs?from_preset", raw=raw)
    assert status == 400, data
    assert data["error"].startswith("the request body has a string that is not valid Unicode")
    assert await _jobs(api) == []


@pytest.mark.parametrize(
    "body,message",
    [
        ({**GOOD, "command": "a\x00b"}, "the command has a NUL character"),
        ({**GOOD, "env": {"A": "x\x00"}}, "has a NUL character"),
        ({**GOOD, "working_dir": "/tmp\x00"}, "'working_dir' must be an absolute path"),
        ({**GOOD, "name": "train-1\n"}, "invalid job name 'train-1\\n'"),
        ({**GOOD, "env": {"A\n": "x"}}, "invalid environment variable name: 'A\\n'"),
        ({**GOOD, "secret_env": {"A\n": "secret:K"}}, "invalid environment variable name"),
        ({**GOOD, "max_run_time_minutes": 10**400}, "'max_run_time_minutes' must be at most"),
        ({**GOOD, "max_run_time_seconds": 10**400}, "'max_run_time_seconds' must be a number"),
        ({**GOOD, "max_run_time_seconds": 1e308}, "'max_run_time_seconds' must be at most"),
        (
            {
                **GOOD,
                "max_run_time_minutes": 5,
                "life_span_signal": {"signal": "USR1", "seconds_before": 10**400},
            },
            "'life_span_signal.seconds_before' must be a positive number",
        ),
        ({**GOOD, "schedule_timeout": 10**400}, "'schedule_timeout' must be a number"),
    ],
    ids=[
        "nul-argv",
        "nul-env",
        "nul-dir",
        "newline-name",
        "newline-env",
        "newline-secret-env",
        "huge-minutes",
        "huge-int-seconds",
        "huge-seconds",
        "huge-before",
        "huge-timeout",
    ],
)
async def test_bad_values_are_400(
    api: Api, server_errors: list[Any], body: Any, message: str
) -> None:
    status, _, data = await _request(api, "POST", "/jobs?from_preset", body=body)
    assert status == 400, data
    assert message in data["error"]
    assert await _jobs(api) == []


def test_name_patterns_refuse_a_final_newline() -> None:
    # "$" matches before a final newline: NAME_RE.match() of add-user and disks must not
    assert NAME_RE.match("bob") and not NAME_RE.match("bob\n")
    assert ENV_NAME_RE.match("A") and not ENV_NAME_RE.match("A\n")


@pytest.mark.parametrize("name", ["job_id", "ab", "Train", "x" * 41, "bad-", "a\n"])
async def test_a_name_filter_that_cannot_be_a_job_is_400(
    api: Api, server_errors: list[Any], name: str
) -> None:
    from urllib.parse import quote

    status, _, data = await _request(api, "GET", f"/jobs?name={quote(name)}")
    assert status == 400 and f"invalid job name {name!r}" in data["error"], data
    status, _, data = await _request(api, "GET", "/jobs?name=no-such-job")  # valid, unknown
    assert status == 200 and data["jobs"] == []


async def test_disk_name_with_a_newline_is_400(api: Api, server_errors: list[Any]) -> None:
    status, _, data = await _request(
        api, "POST", "/disk", body={"storage": 16 << 20, "name": "disk\n"}
    )
    assert status == 400 and "invalid disk name" in data["error"]


@pytest.mark.parametrize(
    "resources,message",
    [
        (
            {"cpu": 0.5, "memory": 64 << 20, "nvidia_gpu": 10**30},
            "the job asks for millions of NVIDIA GPU",
        ),
        ({"cpu": 0.5, "memory": 64 << 20, "nvidia_gpu": 1}, "the job asks for 1 NVIDIA GPU"),
        ({"cpu": 1000, "memory": 64 << 20}, "the job asks for 1000 CPU"),
        ({"cpu": 0.5, "memory": 10**400}, "the job asks for more than an EiB of memory"),
        ({"cpu": 0.5, "memory": 1 << 40}, "the job asks for 1024 GiB of memory"),
        ({"cpu": 10**400, "memory": 64 << 20}, "'container.resources.cpu' must be a number"),
    ],
    ids=["gpus", "no-gpus", "cpu", "huge-memory", "memory", "huge-cpu"],
)
async def test_impossible_resources_are_refused_at_creation(
    api: Api, server_errors: list[Any], resources: dict[str, Any], message: str
) -> None:
    body = {"container": {**RUN["container"], "resources": resources}}
    status, _, data = await _request(api, "POST", "/jobs", body=body)
    assert status == 400, data
    assert message in data["error"]
    if "asks for" in message:  # says what the most is (the test server: 8 CPU, 16 GiB, no GPU)
        assert data["error"].endswith("which is at most 8 CPU, 16 GiB of memory and 0 NVIDIA GPU")
    assert await _jobs(api) == []
    status, _, job = await _request(
        api,
        "POST",
        "/jobs",
        body={"container": {**RUN["container"], "resources": {"cpu": 8, "memory": 16 << 30}}},
    )
    assert status == 202, job  # the whole machine is possible


@pytest.mark.filterwarnings("ignore:Jobs.run\\(\\) is deprecated:DeprecationWarning")
async def test_impossible_resources_through_the_sdk_are_one_line(api: Api) -> None:
    from yarl import URL

    from neuro_sdk import Client, Container, IllegalArgumentError, RemoteImage, Resources

    async with Client(URL(api.url), token=api.tokens["alice"]) as client:
        with pytest.raises(IllegalArgumentError) as e:
            await client.jobs.run(
                Container(
                    image=RemoteImage.new_external_image("ubuntu"),
                    command="true",
                    resources=Resources(memory_mb=64, cpu=0.5, gpu=10**30),
                )
            )
    assert "\n" not in str(e.value) and "more than this server can ever give" in str(e.value)


async def test_bump_life_span_past_a_century_is_400(api: Api, server_errors: list[Any]) -> None:
    job = await _job(api, command="sleep 30", max_run_time_minutes=5)
    path = f"/jobs/{job['id']}/max_run_time_minutes"
    for body, message in (
        ({"additional_max_run_time_seconds": 1e308}, "at most"),
        ({"additional_max_run_time_minutes": 10**400}, "must be a number"),
        ({"additional_max_run_time_seconds": 10**400}, "must be a number"),
    ):
        for _ in range(2):  # (twice 1e308 was infinity, and its minutes NaN: a 500 on GET)
            status, _, data = await _request(api, "PUT", path, body=body)
            assert status == 400 and message in data["error"], data
    status, _, data = await _request(api, "GET", f"/jobs/{job['id']}")
    assert status == 200 and data["max_run_time_minutes"] == 5
    assert (await _request(api, "DELETE", f"/jobs/{job['id']}"))[0] == 204


@pytest.mark.parametrize(
    "query", ["since=0001-01-01T00:00:00%2B23:59", "until=9999-12-31T23:59:59-23:59"]
)
async def test_times_out_of_range_are_400(api: Api, server_errors: list[Any], query: str) -> None:
    status, _, data = await _request(api, "GET", f"/jobs?{query}")
    assert status == 400, data
    assert "is out of range" in data["error"]


@pytest.mark.parametrize(
    "item",
    [
        {"uri": "job:JOB", "action": []},
        {"uri": "job:JOB", "action": {}},
        {"uri": "job:JOB", "action": 3},
        {"uri": "job:JOB"},
        {"uri": [], "action": "read"},
        {"uri": {"a": 1}, "action": "read"},
    ],
    ids=["list", "object", "number", "missing", "uri-list", "uri-object"],
)
async def test_share_with_wrong_types_is_400(
    api: Api, server_errors: list[Any], item: dict[str, Any]
) -> None:
    job = await _job(api)
    item = json.loads(json.dumps(item).replace("JOB", job["id"]))
    status, _, data = await _request(api, "POST", "/users/bob/permissions", body=[item])
    assert status == 400, data
    assert (await _request(api, "GET", f"/jobs/{job['id']}", user="bob"))[0] == 403


@pytest.mark.parametrize(
    "path,body",
    [
        ("/secrets", {"key": [], "value": "eA=="}),
        ("/secrets", {"key": "K", "value": []}),
        ("/secrets", {"key": "K\n", "value": "eA=="}),
        ("/secrets", [1]),
        ("/disk", {"storage": "1G"}),
        ("/disk", {"storage": 16 << 20, "name": []}),
        ("/disk", {"storage": 10**400}),
        ("/disk", []),
    ],
)
async def test_secrets_and_disks_with_wrong_types_are_400(
    api: Api, server_errors: list[Any], path: str, body: Any
) -> None:
    status, _, data = await _request(api, "POST", path, body=body)
    assert status == 400, data


async def test_exec_create_with_wrong_types_is_400(api: Api, server_errors: list[Any]) -> None:
    job = await _job(api, command="sleep 30")
    deadline = time.monotonic() + 20
    while (await _request(api, "GET", f"/jobs/{job['id']}"))[2]["status"] != "running":
        assert time.monotonic() < deadline, "the job did not start"
        await asyncio.sleep(0.05)
    for body, message in (
        ({"command": "true", "stdin": "yes"}, "must be true or false"),
        ({"command": "a\x00b"}, "NUL character"),
    ):
        status, _, data = await _request(api, "POST", f"/jobs/{job['id']}/exec_create", body=body)
        assert status == 400 and message in data["error"], data
    assert (await _request(api, "DELETE", f"/jobs/{job['id']}"))[0] == 204


# -- error text --------------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["x", "\U0001f600", "\u202e"], ids=["ascii", "emoji", "rtl"])
async def test_error_text_is_bounded(api: Api, server_errors: list[Any], char: str) -> None:
    name = "A-" + char * 4000  # quoted back in the error
    status, headers, data = await _request(
        api, "POST", "/jobs?from_preset", body={**GOOD, "env": {name: "v"}}
    )
    assert status == 400
    assert MAX_HEADER_ERROR - 12 <= len(headers["X-Error"]) <= MAX_HEADER_ERROR
    header = json.loads(headers["X-Error"])["error"]
    assert header.startswith("invalid environment variable name: 'A-")
    assert header.endswith("\u2026") and data["error"].startswith(header[:-1])
    assert len(data["error"]) <= MAX_BODY_ERROR


# -- clients that leave ------------------------------------------------------------------------


async def _head_then_ping(api: Api, path: str, headers: str = "") -> bytes:
    """A HEAD and a GET /ping on one connection, as the server answers them."""
    host, port = api.url.removeprefix("http://").split("/")[0].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = api.headers()["Authorization"]
    writer.write(
        f"HEAD /api/v1{path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        f"{headers}\r\nGET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


@pytest.mark.parametrize("what", ["log", "storage", "ndjson"])
async def test_head_of_a_streamed_answer_sends_no_body(
    api: Api, server_errors: list[Any], what: str
) -> None:
    """The bytes of a streamed answer to HEAD were read as the next answer on the
    connection: a job's output, or a file in storage, could forge one."""
    forged = "HTTP/1.1 200 FORGED"
    job = await _job(api, command=f"echo {forged}", name="forger" if what == "ndjson" else None)
    deadline = time.monotonic() + 20
    while (await _request(api, "GET", f"/jobs/{job['id']}"))[2]["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not end"
        await asyncio.sleep(0.05)
    if what == "storage":
        async with api.session.put(
            f"{api.url}/storage/f?op=CREATE", data=forged.encode(), headers=api.headers()
        ) as r:
            assert r.status == 201
    path, headers = {
        "log": (f"/jobs/{job['id']}/log", ""),
        "storage": ("/storage/f", ""),
        "ndjson": ("/jobs", "Accept: application/x-ndjson\r\n"),
    }[what]
    answer = await _head_then_ping(api, path, headers)
    assert b"FORGED" not in answer and b"forger" not in answer
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 200 OK")
    assert rest.endswith(b"Pong")


@pytest.mark.parametrize(
    "exc", [ConnectionResetError("Cannot write to closing transport"), BrokenPipeError()]
)
async def test_a_client_gone_mid_answer_is_not_an_error(
    caplog: pytest.LogCaptureFixture, exc: Exception
) -> None:
    transport = mock.Mock()
    transport.is_closing.return_value = True
    request = make_mocked_request("GET", "/api/v1/jobs", transport=transport)

    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    with caplog.at_level(logging.DEBUG):
        response = await error_middleware(request, handler)
    assert response.status == 499  # never sent: there is no one to send it to
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    # a connection error of the server's own (a job's port, say) is still one
    transport.is_closing.return_value = False
    with caplog.at_level(logging.DEBUG), pytest.raises(web.HTTPInternalServerError):
        await error_middleware(request, handler)
    assert any(r.exc_info for r in caplog.records)


# -- sessions ----------------------------------------------------------------------------------


async def test_attach_and_exec_sessions_of_a_job_are_capped(
    api: Api, server_errors: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its supervisor's limit of clients a job's supervisor hangs up on a new session
    (and the server answered 500): the server stops short of it with a clear 429."""
    import aiohttp

    from neuro_server.handlers import sessions
    from neuro_server.runtime.process.supervisor import clients as supervisor

    assert sessions.MAX_SESSIONS < supervisor.MAX_CLIENTS
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    job = await _job(api, command="sleep 60")
    deadline = time.monotonic() + 20
    while (await _request(api, "GET", f"/jobs/{job['id']}"))[2]["status"] != "running":
        assert time.monotonic() < deadline, "the job did not start"
        await asyncio.sleep(0.05)
    base = f"{api.url}/jobs/{job['id']}"
    attach = f"{base}/attach?stdout=1"
    exec_ = f"{base}/exec?cmd=cat&stdin=1&stdout=1"
    sockets = [
        await api.session.ws_connect(url, headers=api.headers()) for url in (attach, exec_, attach)
    ]
    for url in (attach, exec_):
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await api.session.ws_connect(url, headers=api.headers())
        assert e.value.status == 429 and e.value.headers is not None
        assert (
            "has 3 attach and exec sessions open" in json.loads(e.value.headers["X-Error"])["error"]
        )
    await sockets.pop().close()  # one fewer: a new one may open (once the server saw it go)
    deadline = time.monotonic() + 10
    while True:
        try:
            sockets.append(await api.session.ws_connect(exec_, headers=api.headers()))
            break
        except aiohttp.WSServerHandshakeError as e:
            assert e.status == 429 and time.monotonic() < deadline, e
            await asyncio.sleep(0.05)
    for ws in sockets:
        await ws.close()
    assert (await _request(api, "DELETE", f"/jobs/{job['id']}"))[0] == 204


@pytest.mark.parametrize(
    "frame",
    [
        b'{"height": 1, "width": 1000000000}',
        b'{"height": -1, "width": 80}',
        b"[" * 50_000,
        b'{"height": 1e999, "width": 80}',
        b"\xff",
    ],
    ids=["too-wide", "negative", "deep", "infinite", "not-json"],
)
async def test_garbage_resize_frames_leave_the_session_alone(
    api: Api, server_errors: list[Any], frame: bytes
) -> None:
    """A resize frame the terminal cannot take (a width of 10^9 does not fit its ioctl) ended
    the whole exec session; it is ignored."""
    job = await _job(api, command="sleep 60")
    deadline = time.monotonic() + 20
    while (await _request(api, "GET", f"/jobs/{job['id']}"))[2]["status"] != "running":
        assert time.monotonic() < deadline, "the job did not start"
        await asyncio.sleep(0.05)
    url = f"{api.url}/jobs/{job['id']}/exec?cmd=cat&tty=1&stdin=1&stdout=1"
    async with api.session.ws_connect(
        url, headers=api.headers(), protocols=("v2.channels.neu.ro",)
    ) as ws:
        await ws.send_bytes(b"\x04" + frame)
        await ws.send_bytes(b"\x00still here\n")
        seen = b""
        while b"still here" not in seen:
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type.name == "BINARY", f"the session ended: {msg}"
            seen += msg.data[1:]
    assert (await _request(api, "DELETE", f"/jobs/{job['id']}"))[0] == 204
