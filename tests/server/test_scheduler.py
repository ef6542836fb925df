"""Scheduling, capacity and lifecycle through the SDK against the real server and runtime."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from neuro_sdk import Client, IllegalArgumentError, JobDescription, JobStatus, RemoteImage
from tests.server.conftest import Api

UBUNTU = RemoteImage.new_external_image("ubuntu")


@pytest.fixture
async def client(api: Api) -> AsyncIterator[Client]:
    async with Client(api.url, api.tokens["alice"]) as c:
        yield c


async def wait_for(client: Client, job_id: str, pred, timeout: float = 20) -> JobDescription:  # type: ignore[no-untyped-def]
    async def poll() -> JobDescription:
        while True:
            job = await client.jobs.status(job_id)
            if pred(job):
                return job
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), timeout)


async def test_capacity_follows_running_jobs(client: Client) -> None:
    assert await client.jobs.get_capacity() == {"cpu-small": 16, "cpu-large": 2, "gpu-small": 0}
    job = await client.jobs.start(image=UBUNTU, preset_name="cpu-large", command="sleep 30")
    await wait_for(client, job.id, lambda j: j.status == JobStatus.RUNNING)
    assert await client.jobs.get_capacity() == {"cpu-small": 8, "cpu-large": 1, "gpu-small": 0}
    await client.jobs.kill(job.id)
    assert await client.jobs.get_capacity() == {"cpu-small": 16, "cpu-large": 2, "gpu-small": 0}


async def test_jobs_queue_when_resources_are_taken(client: Client) -> None:
    first = [
        await client.jobs.start(image=UBUNTU, preset_name="cpu-large", command="sleep 30")
        for _ in range(2)
    ]
    for j in first:
        await wait_for(client, j.id, lambda j: j.status == JobStatus.RUNNING)
    queued = await client.jobs.start(image=UBUNTU, preset_name="cpu-large", command="echo ran")
    job = await wait_for(client, queued.id, lambda j: j.history.reason == "Scheduling")
    assert job.status == JobStatus.PENDING
    assert "Waiting for resources: needs cpu 4" in job.history.description
    await client.jobs.kill(first[0].id)
    job = await wait_for(client, queued.id, lambda j: j.status.is_finished)
    assert job.status == JobStatus.SUCCEEDED
    await client.jobs.kill(first[1].id)


async def test_a_preset_the_server_can_never_give_is_refused_at_once(client: Client) -> None:
    # (it pended forever with "this machine has none": Slurm refuses such a job at submit)
    with pytest.raises(IllegalArgumentError) as e:
        await client.jobs.start(image=UBUNTU, preset_name="gpu-small", command="nvidia-smi")
    assert str(e.value) == (
        "preset gpu-small needs 1 NVIDIA GPU, but this server has 8 CPU, 16 GiB of memory "
        "and no GPU in all: no job of it can ever run here (presets that can: cpu-small, "
        "cpu-large)"
    )
    assert [j async for j in client.jobs.list()] == []


async def test_a_job_killed_while_it_waits(client: Client) -> None:
    big = [
        await client.jobs.start(image=UBUNTU, preset_name="cpu-large", command="sleep 30")
        for _ in range(2)
    ]
    job = await client.jobs.start(image=UBUNTU, preset_name="cpu-large", command="echo no")
    job = await wait_for(client, job.id, lambda j: j.history.reason == "Scheduling")
    await client.jobs.kill(job.id)
    job = await client.jobs.status(job.id)
    assert job.status == JobStatus.CANCELLED and job.history.reason == "UserRequested"
    # the official client asserts these on every finished job
    assert job.history.started_at is not None and job.history.finished_at is not None
    assert [b"".join([c async for c in client.jobs.monitor(job.id)])] == [b""]
    for j in big:
        await client.jobs.kill(j.id)


async def test_transitions_and_output(client: Client) -> None:
    job = await client.jobs.start(
        image=UBUNTU,
        preset_name="cpu-small",
        command="sh -c 'echo hi; exit 4'",
        name="trans",
        tags=["t1"],
    )
    chunks = [c async for c in client.jobs.monitor(job.id)]
    assert b"".join(chunks) == b"hi\n"
    job = await wait_for(client, job.id, lambda j: j.status.is_finished)
    assert job.status == JobStatus.FAILED
    assert job.history.reason == "Error" and job.history.exit_code == 4
    seen = [(t.status.value, t.reason) for t in job.history.transitions]
    assert seen[0] == ("pending", "Creating")
    assert ("running", "") in seen
    assert seen[-1] == ("failed", "Error")
    assert job.history.transitions[-1].exit_code == 4
    times = [t.transition_time for t in job.history.transitions]
    assert times == sorted(times)
    assert job.runtime is not None and job.runtime.name == "process" and not job.runtime.image_used
    limits = job.runtime.limits  # cpu-small's amounts, enforced here by cgroup or rlimit
    assert limits.startswith("memory 256 MiB") and "cpu 0.5" in limits and " enforced by " in limits
    assert await client.jobs.tags() == ["t1"]


async def test_deprecated_run_warns_and_works(client: Client) -> None:
    from neuro_sdk import Container, Resources

    container = Container(
        image=UBUNTU, resources=Resources(memory_mb=64, cpu=0.2), command="echo legacy"
    )
    with pytest.warns(DeprecationWarning):
        job = await client.jobs.run(container, life_span=120)
    assert b"".join([c async for c in client.jobs.monitor(job.id)]) == b"legacy\n"
    job = await wait_for(client, job.id, lambda j: j.status.is_finished)
    assert job.status == JobStatus.SUCCEEDED and job.life_span == 120


async def test_name_is_unique_among_active_jobs(client: Client) -> None:
    from neuro_sdk import IllegalArgumentError

    job = await client.jobs.start(
        image=UBUNTU, preset_name="cpu-small", command="sleep 30", name="only-one"
    )
    with pytest.raises(IllegalArgumentError, match="already active"):
        await client.jobs.start(
            image=UBUNTU, preset_name="cpu-small", command="true", name="only-one"
        )
    await client.jobs.kill(job.id)
    again = await client.jobs.start(
        image=UBUNTU, preset_name="cpu-small", command="true", name="only-one"
    )
    assert again.name == "only-one"


async def test_status_long_poll_answers_at_the_change(client: Client, api: Api) -> None:
    """GET /jobs/{id} with If-None-Match and Prefer: wait=N returns when the job changes (the
    CLI's run waits for the start this way), and 304 when N passes without a change."""
    job = await client.jobs.start(image=UBUNTU, preset_name="cpu-small", command="sleep 30")
    running = await wait_for(client, job.id, lambda j: j.status == JobStatus.RUNNING)
    url = f"{api.url}/jobs/{job.id}"
    async with api.session.get(url, headers=api.headers()) as r:
        etag = r.headers["ETag"]
    # unchanged: 304 after the wait, not before
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with api.session.get(
        url, headers={**api.headers(), "If-None-Match": etag, "Prefer": "wait=0.3"}
    ) as r:
        assert r.status == 304 and r.headers["ETag"] == etag
    assert loop.time() - t0 >= 0.29
    # a change while waiting: the answer comes with it, long before the wait is over
    t0 = loop.time()
    waiter = asyncio.ensure_future(client.jobs.wait_change(running, 20))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await client.jobs.kill(job.id)
    changed = await asyncio.wait_for(waiter, 10)
    assert changed is not None and changed.status == JobStatus.CANCELLED
    assert loop.time() - t0 < 10
    # a stale ETag answers at once; a bad Prefer is ignored (no wait, no error)
    async with api.session.get(
        url, headers={**api.headers(), "If-None-Match": etag, "Prefer": "wait=forever"}
    ) as r:
        assert r.status == 200 and r.headers["ETag"] != etag
    # another user cannot wait on it either
    async with api.session.get(
        url, headers={**api.headers("bob"), "If-None-Match": etag, "Prefer": "wait=5"}
    ) as r:
        assert r.status == 403


async def test_more_jobs_than_fit_all_run_oldest_first(client: Client) -> None:
    """cpu-large takes 4 of 8 CPUs: 2 at a time.  Every job runs, in the order they came, and
    the capacity reported never promises more than what is free."""
    jobs = [
        await client.jobs.start(image=UBUNTU, preset_name="cpu-large", command="sleep 0.4")
        for _ in range(6)
    ]
    ids = [j.id for j in jobs]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        cap = (await client.jobs.get_capacity())["cpu-large"]
        states = [await client.jobs.status(i) for i in ids]
        running = sum(s.status == JobStatus.RUNNING for s in states)
        assert cap + running <= 2, (cap, running)
        if all(s.status == JobStatus.SUCCEEDED for s in states):
            break
        assert loop.time() < deadline, [s.status for s in states]
        await asyncio.sleep(0.05)
    started = [s.history.started_at for s in states]
    assert all(t is not None for t in started)
    # oldest first: none overtaken (two dispatched together may start in either order)
    for i, t in enumerate(started):
        for later in started[i + 1 :]:
            assert (t - later).total_seconds() < 0.1, started
    assert await client.jobs.get_capacity() == {"cpu-small": 16, "cpu-large": 2, "gpu-small": 0}


async def test_life_span_signal_is_sent_once_and_a_bump_rearms_it(client: Client) -> None:
    from neuro_sdk import LifeSpanSignal

    job = await client.jobs.start(
        image=UBUNTU,
        preset_name="cpu-small",
        command="sh -c 'trap \"\" USR1; sleep 30'",
        life_span=3,
        life_span_signal=LifeSpanSignal("USR1", 2.5),
    )
    assert job.life_span_signal == LifeSpanSignal("SIGUSR1", 2.5, sent=False)
    job = await wait_for(client, job.id, lambda j: j.life_span_signal.sent)
    assert job.status == JobStatus.RUNNING  # it ignores USR1: warned, not stopped
    await client.jobs.bump_life_span(job.id, 60)
    job = await client.jobs.status(job.id)
    assert job.life_span == 63 and job.life_span_signal.sent is False  # due again, later
    await client.jobs.kill(job.id)


def test_life_span_signal_is_due_once_per_life_span() -> None:
    from datetime import UTC, datetime, timedelta

    from neuro_server.model import (
        Container,
        JobRecord,
        JobRequest,
        JobStatus,
        LifeSpanSignal,
        Resources,
    )

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    spec = JobRequest(
        Container("ubuntu", Resources(cpu=0.5, memory=1 << 30)),
        cluster_name="local",
        org_name="local",
        project_name="default",
        life_span_signal=LifeSpanSignal("SIGUSR1", 10, 2.5),
    )
    job = JobRecord(
        id="j",
        owner="alice",
        name=None,
        status=JobStatus.RUNNING,
        reason="",
        description="",
        exit_code=None,
        created_at=t0,
        started_at=t0,
        finished_at=None,
        restarts=0,
        life_span=3.0,
        kill_reason=None,
        limits="",
        spec=spec,
        tags=(),
        running_since=t0,
    )
    at = t0 + timedelta(seconds=1)
    assert job.life_span_warning_due(at) == -0.5  # due since 0.5 s of run time
    sent = dataclasses.replace(job, warned_life_span=3.0)
    assert sent.life_span_warning_due(at) is None  # sent for this life span: not again
    bumped = dataclasses.replace(sent, life_span=63.0)
    assert bumped.life_span_warning_due(at) == 59.5  # a bump re-arms it, due later
    no_signal = dataclasses.replace(spec, life_span_signal=None)
    assert dataclasses.replace(job, spec=no_signal).life_span_warning_due(at) is None
