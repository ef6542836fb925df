"""The scheduler's executor against the fake runtime: the plan's decisions applied to the store
and the runtime (starts, GPUs, restarts, suspensions, life spans, reconcile), no process."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from neuro_server.config import Preset, ServerConfig
from neuro_server.model import JobRecord, JobStatus
from neuro_server.runtime.base import Capacity, RuntimeError_
from neuro_server.scheduler import Scheduler
from neuro_server.store import Store
from neuro_server.validation import parse_start
from tests.server.fakes import HOST_LIKE, FakeRuntime

PRESETS = (
    Preset("small", 1.0, 1 << 30),
    Preset("gpu", 1.0, 1 << 30, nvidia_gpu=1),
    Preset("preemptible", 2.0, 1 << 30, scheduler_enabled=True),
)


@dataclasses.dataclass
class Setup:
    scheduler: Scheduler
    store: Store
    runtime: FakeRuntime

    def create(self, **body: Any) -> JobRecord:
        body = {"image": "ubuntu", "command": "true", "preset_name": "small", **body}
        new = parse_start(body, self.scheduler.config, capacity=self.runtime.capacity())
        return self.scheduler.create("alice", new)

    async def until(
        self, job_id: str, pred: Callable[[JobRecord], bool], timeout: float = 10.0
    ) -> JobRecord:
        async def poll() -> JobRecord:
            while True:
                job = self.store.get_job(job_id)
                assert job is not None
                if pred(job):
                    return job
                await self.scheduler.wait_change(job_id, 0.05)

        return await asyncio.wait_for(poll(), timeout)


async def _setup(tmp_path: Path, runtime: FakeRuntime, **config: Any) -> Setup:
    cfg = ServerConfig(data_dir=tmp_path, presets=PRESETS, kill_grace_seconds=0.5, **config)
    store = Store(cfg.db_path)
    scheduler = Scheduler(cfg, store, runtime)
    await scheduler.start()
    return Setup(scheduler, store, runtime)


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Setup] = []

    async def make(runtime: FakeRuntime | None = None, **config: Any) -> Setup:
        s = await _setup(tmp_path, runtime or FakeRuntime(), **config)
        made.append(s)
        return s

    yield make
    for s in made:
        await s.scheduler.close()
        s.store.close()


def _status(status: JobStatus, reason: str | None = None) -> Callable[[JobRecord], bool]:
    return lambda j: j.status == status and (reason is None or j.reason == reason)


async def test_executor_starts_a_job_and_records_its_end(make: Any) -> None:
    s = await make()
    job = s.create(command="python train.py", env={"A": "1"})
    run = await s.runtime.started(job.id)
    assert (list(run.spec.argv), run.spec.cpu, run.spec.memory) == (
        ["python", "train.py"],
        1.0,
        1 << 30,
    )
    assert run.spec.env == {"A": "1"} and run.spec.owner == "alice"
    await s.until(job.id, _status(JobStatus.RUNNING))
    s.runtime.finish(job.id, 0)
    done = await s.until(job.id, lambda j: j.is_finished)
    assert (done.status, done.reason, done.exit_code) == (JobStatus.SUCCEEDED, "Completed", 0)
    assert [t.status for t in s.store.transitions(job.id)] == [
        "pending",
        "pending",
        "running",
        "succeeded",
    ]


async def test_executor_capacity_is_the_runtime_s(make: Any) -> None:
    s = await make(FakeRuntime(capacity=Capacity.one_node("n", 1.5, 4 << 30)))
    first, second = s.create(), s.create()
    await s.runtime.started(first.id)
    waiting = await s.until(second.id, _status(JobStatus.PENDING, "Scheduling"))
    assert waiting.description == "Waiting for resources: needs cpu 1 (free 0.5 of 1.5)"
    assert s.scheduler.capacity() == {"small": 0, "gpu": 0, "preemptible": 0}


@pytest.mark.parametrize(
    ("assigns", "env"),
    [
        (
            False,
            {
                "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                "CUDA_VISIBLE_DEVICES": "1",
                "NVIDIA_VISIBLE_DEVICES": "1",
            },
        ),
        (True, {}),
    ],
    ids=["the scheduler sets them", "the runtime assigns them"],
)
async def test_executor_gives_gpus(make: Any, assigns: bool, env: dict[str, str]) -> None:
    runtime = FakeRuntime(
        capabilities=dataclasses.replace(HOST_LIKE, assigns_gpus=assigns),
        capacity=Capacity.one_node("n", 8.0, 16 << 30, nvidia_gpu=2),
    )
    s = await make(runtime)
    first, second = s.create(preset_name="gpu"), s.create(preset_name="gpu")
    await s.runtime.started(first.id)
    run = await s.runtime.started(second.id)
    assert run.spec.gpu_ids == (1,) and run.spec.gpus == 1
    assert {k: v for k, v in run.spec.env.items() if "VISIBLE" in k or "CUDA" in k} == env
    assert (await s.until(second.id, _status(JobStatus.RUNNING))).devices == (1,)


def _starts(s: Setup, job_id: str) -> int:
    return s.runtime.calls.count(("start", job_id))


async def _restarting(s: Setup, job_id: str, code: int = 3) -> JobRecord:
    """``job_id``'s run ends with ``code``; the job, once it waits to restart."""
    await s.until(job_id, _status(JobStatus.RUNNING, ""))
    s.runtime.finish(job_id, code)
    return await s.until(job_id, lambda j: j.restarting)


