"""Fixtures for the docker runtime against a real engine (Podman's Docker-compatible service, as
.ci/podman-setup.sh starts it, or Docker).  The engine's socket: env NEURO_DOCKER_HOST (read at
import: the tests' autouse fixture clears NEURO_* variables), else the script's default.  Every
test has its own runtime instance label; teardown force-removes every container with it."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from neuro_server.runtime.base import JobSpec, StdioSession
from neuro_server.runtime.docker import DockerRuntime, api

T = TypeVar("T")

ENGINE_URL = os.environ.get("NEURO_DOCKER_HOST") or "unix:///run/neuro-podman.sock"
IMAGE = os.environ.get("NEURO_DOCKER_TEST_IMAGE") or "localhost/busybox:latest"
ROOT = str(Path(__file__).resolve().parents[3])
PY = sys.executable
TIMEOUT = 20.0


def _why_no_engine() -> str | None:
    try:
        ep = api.Endpoint.parse(ENGINE_URL)
    except ValueError as e:
        return str(e)
    try:
        status, _ = api.get_json_blocking(ep, "/_ping", 3.0)
    except api.EngineError:
        if shutil.which("podman") is None and shutil.which("docker") is None:
            return "podman not installed: run .ci/podman-setup.sh"
        return f"no container engine answers at {ENGINE_URL}: run .ci/podman-setup.sh"
    if status != 200:
        return f"the container engine at {ENGINE_URL} answers /_ping with HTTP {status}"
    status, _ = api.get_json_blocking(ep, api.path("/images/{}/json", IMAGE), 5.0)
    if status != 200:
        return f"the test image {IMAGE} is missing: run .ci/podman-setup.sh"
    return None


WHY_NO_ENGINE = _why_no_engine()


def skip_without_engine() -> None:
    if WHY_NO_ENGINE is not None:
        pytest.skip(WHY_NO_ENGINE, allow_module_level=True)


def remove_containers(instance: str) -> None:
    """Force-remove every container labelled with this runtime instance (the tests' own)."""
    ep = api.Endpoint.parse(ENGINE_URL)
    filters = json.dumps({"label": [f"neuro.instance={instance}"]})
    try:
        _status, found = api.get_json_blocking(
            ep, api.path("/containers/json", all=1, filters=filters), 10.0
        )
    except api.EngineError:
        return
    for c in found or []:
        if (c.get("Labels") or {}).get("neuro.instance") != instance:
            continue  # never anyone else's
        _delete(ep, str(c["Id"]))


def remove_networks(instance: str) -> None:
    """Remove the networks this runtime instance made (after its containers)."""
    ep = api.Endpoint.parse(ENGINE_URL)
    filters = json.dumps({"label": [f"neuro.instance={instance}"]})
    try:
        _status, found = api.get_json_blocking(ep, api.path("/networks", filters=filters), 10.0)
    except api.EngineError:
        return
    for n in found or []:
        if (n.get("Labels") or {}).get("neuro.instance") == instance:
            with contextlib.suppress(api.EngineError):
                api.get_json_blocking(
                    ep, api.path("/networks/{}", str(n["Name"])), 30.0, method="DELETE"
                )


def _delete(ep: api.Endpoint, cid: str) -> None:
    with contextlib.suppress(api.EngineError):
        api.get_json_blocking(
            ep, api.path("/containers/{}", cid, force=1, v=1), 30.0, method="DELETE"
        )


def container_count(instance: str) -> int:
    ep = api.Endpoint.parse(ENGINE_URL)
    filters = json.dumps({"label": [f"neuro.instance={instance}"]})
    _status, found = api.get_json_blocking(ep, api.path("/containers/json", all=1, filters=filters))
    return len(found or [])


@pytest.fixture
def instance() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def jobs_root(tmp_path: Path, instance: str) -> Any:
    root = tmp_path / "jobs"
    yield root
    remove_containers(instance)
    remove_networks(instance)


@pytest.fixture
async def runtime(jobs_root: Path, instance: str) -> AsyncIterator[DockerRuntime]:
    rt = make_runtime(jobs_root, instance)
    try:
        yield rt
    finally:
        await rt.close()


def make_runtime(root: Path, instance: str, **kw: Any) -> DockerRuntime:
    return DockerRuntime(ENGINE_URL, root=root, instance=instance, **kw)


def spec(
    job_id: str,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    working_dir: str | None = None,
    cpu: float = 0.0,
    memory: int = 0,
    tty: bool = False,
    image: str = IMAGE,
) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        argv=argv,
        env=env or {},
        working_dir=working_dir,
        cpu=cpu,
        memory=memory,
        tty=tty,
        image=image,
        owner="alice",
    )


async def eventually(condition: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Poll ``condition`` until it returns something true (a wait on a condition, not a nap);
    a condition that returns an awaitable is awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def read_all(runtime: DockerRuntime, job_id: str, **kw: Any) -> bytes:
    async def go() -> bytes:
        return b"".join([chunk async for chunk in runtime.logs(job_id, **kw)])

    return await asyncio.wait_for(go(), TIMEOUT)


def output(runtime: DockerRuntime, job_id: str) -> bytes:
    try:
        return (runtime.root / job_id / "output.log").read_bytes()
    except FileNotFoundError:
        return b""


def start_in_a_server_process(root: Path, instance: str, job: JobSpec) -> None:
    """Start a job from another process that is then SIGKILLed, as a crashing server would be."""
    code = f"""
import asyncio, os, signal
from pathlib import Path
from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.docker import DockerRuntime
async def main():
    rt = DockerRuntime({ENGINE_URL!r}, root=Path({str(root)!r}), instance={instance!r})
    await rt.start(JobSpec({job.job_id!r}, {list(job.argv)!r}, env={{}}, working_dir=None,
                           cpu=0, memory=0, tty={job.tty!r}, image={job.image!r}))
    os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr


@pytest.fixture
async def sessions() -> AsyncIterator[list[StdioSession]]:
    """Sessions a test opened; closed at teardown whatever happened."""
    opened: list[StdioSession] = []
    try:
        yield opened
    finally:
        for s in opened:
            await s.close()
