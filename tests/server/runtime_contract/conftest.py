"""The runtime contract suite: the same tests on every runtime -- process, docker (Podman's
Docker-compatible service, as .ci/podman-setup.sh starts it) and the tests' toy runtime
(tests/server/toy_runtime) -- as the e2e suite runs on both real runtimes.  A new runtime gets
the whole contract by one more entry in RUNTIMES (and a harness below); slurm runs on the
cluster of .ci/slurm-setup.sh (skipped when it is not up).

A test that needs what a runtime cannot do skips, naming it: a capability of
base.Capabilities (``rt.needs_capability``), or one of the harness's traits (``rt.needs``):
TTY (terminals), OUTLIVES (jobs outlive the server), LIMITS (CPU and memory limits enforced).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from neuro_server.runtime import registry
from neuro_server.runtime.base import JobSpec, Runtime, StdioSession

registry.register("toy", "tests.server.toy_runtime.plugin")  # the toy runtime: one line

RUNTIMES = ("process", "docker", "toy", "slurm")
TTY, OUTLIVES, LIMITS = "terminals", "jobs outlive the server", "limits enforced"
TIMEOUT = 20.0
PY = sys.executable
HELLO = b"hello from the job\n"


@dataclass
class Harness:
    kind: str
    runtime: Runtime
    root: Path
    traits: frozenset[str]
    image: str = ""
    site: Path | None = None  # a directory with hello.txt, for web() on the host
    _again: Callable[[], Runtime] | None = None
    _more: list[Runtime] = field(default_factory=list)

    def spec(
        self,
        job_id: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        working_dir: str | None = None,
        cpu: float = 0.0,
        memory: int = 0,
        tty: bool = False,
    ) -> JobSpec:
        return JobSpec(
            job_id=job_id,
            argv=argv,
            env=env or {},
            working_dir=working_dir,
            cpu=cpu,
            memory=memory,
            tty=tty,
            image=self.image,
            owner="alice",
        )

    def web(self, job_id: str) -> tuple[JobSpec, int]:
        """A job serving hello.txt over HTTP, and its port."""
        if self.kind == "docker":
            return self.spec(job_id, ["httpd", "-f", "-p", "8080", "-h", "/www"]), 8080
        port = free_port()
        # (a Slurm node has a network of its own: the job listens on the node's address)
        bind = "0.0.0.0" if self.kind == "slurm" else "127.0.0.1"
        argv = [PY, "-m", "http.server", str(port), "--bind", bind]
        return self.spec(job_id, argv, working_dir=str(self.site)), port

    def needs(self, *traits: str) -> None:
        for t in traits:
            if t not in self.traits:
                pytest.skip(f"the {self.kind} runtime: no {t}")

    def needs_capability(self, name: str) -> None:
        if not getattr(self.runtime.capabilities, name):
            pytest.skip(f"the {self.kind} runtime lacks the capability {name}")

    def output(self, job_id: str) -> bytes:
        try:
            return (self.root / job_id / "output.log").read_bytes()
        except FileNotFoundError:
            return b""

    async def read_all(self, job_id: str, **kw: Any) -> bytes:
        async def go() -> bytes:
            return b"".join([chunk async for chunk in self.runtime.logs(job_id, **kw)])

        return await asyncio.wait_for(go(), TIMEOUT)

    def another(self) -> Runtime:
        """A new runtime on the same jobs (as a restarted server has); closed at teardown."""
        self.needs(OUTLIVES)
        assert self._again is not None
        rt = self._again()
        self._more.append(rt)
        return rt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=RUNTIMES)
async def rt(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = str(request.param)
    root = tmp_path / "jobs"
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_bytes(HELLO)
    with _teardown(kind, root) as (make, traits, image):
        h = Harness(kind, make(), root, traits, image=image, site=site, _again=make)
        try:
            yield h
        finally:
            for r in (h.runtime, *h._more):
                await r.close()


@contextlib.contextmanager
def _teardown(kind: str, root: Path) -> Iterator[tuple[Callable[[], Any], frozenset[str], str]]:
    if kind == "process":
        from neuro_server.runtime.process import ProcessRuntime
        from tests.server.runtime.conftest import cgroup_v1_writable, kill_jobs

        parent = f"neuro-test-{uuid.uuid4().hex[:12]}"
        traits = {TTY, OUTLIVES} | ({LIMITS} if cgroup_v1_writable() else set())
        try:
            yield (lambda: ProcessRuntime(root, cgroup_parent=parent)), frozenset(traits), ""
        finally:
            kill_jobs(root, parent)
    elif kind == "docker":
        from tests.server.runtime_docker.conftest import (
            IMAGE,
            WHY_NO_ENGINE,
            make_runtime,
            remove_containers,
            remove_networks,
        )

        if WHY_NO_ENGINE is not None:
            pytest.skip(WHY_NO_ENGINE)
        instance = f"t{uuid.uuid4().hex[:10]}"
        try:
            yield (lambda: make_runtime(root, instance)), frozenset({TTY, OUTLIVES, LIMITS}), IMAGE
        finally:
            remove_containers(instance)
            remove_networks(instance)
    elif kind == "slurm":
        from neuro_server.runtime.slurm.runtime import SlurmRuntime
        from tests.server.runtime_slurm.harness import cancel_jobs, cluster_or_skip

        env = cluster_or_skip()
        try:
            yield (lambda: SlurmRuntime(root, env=env)), frozenset({TTY, OUTLIVES}), ""
        finally:
            cancel_jobs(root, env)
    else:
        from tests.server.toy_runtime.runtime import ToyRuntime

        made: list[ToyRuntime] = []

        def make() -> ToyRuntime:
            made.append(ToyRuntime(root))
            return made[-1]

        try:
            yield make, frozenset(), ""
        finally:
            for toy in made:
                for job in toy._jobs.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job.proc.pid, signal.SIGKILL)


@pytest.fixture
async def sessions() -> AsyncIterator[list[StdioSession]]:
    """Sessions a test opened; closed at teardown whatever happened."""
    opened: list[StdioSession] = []
    try:
        yield opened
    finally:
        for s in opened:
            await s.close()


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
