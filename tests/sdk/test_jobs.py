from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from aiohttp import web
from yarl import URL

from neuro_sdk import (
    Client,
    Container,
    DiskVolume,
    HTTPPort,
    JobRestartPolicy,
    JobStatus,
    NDJSONError,
    ProtocolError,
    RemoteImage,
    Resources,
    SecretFile,
    Volume,
)

from .helpers import TOKEN, job_json
from .stub_server import StubServer


def check_common_headers(rec) -> None:  # type: ignore[no-untyped-def]
    assert rec.headers["Authorization"] == f"Bearer {TOKEN}"
    assert rec.headers["User-Agent"].startswith("neuro-sdk/")


# -- start -------------------------------------------------------------------------------------


async def test_start_minimal_request(stub: StubServer, client: Client) -> None:
    stub.add("POST", "/api/v1/jobs", json=job_json("job-new", status="pending"), status=202)
    job = await client.jobs.start(image=RemoteImage.parse("ubuntu:22.04"), preset_name="cpu-small")

    rec = stub.only("POST", "/api/v1/jobs")
    assert rec.query_string == "from_preset"
    check_common_headers(rec)
    assert rec.headers["Content-Type"] == "application/json"
    assert rec.json() == {
        "image": "ubuntu:22.04",
        "preset_name": "cpu-small",
        "pass_config": False,
        "cluster_name": "default",
        "org_name": "acme",
        "project_name": "beta",
    }
    assert job.id == "job-new"
    assert job.status is JobStatus.PENDING


async def test_start_all_parameters(stub: StubServer, client: Client) -> None:
    stub.add("POST", "/api/v1/jobs", json=job_json(), status=202)
    await client.jobs.start(
        image=RemoteImage.parse("image:myimg:v1"),
        preset_name="gpu-new",
        entrypoint="/bin/sh -c",
        command="echo 'hi there'",
        working_dir="/work",
        http=HTTPPort(port=8080, requires_auth=False),
        env={"A": "1", "B": "two"},
        volumes=[Volume(URL("storage://default/acme/beta/data"), "/data", read_only=True)],
        secret_env={"PASS": URL("secret://default/acme/beta/pw")},
        secret_files=[SecretFile(URL("secret://default/acme/beta/key"), "/etc/key")],
        disk_volumes=[DiskVolume(URL("disk://default/acme/beta/disk-1"), "/disk")],
        tty=True,
        shm=True,
        name="my-job",
        tags=["t1", "t2"],
        description="a job",
        pass_config=True,
        wait_for_jobs_quota=True,
        schedule_timeout=120.0,
        restart_policy=JobRestartPolicy.ON_FAILURE,
        life_span=3600.0,
        privileged=True,
    )
    assert stub.only("POST", "/api/v1/jobs").json() == {
        "image": "registry.example.com/acme/beta/myimg:v1",
        "entrypoint": "/bin/sh -c",
        "command": "echo 'hi there'",
        "working_dir": "/work",
        "http": {"port": 8080, "requires_auth": False},
        "env": {"A": "1", "B": "two"},
        "volumes": [
            {
                "src_storage_uri": "storage://default/acme/beta/data",
                "dst_path": "/data",
                "read_only": True,
            }
        ],
        "secret_env": {"PASS": "secret://default/acme/beta/pw"},
        "secret_volumes": [
            {"src_secret_uri": "secret://default/acme/beta/key", "dst_path": "/etc/key"}
        ],
        "disk_volumes": [
            {
                "src_disk_uri": "disk://default/acme/beta/disk-1",
                "dst_path": "/disk",
                "read_only": False,
            }
        ],
        "tty": True,
        "resources": {"shm": True},
        "preset_name": "gpu-new",
        "pass_config": True,
        "cluster_name": "default",
        "org_name": "acme",
        "project_name": "beta",
        "name": "my-job",
        "tags": ["t1", "t2"],
        "description": "a job",
        "schedule_timeout": 120.0,
        "max_run_time_minutes": 60,
        "wait_for_jobs_quota": True,
        "restart_policy": "on-failure",
        "privileged": True,
    }


