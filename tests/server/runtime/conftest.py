"""Fixtures for the process runtime: a runtime on tmp_path with its own cgroup parent, and a
teardown that kills every supervisor and job the test started and removes their cgroups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from neuro_server.runtime import cgroups
from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.jobdir import EXIT, STARTED, SUPERVISOR, read_json
from neuro_server.runtime.process import ProcessRuntime
from neuro_server.runtime.process.procfs import supervisor_alive

T = TypeVar("T")


def cgroup_v1_writable() -> bool:
    return cgroups.probe() == ("v1", ("memory", "cpu"))


needs_cgroup_v1 = pytest.mark.skipif(
    not cgroup_v1_writable(),
    reason="needs writable cgroup v1 memory and cpu hierarchies under /sys/fs/cgroup",
)


def kill_jobs(jobs_root: Path, cgroup_parent: str) -> None:
    """SIGKILL every supervisor and job under ``jobs_root``; remove their cgroups."""
    if jobs_root.is_dir():
        for d in jobs_root.iterdir():
            sup = read_json(str(d / SUPERVISOR))
            if sup is not None and supervisor_alive(sup):
                os.kill(int(sup["pid"]), signal.SIGKILL)
            started = read_json(str(d / STARTED))
            if started is not None and not (d / EXIT).exists():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(started["pgid"]), signal.SIGKILL)
            cg = cgroups.JobCgroup.find(cgroup_parent, d.name)
            if cg is not None:
                cg.kill()
                cg.remove()
    cgroups.remove_parent(cgroup_parent)


@pytest.fixture
def cgroup_parent() -> str:
    return f"neuro-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def jobs_root(tmp_path: Path, cgroup_parent: str) -> Iterator[Path]:
    root = tmp_path / "jobs"
    try:
        yield root
    finally:
        kill_jobs(root, cgroup_parent)


@pytest.fixture
def runtime(jobs_root: Path, cgroup_parent: str) -> ProcessRuntime:
    return ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent)


def spec(
    job_id: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    working_dir: str | None = None,
    cpu: float = 0.0,
    memory: int = 0,
) -> JobSpec:
    return JobSpec(
        job_id=job_id, argv=argv, env=env or {}, working_dir=working_dir, cpu=cpu, memory=memory
    )


async def eventually(condition: Callable[[], T], timeout: float = 15.0) -> T:
    """Poll ``condition`` until it returns something true (a wait on a condition, not a nap)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)
    return result


async def read_all(runtime: ProcessRuntime, job_id: str, **kw: object) -> bytes:
    return b"".join([chunk async for chunk in runtime.logs(job_id, **kw)])  # type: ignore[arg-type]


def output(runtime: ProcessRuntime, job_id: str) -> bytes:
    try:
        return (runtime.root / job_id / "output.log").read_bytes()
    except FileNotFoundError:
        return b""
