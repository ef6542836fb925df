"""The fake runtime (tests/server/fakes.py) behind the real server: what scheduler and handler
tests can do with it (no process at all), and that the server asks a runtime only what the
interface declares and its capabilities allow."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from neuro_sdk import Client, JobDescription, JobStatus, RemoteImage
from neuro_server.app import make_app
from neuro_server.config import Preset, load_config
from neuro_server.runtime.base import Capabilities, Capacity, Runtime
from neuro_server.store import Store
from tests.server.fakes import FakeRuntime

UBUNTU = RemoteImage.new_external_image("ubuntu")


def test_fake_runtime_is_a_runtime() -> None:
    runtime: Runtime = FakeRuntime()  # (mypy checks it against the Protocol)
    assert runtime.capabilities.needs_command


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[FakeRuntime, Client]]:
    fake = FakeRuntime(capacity=Capacity.one_node("fake", 2.0, 4 << 30))
    config = load_config(
        tmp_path / "server",
        kill_grace_seconds=1.0,
        job_uids="off",
        presets=(Preset("cpu-small", 0.5, 256 << 20),),
    )
    store = Store(config.db_path)
    app = make_app(config, store, fake)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        store.add_user("alice")
        async with Client(str(server.make_url("/api/v1")), _token(app)) as client:
            yield fake, client
    finally:
        await server.close()


def _token(app: object) -> str:
    from neuro_server.handlers.common import STATE

    return str(app[STATE].auth.issue("alice"))  # type: ignore[index]


async def _until(client: Client, job_id: str, status: JobStatus) -> JobDescription:
    async def poll() -> JobDescription:
        while (job := await client.jobs.status(job_id)).status != status:
            await asyncio.sleep(0.02)
        return job

    return await asyncio.wait_for(poll(), 10)


async def test_a_job_on_the_fake_runtime_runs_prints_and_ends(
    served: tuple[FakeRuntime, Client],
) -> None:
    fake, client = served
    job = await client.jobs.start(image=UBUNTU, preset_name="cpu-small", command="train")
    started = await fake.started(job.id)
    assert list(started.spec.argv) == ["train"] and started.spec.cpu == 0.5
    running = await _until(client, job.id, JobStatus.RUNNING)
    assert running.runtime is not None and running.runtime.name == "fake"
    assert running.runtime.image_used is False  # capabilities.runs_images
    fake.emit(job.id, b"epoch 1\n")
    fake.finish(job.id, 3)
    failed = await _until(client, job.id, JobStatus.FAILED)
    assert failed.history.exit_code == 3
    async with client.jobs.monitor(job.id) as chunks:
        assert b"".join([c async for c in chunks]) == b"epoch 1\n"
    assert ("cleanup", job.id) in fake.calls


async def test_kill_stops_the_job_through_the_runtime(served: tuple[FakeRuntime, Client]) -> None:
    fake, client = served
    job = await client.jobs.start(image=UBUNTU, preset_name="cpu-small", command="serve")
    await _until(client, job.id, JobStatus.RUNNING)
    await client.jobs.send_signal(job.id, "USR1")
    assert fake.jobs[job.id].signals == [signal.SIGUSR1]
    await client.jobs.kill(job.id)
    await _until(client, job.id, JobStatus.CANCELLED)
    assert fake.jobs[job.id].stopped == 1.0  # the config's kill grace


async def test_the_capacity_is_the_runtimes(served: tuple[FakeRuntime, Client]) -> None:
    _fake, client = served
    assert await client.jobs.get_capacity() == {"cpu-small": 4}


async def test_what_a_runtime_cannot_do_is_refused_at_creation(tmp_path: Path) -> None:
    fake = FakeRuntime(
        capabilities=Capabilities(
            runs_images=False, needs_command=True, mounts="the fake has no volumes"
        )
    )
    config = load_config(
        tmp_path / "server",
        job_uids="off",
        allow_privileged=True,
        presets=(Preset("cpu-small", 0.5, 256 << 20),),
    )
    app = make_app(config, Store(config.db_path), fake)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        from neuro_sdk import IllegalArgumentError, Volume

        app_store = Store(config.db_path)
        app_store.add_user("alice")
        async with Client(str(server.make_url("/api/v1")), _token(app)) as client:
            with pytest.raises(IllegalArgumentError, match="the fake has no volumes"):
                await client.jobs.start(
                    image=UBUNTU,
                    preset_name="cpu-small",
                    command="true",
                    volumes=[Volume("storage:data", "/data")],
                )
            with pytest.raises(IllegalArgumentError, match="privileged"):
                await client.jobs.start(
                    image=UBUNTU, preset_name="cpu-small", command="true", privileged=True
                )
        assert fake.calls == []  # nothing reached the runtime
    finally:
        await server.close()
