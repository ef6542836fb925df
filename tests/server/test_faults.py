"""The server under faults: a full disk (a real one, a small tmpfs as its data dir) and a job
whose supervisor was SIGKILLed, found by the watcher or by a restarted server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from neuro_server.app import make_app
from neuro_server.config import Preset, load_config
from neuro_server.diskfull import Reserve
from neuro_server.handlers.common import STATE
from neuro_server.jobusers import JobUsers
from neuro_server.runtime import cgroups
from neuro_server.runtime.jobdir import SUPERVISOR, read_json
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.registry import capacity_from_config
from neuro_server.store import Store
from tests.conftest import kill_tree_of
from tests.server.conftest import Api
from tests.server.runtime.conftest import kill_jobs
from tests.server.runtime.tmpfs import fill, free_bytes, needs_mount, small_tmpfs

LOST = "The job's supervisor was lost; its processes were killed"


@contextlib.asynccontextmanager
async def serving(data: Path, cgroup_parent: str) -> AsyncIterator[tuple[Api, Any]]:
    """The server on ``data`` (tokens of alice), stopped at the end; its jobs go on."""
    config = load_config(
        data,
        cpu=8.0,
        memory=16 << 30,
        nvidia_gpu=0,
        kill_grace_seconds=2.0,
        presets=(Preset("cpu-small", 0.5, 256 << 20),),
    )
    store = Store(config.db_path)
    runtime = ProcessRuntime(
        config.jobs_dir, cgroup_parent=cgroup_parent, capacity=capacity_from_config(config)
    )
    # alice is the server's own user here, as on a single-user machine: her jobs run as it
    # (they touch files in tmp_path)
    users = JobUsers(config, store, host_users=True, server_user="alice")
    app = make_app(config, store, runtime, users=users)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        store.add_user("alice")
        token = app[STATE].auth.issue("alice")
        async with aiohttp.ClientSession() as session:
            yield Api(str(server.make_url("/api/v1")), session, {"alice": token}, data), app
    finally:
        await server.close()


async def create(api: Api, command: str) -> str:
    body = {"image": "ubuntu", "command": command, "preset_name": "cpu-small"}
    async with api.session.post(
        f"{api.url}/jobs?from_preset", json=body, headers=api.headers()
    ) as r:
        assert r.status in (200, 201, 202), await r.text()
        return str((await r.json())["id"])


async def status(api: Api, job_id: str) -> dict[str, Any]:
    async with api.session.get(f"{api.url}/jobs/{job_id}", headers=api.headers()) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


async def until(
    api: Api, job_id: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not pred(job := await status(api, job_id)):
        assert time.monotonic() < deadline, f"still {job['history']}"
        await asyncio.sleep(0.05)
    return job


async def job_log(api: Api, job_id: str) -> bytes:
    async with api.session.get(f"{api.url}/jobs/{job_id}/log", headers=api.headers()) as r:
        assert r.status == 200
        return await r.read()


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except FileNotFoundError:
        return True


async def eventually(cond: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


@pytest.fixture
def cgroup_parent() -> str:
    return f"neuro-test-{uuid.uuid4().hex[:8]}"


# -- a full disk ---------------------------------------------------------------------------------


@needs_mount
async def test_full_disk_keeps_job_states_and_answers_507(
    tmp_path: Path, cgroup_parent: str
) -> None:
    data = tmp_path / "server"

    def stop_all() -> None:
        kill_tree_of(data)
        kill_jobs(data / "jobs", cgroup_parent)

    with small_tmpfs(data, "8m", stop_all):
        async with serving(data, cgroup_parent) as (api, _app):
            h = api.headers()
            ballast = fill(data, leave=1536 << 10)
            printed, go = tmp_path / "printed", tmp_path / "go"  # (not on the small disk)
            job_id = await create(
                api,
                (
                    f"sh -c \"head -c 4000000 /dev/zero | tr '\\\\0' x; touch {printed}; "
                    f'until [ -e {go} ]; do sleep 0.05; done; exit 3"'
                ),
            )
            await eventually(printed.exists)
            assert free_bytes(data) < 64 << 10
            # the disk is full: the server answers, and a write it cannot do is a clear 507
            async with api.session.get(f"{api.url}/ping") as r:
                assert r.status == 200
            assert (await status(api, job_id))["status"] == "running"
            async with api.session.put(
                f"{api.url}/storage/big.bin",
                params={"op": "CREATE"},
                data=b"b" * (512 << 10),
                headers=h,
            ) as r:
                assert r.status == 507, await r.text()
                error = (await r.json())["error"]
                assert ("full" in error or "space" in error) and "\n" not in error
            go.touch()
            # the job's end is recorded on the full disk: its exit code, and what was lost
            job = await until(api, job_id, lambda j: j["status"] != "running")
            assert (job["status"], job["history"]["exit_code"]) == ("failed", 3)
            assert job["history"]["reason"] == "Error"
            log = await job_log(api, job_id)
            assert log.startswith(b"x" * 1000)
            assert log.endswith(b"bytes of output lost: no space left on device]\n")
            # space comes back: everything works again
            ballast.unlink()
            async with api.session.put(
                f"{api.url}/storage/big.bin",
                params={"op": "CREATE"},
                data=b"b" * (512 << 10),
                headers=h,
            ) as r:
                assert r.status == 201
            ok = await create(api, "echo ok")
            job = await until(api, ok, lambda j: j["status"] not in ("pending", "running"))
            assert job["status"] == "succeeded" and await job_log(api, ok) == b"ok\n"


async def test_a_full_database_answers_507(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*a: object, **kw: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "create_job", full)
    body = {"image": "ubuntu", "command": "true", "preset_name": "cpu-small"}
    async with api.session.post(
        f"{api.url}/jobs?from_preset", json=body, headers=api.headers()
    ) as r:
        assert r.status == 507
        assert "disk is full" in (await r.json())["error"]


# -- a lost supervisor ---------------------------------------------------------------------------


def _job_pids(data: Path, job_id: str, log: bytes) -> tuple[dict[str, Any], list[int]]:
    d = data / "jobs" / job_id
    sup = read_json(str(d / SUPERVISOR))
    assert sup is not None
    main = json.loads((d / "started.json").read_text())["pid"]
    return sup, [main, int(log.split()[0])]


async def test_lost_supervisor_kills_the_job_and_says_so(
    tmp_path: Path, cgroup_parent: str
) -> None:
    data = tmp_path / "server"
    try:
        async with serving(data, cgroup_parent) as (api, _app):
            job_id = await create(api, "sh -c 'sleep 300 & echo $!; sleep 301'")
            await until(api, job_id, lambda j: j["status"] == "running")
            out = data / "jobs" / job_id / "output.log"
            await eventually(lambda: out.exists() and out.read_bytes().strip() != b"")
            sup, pids = _job_pids(data, job_id, out.read_bytes())
            os.kill(sup["pid"], signal.SIGKILL)
            job = await until(api, job_id, lambda j: j["status"] != "running")
            assert (job["status"], job["history"]["reason"]) == ("failed", "SupervisorLost")
            assert job["history"]["description"] == LOST
            await eventually(lambda: all(_dead(p) for p in pids))
            assert cgroups.JobCgroup.find(cgroup_parent, job_id) is None
            async with api.session.delete(f"{api.url}/jobs/{job_id}", headers=api.headers()) as r:
                assert r.status == 204
    finally:
        kill_tree_of(data)
        kill_jobs(data / "jobs", cgroup_parent)


async def test_restarted_server_kills_a_job_whose_supervisor_was_lost(
    tmp_path: Path, cgroup_parent: str
) -> None:
    data = tmp_path / "server"
    try:
        async with serving(data, cgroup_parent) as (api, _app):
            job_id = await create(api, "sh -c 'sleep 300 & echo $!; sleep 301'")
            await until(api, job_id, lambda j: j["status"] == "running")
        out = data / "jobs" / job_id / "output.log"
        await eventually(lambda: out.exists() and out.read_bytes().strip() != b"")
        sup, pids = _job_pids(data, job_id, out.read_bytes())
        os.kill(sup["pid"], signal.SIGKILL)  # while no server runs
        await eventually(lambda: _dead(sup["pid"]))
        async with serving(data, cgroup_parent) as (api, _app):
            job = await until(api, job_id, lambda j: j["status"] != "running")
            assert (job["status"], job["history"]["reason"]) == ("failed", "SupervisorLost")
            await eventually(lambda: all(_dead(p) for p in pids))
            assert cgroups.JobCgroup.find(cgroup_parent, job_id) is None
    finally:
        kill_tree_of(data)
        kill_jobs(data / "jobs", cgroup_parent)


async def test_watcher_retries_the_end_a_full_database_refused(
    tmp_path: Path, cgroup_parent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "server"
    try:
        async with serving(data, cgroup_parent) as (api, _app):
            await _end_refused_then_recorded(api, monkeypatch)
    finally:
        kill_tree_of(data)
        kill_jobs(data / "jobs", cgroup_parent)


async def _end_refused_then_recorded(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Store.set_status
    refused: list[str] = []

    def flaky(self: Store, job_id: str, status: str, *a: Any, **kw: Any) -> Any:
        if status == "failed" and len(refused) < 4:
            refused.append(job_id)
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, job_id, status, *a, **kw)

    monkeypatch.setattr(Store, "set_status", flaky)
    released: list[bool] = []
    release = Reserve.release
    monkeypatch.setattr(Reserve, "release", lambda self: released.append(release(self)) or True)
    reserve = api.data_dir / "reserve"
    assert reserve.exists()  # taken when the server started
    job_id = await create(api, "sh -c 'exit 3'")
    job = await until(api, job_id, lambda j: j["status"] not in ("pending", "running"))
    assert (job["status"], job["history"]["exit_code"]) == ("failed", 3)
    assert job["history"]["reason"] == "Error" and refused == [job_id] * 4
    assert released[0] is True  # given up at the first refusal ...
    await eventually(reserve.exists)  # ... and taken again since


def test_config_per_job_limits(tmp_path: Path) -> None:
    from neuro_server.config import ConfigError

    assert (load_config(tmp_path).pids_limit, load_config(tmp_path).job_output_limit) == (4096, 0)
    (tmp_path / "server.toml").write_text('[server]\npids_limit = 256\njob_output_limit = "1GiB"\n')
    config = load_config(tmp_path)
    assert (config.pids_limit, config.job_output_limit) == (256, 1 << 30)
    (tmp_path / "server.toml").write_text("[server]\npids_limit = -1\n")
    with pytest.raises(ConfigError, match="pids_limit must not be negative"):
        load_config(tmp_path)
