"""Each GPU job gets its own devices; CPU jobs see none (process runtime, on a machine the
server believes has two GPUs: the assignment is the scheduler's, the env is what CUDA reads)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from neuro_sdk import Client, JobStatus, RemoteImage
from tests.server.conftest import Api
from tests.server.test_scheduler import wait_for

UBUNTU = RemoteImage.new_external_image("ubuntu")
SHOW = "sh -c 'echo dev=[$CUDA_VISIBLE_DEVICES] order=$CUDA_DEVICE_ORDER; sleep 30'"


@pytest.fixture
def machine_gpus() -> int:
    return 2


@pytest.fixture
async def client(api: Api) -> AsyncIterator[Client]:
    async with Client(api.url, api.tokens["alice"]) as c:
        yield c


async def _first_line(client: Client, job_id: str) -> str:
    async def read() -> str:
        buf = b""
        async for chunk in client.jobs.monitor(job_id):
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n")[0].decode()
        return buf.decode()

    return await asyncio.wait_for(read(), 20)


async def test_each_gpu_job_gets_its_own_device(client: Client) -> None:
    a = await client.jobs.start(image=UBUNTU, preset_name="gpu-small", command=SHOW)
    b = await client.jobs.start(image=UBUNTU, preset_name="gpu-small", command=SHOW)
    cpu = await client.jobs.start(image=UBUNTU, preset_name="cpu-small", command=SHOW)
    for j in (a, b, cpu):
        await wait_for(client, j.id, lambda x: x.status == JobStatus.RUNNING)
    seen = {j.id: await _first_line(client, j.id) for j in (a, b, cpu)}
    assert sorted((seen[a.id], seen[b.id])) == [
        "dev=[0] order=PCI_BUS_ID",
        "dev=[1] order=PCI_BUS_ID",
    ]
    assert seen[cpu.id] == "dev=[] order=PCI_BUS_ID"
    third = await client.jobs.start(image=UBUNTU, preset_name="gpu-small", command=SHOW)
    waiting = await wait_for(client, third.id, lambda x: x.history.reason == "Scheduling")
    assert "1 NVIDIA GPU (free 0 of 2)" in (waiting.history.description or "")
    await client.jobs.kill(a.id)
    await wait_for(client, third.id, lambda x: x.status == JobStatus.RUNNING)
    assert await _first_line(client, third.id) == seen[a.id]  # the freed device, reused
    for j in (b, cpu, third):
        await client.jobs.kill(j.id)