@pytest.mark.parametrize(
    ("life_span", "expected"),
    [
        (60.0, {"max_run_time_minutes": 1}),
        (86400, {"max_run_time_minutes": 1440}),
        (90.0, {"max_run_time_minutes": 1, "max_run_time_seconds": 90.0}),
        (50.0, {"max_run_time_minutes": 1, "max_run_time_seconds": 50.0}),
        (0.5, {"max_run_time_minutes": 1, "max_run_time_seconds": 0.5}),
    ],
    ids=["one-minute", "one-day", "minute-and-half", "sub-minute", "half-second"],
)
async def test_start_life_span(
    stub: StubServer, client: Client, life_span: float, expected: dict
) -> None:
    stub.add("POST", "/api/v1/jobs", json=job_json(), status=202)
    await client.jobs.start(
        image=RemoteImage.parse("ubuntu"), preset_name="cpu-small", life_span=life_span
    )
    body = stub.only("POST", "/api/v1/jobs").json()
    assert {k: v for k, v in body.items() if k.startswith("max_run_time")} == expected


async def test_start_platform_image_in_other_cluster(stub: StubServer, client: Client) -> None:
    stub.add("POST", "/api/v1/jobs", json=job_json(), status=202)
    await client.jobs.start(
        image=RemoteImage.parse("image://second/proj/img:1"), preset_name="cpu-small"
    )
    body = stub.only("POST", "/api/v1/jobs").json()
    assert body["image"] == "registry2.example.com:5000/proj/img:1"


async def test_start_uses_explicit_context(stub: StubServer, raw_config: dict) -> None:
    stub.add("POST", "/api/v1/jobs", json=job_json(), status=202)
    async with Client(
        stub.api_url,
        TOKEN,
        cluster_name="second",
        org_name="acme",
        project_name="aaa",
        server_config=raw_config,
    ) as client:
        await client.jobs.start(image=RemoteImage.parse("ubuntu"), preset_name="p")
    body = stub.only("POST", "/api/v1/jobs").json()
    assert (body["cluster_name"], body["org_name"], body["project_name"]) == (
        "second",
        "acme",
        "aaa",
    )


async def test_run_is_deprecated_and_sends_nested_body(stub: StubServer, client: Client) -> None:
    stub.add("POST", "/api/v1/jobs", json=job_json(), status=202)
    container = Container(
        image=RemoteImage.parse("python:3.11"),
        resources=Resources(memory_mb=512, cpu=0.5, gpu=1, gpu_model="nvidia-tesla-k80", shm=True),
        command="python -V",
        http=HTTPPort(80),
        env={"X": "y"},
        tty=True,
    )
    with pytest.warns(DeprecationWarning, match="start"):
        job = await client.jobs.run(
            container,
            name="old-style",
            scheduler_enabled=True,
            pass_config=True,
            life_span=120,
            schedule_timeout=5,
        )
    assert job.id == "job-1"
    rec = stub.only("POST", "/api/v1/jobs")
    assert rec.query_string == ""
    assert rec.json() == {
        "container": {
            "image": "python:3.11",
            "command": "python -V",
            "http": {"port": 80, "requires_auth": True},
            "env": {"X": "y"},
            "tty": True,
            "resources": {
                "memory": 512 * 2**20,
                "cpu": 0.5,
                "shm": True,
                "nvidia_gpu": 1,
                "nvidia_gpu_model": "nvidia-tesla-k80",
            },
        },
        "scheduler_enabled": True,
        "pass_config": True,
        "cluster_name": "default",
        "org_name": "acme",
        "project_name": "beta",
        "name": "old-style",
        "schedule_timeout": 5.0,
        "max_run_time_minutes": 2,
    }


# -- list --------------------------------------------------------------------------------------


def ndjson(*jobs: dict) -> bytes:
    return b"".join(json.dumps(j).encode() + b"\n" for j in jobs)


