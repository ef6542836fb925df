"""The docker runtime's volumes, pinned (docker/volumes.py): the engine binds a staging mount of
the server's, made from the directory opened with no link followed; the staging mounts go once
the container runs (it keeps its copies) and when a new server starts.  And the pids limit."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from neuro_server.runtime.base import Mount, RuntimeError_
from neuro_server.runtime.docker import DockerRuntime, api
from neuro_server.runtime.docker import volumes as docker_volumes
from tests.server.runtime_docker.conftest import (
    ENGINE_URL,
    eventually,
    make_runtime,
    output,
    skip_without_engine,
    spec,
)

skip_without_engine()
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pinning volumes needs root")


def mounts_under(path: Path) -> list[str]:
    top = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        return [t for line in f if (t := line.split()[4]) == top or t.startswith(top + "/")]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A user's storage tree: data/in.txt, out/, and link -> the directory above it."""
    root = tmp_path / "storage" / "alice"
    (root / "data").mkdir(parents=True)
    (root / "data" / "in.txt").write_text("alpha\n")
    (root / "out").mkdir()
    (root / "link").symlink_to(tmp_path)
    return root


async def test_docker_volumes_are_pinned_and_unstaged_once_running(
    runtime: DockerRuntime, tree: Path
) -> None:
    script = (
        "cat /data/in.txt /in.txt; (echo x > /data/new) 2>/dev/null && echo WROTE ||"
        " echo ro; echo w > /out/w.txt; echo ready; exec sleep 60"
    )
    job = dataclasses.replace(
        spec("pinned", ["sh", "-c", script]),
        mounts=[
            Mount(str(tree), "data", "/data", read_only=True),
            Mount(str(tree), "out", "/out"),
            Mount(str(tree), "data/in.txt", "/in.txt", read_only=True),
        ],
    )  # a file, too
    await runtime.start(job)
    await eventually(lambda: b"ready" in output(runtime, "pinned"))
    assert output(runtime, "pinned") == b"alpha\nalpha\nro\nready\n"
    assert (tree / "out" / "w.txt").read_text() == "w\n"  # written through, after the unpin
    # the engine was given the staging mounts, which are gone now: the container has its own
    info = await runtime.engine.container_info(runtime._container_id("pinned") or "")
    sources = sorted(m["Source"] for m in (info or {}).get("Mounts") or ())
    staging = runtime.job_dir("pinned") / docker_volumes.STAGING
    assert sources == [f"{staging}/0", f"{staging}/1", f"{staging}/2"], sources
    assert mounts_under(runtime.root) == [] and not staging.exists()
    # and the job still has its volumes (exec beside it sees them)
    s = await runtime.exec("pinned", ["sh", "-c", "ls /data /out"], tty=False, stdin=False)
    out = b""
    while (chunk := await s.read()) is not None:
        out += chunk[1]
    assert out == b"/data:\nin.txt\n\n/out:\nw.txt\n", out
    await s.close()
    await runtime.stop("pinned", grace=0)
    await runtime.wait("pinned")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("link", "volume source for /v: link: is a symbolic link"),
        ("link/storage/alice/data", "volume source for /v: link: is a symbolic link"),
        ("nope", "volume source for /v: nope: no such file or directory"),
    ],
    ids=["link", "through-a-link", "missing"],
)
async def test_docker_a_volume_that_cannot_be_pinned_fails_the_start(
    runtime: DockerRuntime, tree: Path, path: str, message: str
) -> None:
    job = dataclasses.replace(
        spec("bad", ["echo", "RAN"]),
        mounts=[Mount(str(tree), "data", "/d"), Mount(str(tree), path, "/v")],
    )
    with pytest.raises(RuntimeError_) as e:
        await runtime.start(job)
    assert str(e.value).startswith(f"cannot place the job's volumes: {message}"), str(e.value)
    assert mounts_under(runtime.root) == []  # the first one, pinned already, went too
    assert b"RAN" not in output(runtime, "bad")


async def test_docker_a_server_that_is_not_root_refuses_volumes(
    runtime: DockerRuntime, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It cannot pin them (no mounts), and a path string would be the race again: refused,
    and `config show` says so.  Secret files (written by the server in the job's own 0700
    directory) still reach the job."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert runtime.info().volumes.startswith(
        "secret files only (storage volumes and disks "
        "on the docker runtime need a server running as root"
    )
    job = dataclasses.replace(
        spec("user", ["echo", "RAN"]), mounts=[Mount(str(tree), "data", "/data")]
    )
    with pytest.raises(RuntimeError_, match="need a server running as root"):
        await runtime.start(job)
    assert mounts_under(runtime.root) == []
    await runtime.start(dataclasses.replace(spec("files", ["cat", "/k"]), files=[("/k", b"K")]))
    assert (await runtime.wait("files")).exit_code == 0 and output(runtime, "files") == b"K"


async def test_docker_stale_staging_is_detached_when_a_server_starts(
    jobs_root: Path, instance: str, tree: Path
) -> None:
    """A server killed between pinning a job's volumes and the container's start."""
    staging = jobs_root / "job-x" / docker_volumes.STAGING
    staging.parent.mkdir(parents=True)
    binds = docker_volumes.pin(staging, [Mount(str(tree), "data", "/data")])
    assert binds == [f"{staging}/0:/data:rw"]
    assert (staging / "0" / "in.txt").read_text() == "alpha\n"
    assert len(mounts_under(jobs_root)) == 2  # the private staging dir and the volume
    rt = make_runtime(jobs_root, instance)
    try:
        assert mounts_under(jobs_root) == [] and not staging.exists()
        assert (tree / "data" / "in.txt").read_text() == "alpha\n"  # untouched
    finally:
        await rt.close()


async def test_docker_a_fork_bomb_stops_at_the_pids_limit(jobs_root: Path, instance: str) -> None:
    rt = make_runtime(jobs_root, instance, pids_limit=64)
    try:
        script = "i=0; while [ $i -lt 300 ]; do sleep 60 & i=$((i+1)); done; echo ALL-STARTED"
        await rt.start(spec("bomb", ["sh", "-c", script]))
        info = await rt.engine.container_info(rt._container_id("bomb") or "") or {}
        assert info["HostConfig"]["PidsLimit"] == 64
        ex = await rt.wait("bomb")
        out = output(rt, "bomb")
        assert b"can't fork" in out and b"ALL-STARTED" not in out, out
        assert ex.exit_code != 0
        # the engine, and the runtime, go on as before
        await rt.start(spec("after", ["echo", "fine"]))
        assert (await rt.wait("after")).exit_code == 0 and output(rt, "after") == b"fine\n"
    finally:
        await rt.close()


async def test_docker_pids_limit_default(runtime: DockerRuntime) -> None:
    await runtime.start(spec("pids", ["cat", "/sys/fs/cgroup/pids/pids.max"]))
    await runtime.wait("pids")
    cid = runtime._container_id("pids") or ""
    status, info = api.get_json_blocking(
        api.Endpoint.parse(ENGINE_URL), api.path("/containers/{}/json", cid)
    )
    assert status == 200 and info["HostConfig"]["PidsLimit"] == 4096
    assert output(runtime, "pids") == b"4096\n"
