"""What only a cluster shows, on the real one of .ci/slurm-setup.sh (two nodes, n1 and n2, of
2 CPUs each; skipped when it is not up): a job that does not fit waits with Slurm's reason and
runs once another ends; jobs on both nodes, each reached at its node's address; a job pending
in Slurm is adopted by a restarted server, never submitted twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from neuro_server.runtime.base import JobSpec, State
from neuro_server.runtime.slurm.runtime import SlurmRuntime
from tests.server.runtime_slurm.harness import cancel_jobs, cluster_or_skip

TIMEOUT = 30.0


async def eventually(condition: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        await asyncio.sleep(0.05)


class Cluster:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.env = root, env
        self.made: list[SlurmRuntime] = []
        self.heard: list[tuple[str, str, str]] = []

    def runtime(self) -> SlurmRuntime:
        rt = SlurmRuntime(self.root, env=self.env)
        rt.set_progress_listener(lambda *said: self.heard.append(said))
        self.made.append(rt)
        return rt

    def slurm(self, *argv: str) -> str:
        done = subprocess.run(
            argv, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def slurm_job(self, job_id: str) -> int:
        return int(json.loads((self.root / job_id / "slurm.json").read_text())["slurm_id"])

    def show(self, job_id: str) -> dict[str, str]:
        from neuro_server.runtime.slurm.commands import parse_oneline

        return parse_oneline(
            self.slurm("scontrol", "-o", "show", "job", str(self.slurm_job(job_id)))
        )


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    env = cluster_or_skip()
    c = Cluster(tmp_path / "jobs", env)
    try:
        yield c
    finally:
        for rt in c.made:
            await rt.close()
        cancel_jobs(c.root, env)


def spec(job_id: str, argv: list[str], cpu: float = 0.5, memory: int = 64 << 20) -> JobSpec:
    return JobSpec(job_id, argv, env={}, working_dir=None, cpu=cpu, memory=memory)


async def test_capacity_is_the_nodes(cluster: Cluster) -> None:
    cap = cluster.runtime().capacity()
    assert {n.name for n in cap.nodes} >= {"n1", "n2"}
    assert all(n.cpu >= 2 for n in cap.nodes) and cap.cpu == sum(n.cpu for n in cap.nodes)


@pytest.mark.timeout(240)
async def test_a_job_that_does_not_fit_waits_with_slurms_reason(cluster: Cluster) -> None:
    rt = cluster.runtime()
    nodes = len(rt.capacity().nodes)
    full = [f"full-{i}" for i in range(nodes)]
    for job in full:  # every node's CPUs taken
        await rt.start(spec(job, ["sleep", "60"], cpu=2))
    waiting = asyncio.create_task(rt.start(spec("waits", ["echo", "ran"], cpu=2)))
    # Slurm's reason: Resources, or Priority behind other tests' jobs waiting on this cluster
    waits = ("Resources", "Priority")
    # (other tests' jobs share the cluster: the full ones may wait a while first)
    await eventually(lambda: any(h[0] == "waits" and h[1] in waits for h in cluster.heard), 90)
    said = next(h for h in cluster.heard if h[0] == "waits" and h[1] in waits)
    assert said[2].startswith("Pending in Slurm: ") and f"({said[1]})" in said[2]
    assert not waiting.done()
    assert (await rt.inspect("waits")).state is State.NOT_FOUND  # not running yet
    await rt.stop(full[0], grace=0)
    await asyncio.wait_for(waiting, 90)
    assert (await rt.wait("waits")).exit_code == 0
    assert b"".join([c async for c in rt.logs("waits")]) == b"ran\n"


async def test_jobs_on_two_nodes_each_reached_at_its_node(cluster: Cluster, tmp_path: Path) -> None:
    rt = cluster.runtime()
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hello")
    port = 18000 + os.getpid() % 1000
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "0.0.0.0"]
    web = JobSpec("web-a", argv, env={}, working_dir=str(site), cpu=2, memory=64 << 20)
    a = await rt.start(web)
    b = await rt.start(
        JobSpec("web-b", argv, env={}, working_dir=str(site), cpu=2, memory=64 << 20)
    )
    nodes = {cluster.show("web-a")["BatchHost"], cluster.show("web-b")["BatchHost"]}
    assert len(nodes) == 2, "two jobs of 2 CPUs each land on two nodes"
    assert a.address != b.address
    for job in ("web-a", "web-b"):

        async def get(job: str = job) -> bytes:
            try:
                reader, writer = await rt.connect_port(job, port)
            except Exception:  # noqa: BLE001 - not listening yet
                return b""
            writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
            await writer.drain()
            body = await reader.read()
            writer.close()
            return body

        assert (await eventually(get)).endswith(b"hello")


async def test_a_restarted_server_adopts_a_job_pending_in_slurm(cluster: Cluster) -> None:
    rt = cluster.runtime()
    full = [f"full-{i}" for i in range(len(rt.capacity().nodes))]
    for job in full:  # every node's CPUs taken: it waits
        await rt.start(spec(job, ["sleep", "60"], cpu=2))
    try:
        first = asyncio.create_task(rt.start(spec("adopted", ["echo", "once"])))
        await eventually(lambda: (cluster.root / "adopted" / "slurm.json").exists())
        slurm_id = cluster.slurm_job("adopted")
        first.cancel()  # the server is gone while it waits in Slurm
        with pytest.raises(asyncio.CancelledError):
            await first
        await rt.close()
        rt = later = cluster.runtime()
        assert (await later.inspect("adopted")).state is State.NOT_FOUND  # it waits
        again = asyncio.create_task(later.start(spec("adopted", ["echo", "once"])))
    finally:
        await rt.stop(full[0], grace=0)
    await asyncio.wait_for(again, TIMEOUT)
    assert cluster.slurm_job("adopted") == slurm_id  # the same Slurm job: not submitted twice
    assert (await later.wait("adopted")).exit_code == 0
    assert b"".join([c async for c in later.logs("adopted")]) == b"once\n"