async def test_list_query_and_ndjson(stub: StubServer, client: Client) -> None:
    stub.add(
        "GET",
        "/api/v1/jobs",
        body=ndjson(job_json("job-1"), job_json("job-2")),
        headers={"Content-Type": "application/x-ndjson"},
    )
    since = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    until = datetime(2024, 2, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    jobs = [
        j
        async for j in client.jobs.list(
            statuses=[JobStatus.PENDING, JobStatus.RUNNING],
            name="my-job",
            tags=["a", "b"],
            owners=["alice", "bob"],
            since=since,
            until=until,
            reverse=True,
            limit=10,
        )
    ]
    assert [j.id for j in jobs] == ["job-1", "job-2"]
    rec = stub.only("GET", "/api/v1/jobs")
    check_common_headers(rec)
    assert rec.headers["Accept"] == "application/x-ndjson"
    assert list(rec.query.items()) == [
        ("status", "pending"),
        ("status", "running"),
        ("name", "my-job"),
        ("owner", "alice"),
        ("owner", "bob"),
        ("tag", "a"),
        ("tag", "b"),
        ("since", "2024-01-02T03:04:05+00:00"),
        ("until", "2024-02-01T10:00:00+00:00"),
        ("reverse", "1"),
        ("limit", "10"),
        ("cluster_name", "default"),
        ("org_name", "acme"),
        ("project_name", "beta"),
    ]


async def test_list_defaults_send_only_context(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs", body=b"", headers={"Content-Type": "application/x-ndjson"})
    assert [j async for j in client.jobs.list()] == []
    rec = stub.only("GET", "/api/v1/jobs")
    assert list(rec.query.items()) == [
        ("cluster_name", "default"),
        ("org_name", "acme"),
        ("project_name", "beta"),
    ]


async def test_list_naive_since_is_local_time(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs", json={"jobs": []})
    naive = datetime(2024, 6, 1, 12, 0, 0)
    assert [j async for j in client.jobs.list(since=naive)] == []
    sent = datetime.fromisoformat(stub.only("GET", "/api/v1/jobs").query["since"])
    assert sent.utcoffset() == timedelta(0)
    assert sent == naive.astimezone()  # the same instant as the local wall time


async def test_list_plain_json_body(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs", json={"jobs": [job_json("job-a"), job_json("job-b")]})
    assert [j.id async for j in client.jobs.list()] == ["job-a", "job-b"]


async def test_list_limit_is_enforced_client_side(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs", json={"jobs": [job_json("job-a"), job_json("job-b")]})
    assert [j.id async for j in client.jobs.list(limit=1)] == ["job-a"]


async def test_list_streams_first_job_before_last_line(stub: StubServer, client: Client) -> None:
    got_first = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        # the first line arrives in two writes, split inside the JSON
        first = ndjson(job_json("job-1"))
        await resp.write(first[:50])
        await asyncio.sleep(0.01)
        await resp.write(first[50:])
        # the server does not send the rest until the client has parsed job-1
        await asyncio.wait_for(got_first.wait(), 10)
        await resp.write(ndjson(job_json("job-2")))
        await resp.write_eof()
        return resp

    stub.add("GET", "/api/v1/jobs", handler)
    seen = []
    async with client.jobs.list() as it:
        async for job in it:
            seen.append(job.id)
            got_first.set()
    assert seen == ["job-1", "job-2"]


async def test_list_error_line_raises(stub: StubServer, client: Client) -> None:
    stub.add(
        "GET",
        "/api/v1/jobs",
        body=ndjson(job_json("job-1"), {"error": "database gone"}),
        headers={"Content-Type": "application/x-ndjson; charset=utf-8"},
    )
    seen = []
    with pytest.raises(NDJSONError, match="database gone"):
        async for job in client.jobs.list():
            seen.append(job.id)
    assert seen == ["job-1"]


async def test_list_long_line(stub: StubServer, client: Client) -> None:
    big = job_json("job-big", description="x" * (3 * 2**20))
    stub.add(
        "GET",
        "/api/v1/jobs",
        body=ndjson(big, job_json("job-2")),
        headers={"Content-Type": "application/x-ndjson"},
    )
    jobs = [j async for j in client.jobs.list()]
    assert [j.id for j in jobs] == ["job-big", "job-2"]
    assert jobs[0].description is not None and len(jobs[0].description) == 3 * 2**20


async def test_list_too_long_line_is_protocol_error(stub: StubServer, client: Client) -> None:
    stub.add(
        "GET",
        "/api/v1/jobs",
        body=b'{"id": "' + b"x" * (5 * 2**20),
        headers={"Content-Type": "application/x-ndjson"},
    )
    with pytest.raises(ProtocolError, match="longer than"):
        [j async for j in client.jobs.list()]


async def test_list_early_break_closes_stream(stub: StubServer, client: Client) -> None:
    stub.add(
        "GET",
        "/api/v1/jobs",
        body=ndjson(*(job_json(f"job-{i}") for i in range(5))),
        headers={"Content-Type": "application/x-ndjson"},
    )
    async with client.jobs.list() as it:
        async for job in it:
            assert job.id == "job-0"
            break


# -- status / kill / tags / bump / capacity ----------------------------------------------------


async def test_status(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/job-1", json=job_json("job-1"))
    job = await client.jobs.status("job-1")
    check_common_headers(stub.only("GET", "/api/v1/jobs/job-1"))
    assert job.id == "job-1"
    assert job.status is JobStatus.RUNNING
    assert job.total_price_credits == Decimal("1.2500")
    assert job.container.image == RemoteImage(name="ubuntu", tag="22.04")


async def test_status_platform_image_is_recognised(stub: StubServer, client: Client) -> None:
    data = job_json()
    data["container"]["image"] = "registry.example.com/acme/beta/myimg:v2"
    stub.add("GET", "/api/v1/jobs/job-1", json=data)
    job = await client.jobs.status("job-1")
    assert job.container.image.is_platform
    assert str(job.container.image) == "image://default/acme/beta/myimg:v2"


async def test_kill(stub: StubServer, client: Client) -> None:
    stub.add("DELETE", "/api/v1/jobs/job-1", status=204)
    await client.jobs.kill("job-1")
    check_common_headers(stub.only("DELETE", "/api/v1/jobs/job-1"))


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (3600, {"additional_max_run_time_minutes": 60}),
        (90.5, {"additional_max_run_time_minutes": 1, "additional_max_run_time_seconds": 90.5}),
    ],
    ids=["whole-minutes", "partial-minute"],
)
async def test_bump_life_span(
    stub: StubServer, client: Client, seconds: float, expected: dict
) -> None:
    stub.add("PUT", "/api/v1/jobs/job-1/max_run_time_minutes", status=204)
    await client.jobs.bump_life_span("job-1", seconds)
    rec = stub.only("PUT", "/api/v1/jobs/job-1/max_run_time_minutes")
    check_common_headers(rec)
    assert rec.json() == expected


async def test_tags(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/tags", json={"tags": ["a", "b"]})
    assert await client.jobs.tags() == ["a", "b"]
    check_common_headers(stub.only("GET", "/api/v1/tags"))


async def test_get_capacity(stub: StubServer, client: Client) -> None:
    stub.add("GET", "/api/v1/jobs/capacity", json={"cpu-small": 3, "gpu-new": 0})
    assert await client.jobs.get_capacity() == {"cpu-small": 3, "gpu-new": 0}
    check_common_headers(stub.only("GET", "/api/v1/jobs/capacity"))


# -- monitor -----------------------------------------------------------------------------------


async def test_monitor_streams_binary_frames(stub: StubServer, client: Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"line 1\n")
        await ws.send_bytes(b"")
        await ws.send_bytes(b"\xe2\x82")  # UTF-8 split across frames is passed on as is
        await ws.send_bytes(b"\xac\n")
        await ws.close()
        return ws

    stub.add("GET", "/api/v1/jobs/job-1/log_ws", handler)
    chunks = [c async for c in client.jobs.monitor("job-1")]
    assert chunks == [b"line 1\n", b"\xe2\x82", b"\xac\n"]
    rec = stub.only("GET", "/api/v1/jobs/job-1/log_ws")
    check_common_headers(rec)
    assert rec.query_string == ""


async def test_monitor_query(stub: StubServer, client: Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws

    stub.add("GET", "/api/v1/jobs/job-1/log_ws", handler)
    since = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    async with client.jobs.monitor(
        "job-1", since=since, timestamps=True, separator="=== live ==="
    ) as chunks:
        assert [c async for c in chunks] == []
    rec = stub.only("GET", "/api/v1/jobs/job-1/log_ws")
    assert list(rec.query.items()) == [
        ("since", "2024-01-02T03:04:05+00:00"),
        ("timestamps", "true"),
        ("separator", "=== live ==="),
    ]


async def test_monitor_text_frame_is_error(stub: StubServer, client: Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"ok")
        await ws.send_str("oops")
        await ws.close()
        return ws

    stub.add("GET", "/api/v1/jobs/job-1/log_ws", handler)
    chunks = []
    with pytest.raises(ProtocolError, match="text frame"):
        async for c in client.jobs.monitor("job-1"):
            chunks.append(c)
    assert chunks == [b"ok"]


async def test_list_early_break_without_context_manager(stub: StubServer, client: Client) -> None:
    stub.add(
        "GET",
        "/api/v1/jobs",
        body=ndjson(*(job_json(f"job-{i}") for i in range(3))),
        headers={"Content-Type": "application/x-ndjson"},
    )
    async for job in client.jobs.list():
        assert job.id == "job-0"
        break
    # the abandoned generator is finalised by the event loop without warnings
    await asyncio.sleep(0)


async def test_status_without_server_config_when_config_fails(stub: StubServer) -> None:
    stub.add("GET", "/api/v1/jobs/job-1", json=job_json())
    stub.add("GET", "/api/v1/config", json={"error": "nope"}, status=404)
    async with Client(stub.api_url, TOKEN) as client:
        job = await client.jobs.status("job-1")
    assert job.id == "job-1"
    assert not job.container.image.is_platform