async def test_executor_restarts_in_place(make: Any) -> None:
    s = await make()
    job = s.create(restart_policy="on-failure")
    await s.runtime.started(job.id)
    between = await _restarting(s, job.id)
    # as on the platform: still running, the backoff a reason of it
    assert (between.status, between.reason, between.restarts) == (
        JobStatus.RUNNING,
        "Restarting",
        1,
    )
    assert between.description == (
        "The job exited with code 3; restart 1 in 1s (restart policy on-failure)"
    )
    assert between.exit_code is None  # (the job's own is its last one's, once it ends)
    again = await s.until(job.id, lambda j: j.status == JobStatus.RUNNING and not j.restarting)
    assert again.restarts == 1 and _starts(s, job.id) == 2
    steps = [(t.status.value, t.reason, t.exit_code) for t in s.store.transitions(job.id)]
    assert steps == [
        ("pending", "Creating", None),
        ("pending", "Starting", None),
        ("running", "", None),
        ("running", "Restarting", 3),  # the last exit, in the history
        ("running", "", None),
    ]


async def test_executor_kill_between_two_runs_cancels_at_once(make: Any) -> None:
    s = await make()
    job = s.create(restart_policy="always")
    await s.runtime.started(job.id)
    between = await _restarting(s, job.id, code=0)
    done = await asyncio.wait_for(s.scheduler.kill(between), 1.0)  # (no wait for a run)
    assert (done.status, done.reason) == (JobStatus.CANCELLED, "UserRequested")
    assert not s.scheduler._restart_at
    s.scheduler._step()  # (its backoff forgotten: a restarting job would start at once)
    await asyncio.sleep(0)
    assert _starts(s, job.id) == 1
    assert s.store.get_job(job.id).status == JobStatus.CANCELLED  # type: ignore[union-attr]


async def test_executor_life_span_ends_between_two_runs(make: Any) -> None:
    s = await make()
    job = s.create(restart_policy="on-failure", max_run_time_seconds=0.5)
    await s.runtime.started(job.id)
    await _restarting(s, job.id)  # (its backoff, 1 s, outlasts its life span: run time)
    done = await s.until(job.id, lambda j: j.is_finished)
    assert (done.status, done.reason) == (JobStatus.CANCELLED, "LifeSpanEnded")
    assert _starts(s, job.id) == 1


async def test_executor_restart_keeps_its_seat(make: Any) -> None:
    s = await make(FakeRuntime(capacity=Capacity.one_node("n", 1.5, 4 << 30)))
    job = s.create(restart_policy="on-failure")
    await s.runtime.started(job.id)
    await _restarting(s, job.id)
    other = s.create()
    waiting = await s.until(other.id, _status(JobStatus.PENDING, "Scheduling"))
    assert waiting.description == "Waiting for resources: needs cpu 1 (free 0.5 of 1.5)"
    assert s.store.get_job(job.id).restarting  # type: ignore[union-attr]
    await s.until(job.id, lambda j: j.status == JobStatus.RUNNING and not j.restarting)
    assert s.store.get_job(other.id).status == JobStatus.PENDING  # type: ignore[union-attr]


async def test_executor_no_suspension_between_two_runs(make: Any) -> None:
    s = await make(FakeRuntime(capacity=Capacity.one_node("n", 2.0, 16 << 30)))
    victim = s.create(preset_name="preemptible", restart_policy="on-failure")
    await s.runtime.started(victim.id)
    await _restarting(s, victim.id)
    urgent = s.create(name="urgent")
    await s.until(urgent.id, _status(JobStatus.PENDING, "Scheduling"))
    assert ("suspend", victim.id) not in s.runtime.calls  # (it has no process to freeze)
    # once it runs again, it makes room
    suspended = await s.until(victim.id, _status(JobStatus.SUSPENDED))
    assert _starts(s, victim.id) == 2 and suspended.restarts == 2
    await s.until(urgent.id, _status(JobStatus.RUNNING))


