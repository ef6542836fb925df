"""Client mistakes get a 4xx with an `error` message, never a 500, and store nothing."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import Api

GOOD = {"image": "ubuntu", "command": "true", "preset_name": "cpu-small"}


async def _count(api: Api, user: str = "alice") -> int:
    async with api.session.get(f"{api.url}/jobs", headers=api.headers(user)) as r:
        assert r.status == 200
        return len((await r.json())["jobs"])


async def _post(
    api: Api, body: object, *, raw: bytes | None = None, user: str = "alice", preset: bool = True
) -> tuple[int, dict]:  # type: ignore[type-arg]
    url = f"{api.url}/jobs" + ("?from_preset" if preset else "")
    data = raw if raw is not None else json.dumps(body).encode()
    async with api.session.post(
        url, data=data, headers={**api.headers(user), "Content-Type": "application/json"}
    ) as r:
        return r.status, await r.json(content_type=None)


BAD_BODIES = [
    ({**GOOD, "preset_name": "nope"}, "unknown preset 'nope'"),
    ({**GOOD, "name": "Bad_Name"}, "invalid job name"),
    ({**GOOD, "name": "ab"}, "invalid job name"),
    ({**GOOD, "max_run_time_minutes": 0}, "at least 1"),
    ({**GOOD, "max_run_time_minutes": -5}, "at least 1"),
    ({**GOOD, "max_run_time_seconds": 0}, "positive"),
    ({**GOOD, "image": 42}, "'image' must be a string"),
    ({**GOOD, "env": ["A=1"]}, "'env' must be an object"),
    ({**GOOD, "env": {"A": 1}}, "must be a string"),
    ({**GOOD, "env": {"1A": "x"}}, "invalid environment variable name"),
    ({**GOOD, "tags": "x"}, "'tags' must be a list"),
    ({**GOOD, "tags": ["a b"]}, "invalid tag"),
    ({**GOOD, "tags": [f"t{i}" for i in range(17)]}, "too many tags"),
    ({**GOOD, "working_dir": "relative"}, "absolute path"),
    ({**GOOD, "tty": "yes"}, "'tty' must be true or false"),
    ({**GOOD, "resources": {"cpu": 8}}, "only 'shm'"),
    ({**GOOD, "restart_policy": "sometimes"}, "invalid restart policy"),
    ({**GOOD, "life_span_signal": {"signal": "USR1"}}, "needs a life span"),
    ({**GOOD, "max_run_time_minutes": 5, "life_span_signal": "USR1"}, "must be an object"),
    (
        {**GOOD, "max_run_time_minutes": 5, "life_span_signal": {"signal": "FOO"}},
        "invalid life_span_signal signal 'FOO'",
    ),
    (
        {**GOOD, "max_run_time_minutes": 5, "life_span_signal": {"signal": True}},
        "invalid life_span_signal signal True",
    ),
    (
        {**GOOD, "max_run_time_minutes": 5, "life_span_signal": {"signal": "KILL"}},
        "cannot be SIGKILL",
    ),
    (
        {
            **GOOD,
            "max_run_time_minutes": 5,
            "life_span_signal": {"signal": 10, "seconds_before": 0},
        },
        "must be a positive number",
    ),
    (
        {
            **GOOD,
            "max_run_time_minutes": 5,
            "life_span_signal": {"signal": "USR1", "seconds_before": 300},
        },
        "must come within it",
    ),
    ({**GOOD, "schedule_timeout": 0.5}, "schedule_timeout"),
    ({**GOOD, "privileged": True}, "privileged jobs are not allowed"),
    ({**GOOD, "command": "'unclosed"}, "cannot be parsed"),
    ({**GOOD, "cluster_name": "other"}, "unknown cluster"),
    (
        {
            **GOOD,
            "volumes": [{"src_storage_uri": "storage:x", "dst_path": "/x", "read_only": True}],
        },
        "no such file or directory",
    ),
    (
        {
            **GOOD,
            "volumes": [
                {"src_storage_uri": "storage:x", "dst_path": "/x"},
                {"src_storage_uri": "storage:y", "dst_path": "/x/"},
            ],
        },
        "two volumes at the same path",
    ),
    (
        {**GOOD, "volumes": [{"src_storage_uri": "storage:../x", "dst_path": "/x"}]},
        "'..' is not allowed",
    ),
    ({**GOOD, "volumes": [{"src_storage_uri": "s3:x", "dst_path": "/x"}]}, "not a storage URI"),
    ({**GOOD, "volumes": [{"src_storage_uri": "storage:x", "dst_path": "x"}]}, "absolute path"),
    (
        {**GOOD, "volumes": [{"src_storage_uri": "storage:x", "dst_path": "/x", "read_only": "y"}]},
        "boolean",
    ),
    ({**GOOD, "disk_volumes": [{"src_disk_uri": "disk:d", "dst_path": "/x"}]}, "no disk 'd'"),
    ({"command": "true"}, "'image' is required"),
    ([1, 2], "must be a JSON object"),
    ("text", "must be a JSON object"),
    (None, "must be a JSON object"),
]


@pytest.mark.parametrize("body,message", BAD_BODIES, ids=[m for _, m in BAD_BODIES])
async def test_create_rejects_bad_input(api: Api, body: object, message: str) -> None:
    status, data = await _post(api, body)
    assert status == 400, data
    assert message in data["error"]
    assert await _count(api) == 0


async def test_create_rejects_malformed_json_and_huge_bodies(api: Api) -> None:
    status, data = await _post(api, None, raw=b'{"image": "ubuntu",')
    assert status == 400 and data["error"] == "the request body is not valid JSON"
    huge = json.dumps({**GOOD, "description": "x" * 200_000}).encode()
    status, data = await _post(api, None, raw=huge)
    assert status == 413 and "too large" in data["error"]
    assert await _count(api) == 0


async def test_deprecated_run_form_validates_resources(api: Api) -> None:
    body = {
        "container": {
            "image": "ubuntu",
            "command": "true",
            "resources": {"cpu": 0.01, "memory": 1 << 30},
        }
    }
    status, data = await _post(api, body, preset=False)
    assert status == 400 and "cpu" in data["error"]
    body["container"]["resources"] = {"cpu": 0.5, "memory": 1024}  # type: ignore[index]
    status, data = await _post(api, body, preset=False)
    assert status == 400 and "16 MiB" in data["error"]
    body["container"]["resources"] = {"cpu": 0.5, "memory_mb": 64}  # type: ignore[index]
    status, data = await _post(api, body, preset=False)
    assert status == 202, data
    assert data["container"]["resources"]["memory"] == 64 << 20


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer nonsense",
        "Bearer ",
        "Basic abc",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJpZGVudGl0eSI6ImFsaWNlIn0.x",
    ],
)
async def test_missing_or_wrong_token(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (
        ("GET", "/jobs"),
        ("POST", "/jobs?from_preset"),
        ("GET", "/jobs/job-x"),
        ("GET", "/jobs/capacity"),
        ("GET", "/tags"),
    ):
        async with api.session.request(method, api.url + path, headers=headers, json=GOOD) as r:
            assert r.status == 401, (method, path)
            assert "error" in await r.json()
            assert r.headers.get("X-Error")


async def test_unknown_job_and_other_users_job(api: Api) -> None:
    status, job = await _post(api, GOOD)
    assert status == 202
    async with api.session.get(f"{api.url}/jobs/job-nope", headers=api.headers()) as r:
        assert r.status == 404 and (await r.json())["error"] == "no such job: job-nope"
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/log")):
        async with api.session.request(
            method, f"{api.url}/jobs/{job['id']}{path}", headers=api.headers("bob")
        ) as r:
            assert r.status == 403, (method, path)
            assert "no permission" in (await r.json())["error"]
    async with api.session.get(f"{api.url}/jobs", headers=api.headers("bob")) as r:
        assert (await r.json())["jobs"] == []
    # a websocket to another user's job is refused at the handshake, with X-Error
    import aiohttp

    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await api.session.ws_connect(
            f"{api.url}/jobs/{job['id']}/log_ws", headers=api.headers("bob")
        )
    assert exc.value.status == 403
    assert "no permission" in json.loads(exc.value.headers["X-Error"])["error"]


async def test_bad_query_parameters(api: Api) -> None:
    for query, message in (
        ("status=weird", "invalid status"),
        ("since=yesterday", "since"),
        ("limit=-1", "limit"),
        ("limit=x", "limit"),
        ("reverse=maybe", "reverse"),
    ):
        async with api.session.get(f"{api.url}/jobs?{query}", headers=api.headers()) as r:
            assert r.status == 400, query
            assert message in (await r.json())["error"]


async def test_bump_life_span_errors(api: Api) -> None:
    _status, job = await _post(api, {**GOOD, "command": "sleep 30", "max_run_time_minutes": 5})
    url = f"{api.url}/jobs/{job['id']}/max_run_time_minutes"
    for body, message in (
        ({}, "required"),
        ({"additional_max_run_time_minutes": "x"}, "number"),
        ({"additional_max_run_time_minutes": 0}, "positive"),
        ({"additional_max_run_time_minutes": -3}, "positive"),
    ):
        async with api.session.put(url, json=body, headers=api.headers()) as r:
            assert r.status == 400, body
            assert message in (await r.json())["error"]
    async with api.session.put(
        url, json={"additional_max_run_time_minutes": 2}, headers=api.headers()
    ) as r:
        assert r.status == 204
    async with api.session.get(f"{api.url}/jobs/{job['id']}", headers=api.headers()) as r:
        assert (await r.json())["max_run_time_minutes"] == 7
    async with api.session.delete(f"{api.url}/jobs/{job['id']}", headers=api.headers()) as r:
        assert r.status == 204


async def test_unknown_route_is_json_404(api: Api) -> None:
    async with api.session.get(f"{api.url}/nothing-here", headers=api.headers()) as r:
        assert r.status == 404
        assert "error" in await r.json()


async def test_life_span_signal_of_a_real_time_signal(api: Api) -> None:
    import signal

    num = int(signal.SIGRTMIN) + 2  # a valid signal with no name of its own
    status, job = await _post(
        api, {**GOOD, "max_run_time_minutes": 5, "life_span_signal": {"signal": num}}
    )
    assert status == 202, job
    assert job["life_span_signal"]["signal"] == str(num)