async def test_executor_restarted_server_restarts_a_job_between_two_runs(make: Any) -> None:
    runtime = FakeRuntime()
    s = await make(runtime)
    job = s.create(restart_policy="on-failure")
    await runtime.started(job.id)
    await _restarting(s, job.id)
    await s.scheduler.close()  # (its backoff was the old server's: in memory)
    again = await make(runtime)
    back = await again.until(job.id, lambda j: j.status == JobStatus.RUNNING and not j.restarting)
    assert back.restarts == 1 and _starts(again, job.id) == 2  # restarted, not lost
    runtime.finish(job.id, 0)
    done = await again.until(job.id, lambda j: j.is_finished)
    assert (done.status, done.reason) == (JobStatus.SUCCEEDED, "Completed")


async def test_executor_restarted_server_cancels_a_job_killed_between_two_runs(
    make: Any,
) -> None:
    runtime = FakeRuntime()
    s = await make(runtime)
    job = s.create(restart_policy="on-failure")
    await runtime.started(job.id)
    await _restarting(s, job.id)
    await s.scheduler.close()
    s.store.set_kill_reason(job.id, "UserRemoved")  # (neuro-server remove-user, offline)
    again = await make(runtime)
    done = again.store.get_job(job.id)  # (reconciled before the server serves)
    assert done is not None and (done.status, done.reason) == (JobStatus.CANCELLED, "UserRemoved")
    assert _starts(again, job.id) == 1


async def test_executor_suspends_a_preemptible_job_and_resumes_it(make: Any) -> None:
    s = await make(FakeRuntime(capacity=Capacity.one_node("n", 2.0, 16 << 30)))
    victim = s.create(preset_name="preemptible", name="victim")
    await s.until(victim.id, _status(JobStatus.RUNNING))
    urgent = s.create(name="urgent")
    suspended = await s.until(victim.id, _status(JobStatus.SUSPENDED))
    assert suspended.description.startswith("Suspended to let urgent run (preempted)")
    assert s.runtime.jobs[victim.id].suspended and suspended.restarts == 1
    await s.until(urgent.id, _status(JobStatus.RUNNING))
    s.runtime.finish(urgent.id, 0)
    resumed = await s.until(victim.id, _status(JobStatus.RUNNING, "Resumed"))
    assert not s.runtime.jobs[victim.id].suspended and resumed.restarts == 1


async def test_executor_ends_a_life_span(make: Any) -> None:
    s = await make()
    job = s.create(max_run_time_seconds=0.3)
    await s.until(job.id, _status(JobStatus.RUNNING))
    done = await s.until(job.id, lambda j: j.is_finished)
    assert (done.status, done.reason) == (JobStatus.CANCELLED, "LifeSpanEnded")
    assert ("stop", job.id) in s.runtime.calls


async def test_executor_sends_the_life_span_signal_once(make: Any) -> None:
    s = await make()
    job = s.create(
        max_run_time_seconds=30, life_span_signal={"signal": "USR1", "seconds_before": 29.8}
    )
    run = await s.runtime.started(job.id)
    warned = await s.until(job.id, lambda j: j.warned_life_span == 30)
    await asyncio.sleep(0.3)
    assert run.signals == [10] and warned.status == JobStatus.RUNNING


async def test_executor_fails_a_job_the_runtime_cannot_start(make: Any) -> None:
    s = await make(FakeRuntime(fail_start=RuntimeError_("no such image", reason="ImageNotFound")))
    job = s.create()
    done = await s.until(job.id, lambda j: j.is_finished)
    assert (done.status, done.reason, done.description) == (
        JobStatus.FAILED,
        "ImageNotFound",
        "no such image",
    )


async def test_executor_shows_a_start_s_progress(make: Any) -> None:
    runtime = FakeRuntime(capabilities=dataclasses.replace(HOST_LIKE, reports_progress=True))
    s = await make(runtime)
    assert runtime.listener is not None
    job = s.create()
    s.runtime.report(job.id, "Pulling", "Pulling image ubuntu")  # (before the loop starts it)
    pulling = s.store.get_job(job.id)
    assert pulling is not None
    assert (pulling.status, pulling.reason, pulling.description) == (
        JobStatus.PENDING,
        "Pulling",
        "Pulling image ubuntu",
    )
    await s.until(job.id, _status(JobStatus.RUNNING))
    s.runtime.report(job.id, "Pulling", "late")  # (a running job's status stays)
    assert s.store.get_job(job.id).status == JobStatus.RUNNING  # type: ignore[union-attr]


async def test_executor_reconciles_after_a_server_restart(tmp_path: Path, make: Any) -> None:
    runtime = FakeRuntime()
    s = await make(runtime)
    job = s.create()
    await s.until(job.id, _status(JobStatus.RUNNING))
    await s.scheduler.close()
    runtime.finish(job.id, 7)  # (it ended while no server watched it)
    again = await make(runtime)  # a new server, the same store and runtime
    done = await again.until(job.id, lambda j: j.is_finished)
    assert (done.status, done.reason, done.exit_code) == (JobStatus.FAILED, "Error", 7)
    assert [c for c in runtime.calls if c[0] == "start"] == [("start", job.id)]
