"""The docker runtime end to end against a real engine: output, exit codes, limits, OOM, stop,
signals, logs, images, and jobs that outlive the server."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path
from typing import Any

import pytest

from neuro_server.runtime.base import JobSpec, RuntimeError_, State
from neuro_server.runtime.docker import DockerRuntime, api
from tests.server.runtime_docker.conftest import (
    ENGINE_URL,
    container_count,
    eventually,
    make_runtime,
    output,
    read_all,
    skip_without_engine,
    spec,
    start_in_a_server_process,
)

skip_without_engine()


async def test_docker_info_says_the_image_is_used(runtime: DockerRuntime) -> None:
    info = runtime.info()
    assert info.name == "docker"
    assert runtime.capabilities.runs_images is True
    assert "memory" in info.limits and "cpu" in info.limits
    assert "container" in info.note


async def test_docker_inspect_racing_the_exit_is_asked_again(
    runtime: DockerRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Podman before 4.4 fails an inspect with "read /proc/N/cgroup: no such process" when the
    container's process ends while it reads the process's cgroup (a kernel race no test can
    time; here the engine's answer is injected).  A command that exits at once is still a run
    with its exit code, not a start that failed; another engine error is not asked again."""
    from aiodocker.containers import DockerContainer
    from aiodocker.exceptions import DockerError

    real_show = DockerContainer.show
    failed: dict[str, int] = {}
    message = {"race": "read /proc/17786/cgroup: no such process", "other": "boom"}
    mode = "race"

    async def show(self: DockerContainer, **kwargs: Any) -> dict[str, Any]:
        if failed.get(self.id, 0) < 2:
            failed[self.id] = failed.get(self.id, 0) + 1
            raise DockerError(500, message[mode])
        return await real_show(self, **kwargs)

    monkeypatch.setattr(DockerContainer, "show", show)
    await runtime.start(spec("quick", ["sh", "-c", "echo run; exit 3"]))
    assert (await runtime.wait("quick")).exit_code == 3
    assert await read_all(runtime, "quick") == b"run\n"
    assert failed and set(failed.values()) == {2}  # each inspect asked again until answered
    mode, before = "other", dict(failed)
    with pytest.raises(RuntimeError_, match="boom"):
        await runtime.start(spec("other", ["true"]))
    assert [n for ref, n in failed.items() if ref not in before] == [1]  # not asked again


async def test_docker_env_and_working_dir(runtime: DockerRuntime) -> None:
    await runtime.start(
        spec("env", ["sh", "-c", "pwd; env"], env={"FOO": "bar baz"}, working_dir="/tmp")
    )
    assert (await runtime.wait("env")).exit_code == 0
    lines = (await read_all(runtime, "env")).decode().splitlines()
    assert lines[0] == "/tmp"
    env = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert env["FOO"] == "bar baz"
    assert env["PATH"] == "/bin"  # the image's own


@pytest.mark.parametrize(
    ("argv", "code", "error"),
    [
        (["no-such-command-x"], 127, 'cannot run "no-such-command-x": No such file or directory'),
        (["/etc/passwd"], 126, 'cannot run "/etc/passwd": Permission denied'),
    ],
    ids=["not-found", "not-executable"],
)
async def test_docker_command_that_cannot_run(
    runtime: DockerRuntime, argv: list[str], code: int, error: str
) -> None:
    started = await runtime.start(spec("bad", argv))
    assert started.started_at is not None
    ex = await runtime.wait("bad")
    assert ex.exit_code == code
    assert ex.error == error
    # one error, as a shell says it: not the init's line too (catatonit's "ERROR ...")
    assert await read_all(runtime, "bad") == f"neuro: {error}\n".encode()


@pytest.mark.parametrize("init", [True, False], ids=["init", "no-init"])
async def test_docker_command_not_found_with_and_without_an_init(
    jobs_root: Path, instance: str, init: bool
) -> None:
    rt = make_runtime(jobs_root, instance, init=init)
    try:
        await rt.start(spec("nf", ["no-such-command-x"]))
        ex = await rt.wait("nf")
        assert ex.exit_code == 127
        assert ex.error.startswith('cannot run "no-such-command-x"')
        out = await read_all(rt, "nf")
        assert out.startswith(b'neuro: cannot run "no-such-command-x"') and out.count(b"\n") == 1
    finally:
        await rt.close()


async def test_docker_memory_limit_oom_killed(runtime: DockerRuntime) -> None:
    started = await runtime.start(
        spec("oom", ["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"], memory=64 << 20)
    )
    assert started.limits.startswith("memory 64 MiB enforced by the container engine")
    ex = await runtime.wait("oom")
    assert ex.exit_code == 137
    assert ex.oom_killed is True


async def test_docker_limits_reach_the_container(runtime: DockerRuntime) -> None:
    started = await runtime.start(spec("lim", ["sleep", "60"], cpu=0.5, memory=256 << 20))
    assert (
        started.limits
        == "memory 256 MiB and cpu 0.5 enforced by the container engine ("
        + (runtime.info().limits.split("(", 1)[1])
    )
    cid = runtime._container_id("lim")
    assert cid is not None
    _status, info = api.get_json_blocking(runtime.endpoint, api.path("/containers/{}/json", cid))
    host = info["HostConfig"]
    assert host["Memory"] == 256 << 20 and host["MemorySwap"] == 256 << 20
    assert host["NanoCpus"] == 500_000_000 or host.get("CpuQuota") == 50_000
    assert host["ShmSize"] == 64 << 20 and host["Privileged"] is False
    assert host.get("PortBindings") in (None, {})  # nothing published on the host
    labels = info["Config"]["Labels"]
    assert labels["neuro.job-id"] == "lim" and labels["neuro.owner"] == "alice"
    assert labels["neuro.instance"] == runtime.instance
    assert labels["neuro.data-dir"] == str(runtime.root)
    await runtime.stop("lim", grace=5)
    assert (await runtime.wait("lim")).exit_code == 128 + signal.SIGTERM
    await runtime.cleanup("lim")
    assert container_count(runtime.instance) == 0  # removed once its output was complete
    assert (await runtime.inspect("lim")).state is State.EXITED  # from the job's files


async def test_docker_missing_image_that_cannot_be_pulled(runtime: DockerRuntime) -> None:
    phases: list[tuple[str, str, str]] = []
    runtime.set_progress_listener(lambda job, reason, text: phases.append((job, reason, text)))
    image = "docker.io/library/neuro-no-such-image:latest"
    with pytest.raises(RuntimeError_) as e:
        await asyncio.wait_for(runtime.start(spec("pull", ["true"], image=image)), 60)
    assert e.value.reason == "ErrImagePull"
    assert f"cannot pull image {image}: " in str(e.value) and len(str(e.value)) > 50
    assert ("pull", "Pulling", f"Pulling image {image}") in phases
    assert runtime.phase("pull") is None  # no start under way any more
    assert (await runtime.inspect("pull")).state is State.NOT_FOUND
    assert await read_all(runtime, "pull") == b""  # nothing ran: a follower ends at once
    assert container_count(runtime.instance) == 0


@pytest.mark.parametrize("image", ["Bad_Name::x", "", "a/b@sha256:xyz", "UPPER/case"])
async def test_docker_invalid_image_name(runtime: DockerRuntime, image: str) -> None:
    with pytest.raises(RuntimeError_) as e:
        await runtime.start(spec("inv", ["true"], image=image))
    assert e.value.reason == "InvalidImageName"


def test_docker_image_names() -> None:
    ok = [
        "ubuntu",
        "ubuntu:22.04",
        "localhost/busybox:latest",
        "registry:5000/a/b-c_d:v1.2",
        "ghcr.io/org/img@sha256:" + "a" * 64,
        "[::1]:5000/x",
    ]
    for image in ok:
        assert api.image_name_error(image) is None, image
    for image in ["", "UPPER", "a//b", "a:b:c", "-a", "a/b:", "x" * 600]:
        assert api.image_name_error(image), image


# -- foreign containers, two servers ---------------------------------------------------------


async def test_docker_never_touches_a_foreign_container(runtime: DockerRuntime) -> None:
    name = runtime.container_name("taken")
    created = await api.request(
        runtime.endpoint,
        "POST",
        api.path("/containers/create", name=name),
        {"Image": "localhost/busybox:latest", "Cmd": ["sleep", "60"]},
    )
    foreign = (await created.json())["Id"]
    await created.aclose()
    try:
        with pytest.raises(RuntimeError_, match="not this server's"):
            await runtime.start(spec("taken", ["true"]))
        status, _ = api.get_json_blocking(
            runtime.endpoint, api.path("/containers/{}/json", foreign)
        )
        assert status == 200  # still there
        assert runtime.job_ids is not None and await runtime.job_ids() == []
    finally:
        api.get_json_blocking(
            runtime.endpoint, api.path("/containers/{}", foreign, force=1), method="DELETE"
        )


async def test_docker_two_servers_see_only_their_own_jobs(
    runtime: DockerRuntime, tmp_path: Path, instance: str
) -> None:
    other = make_runtime(tmp_path / "other-jobs", instance + "b")
    try:
        await runtime.start(spec("mine", ["sleep", "60"]))
        await other.start(spec("mine", ["sleep", "60"]))
        assert await runtime.job_ids() == ["mine"] and await other.job_ids() == ["mine"]
        await other.stop("mine", grace=0)
        await other.wait("mine")
        assert (await runtime.inspect("mine")).state is State.RUNNING
    finally:
        await other.close()
        from tests.server.runtime_docker.conftest import remove_containers

        remove_containers(instance + "b")


# -- jobs outlive the server -----------------------------------------------------------------


async def test_docker_job_survives_the_server(jobs_root: Path, instance: str) -> None:
    script = (
        'i=0; while [ $i -lt 200 ]; do echo "line $i"; i=$((i+1)); done; '
        "trap 'echo after; exit 5' USR1; while :; do sleep 0.02; done"
    )
    start_in_a_server_process(jobs_root, instance, spec("survivor", ["sh", "-c", script]))
    rt = make_runtime(jobs_root, instance)  # the restarted server
    try:
        st = await rt.inspect("survivor")
        assert st.state is State.RUNNING and st.started_at is not None
        assert await rt.job_ids() == ["survivor"]
        waiter = asyncio.create_task(rt.wait("survivor"))
        follower = asyncio.create_task(read_all(rt, "survivor"))
        await eventually(lambda: b"line 199\n" in output(rt, "survivor"))
        assert not waiter.done() and not follower.done()
        await rt.signal("survivor", signal.SIGUSR1)
        ex = await asyncio.wait_for(waiter, 20)
        assert ex.exit_code == 5
        expected = "".join(f"line {i}\n" for i in range(200)) + "after\n"
        assert (await asyncio.wait_for(follower, 20)).decode() == expected
        assert output(rt, "survivor").decode() == expected
        assert (await rt.inspect("survivor")).state is State.EXITED
    finally:
        await rt.close()


async def test_docker_job_that_ends_while_the_server_is_down(
    jobs_root: Path, instance: str
) -> None:
    script = "echo before; sleep 0.5; printf 'no newline'; echo ' after' >&2; exit 9"
    start_in_a_server_process(jobs_root, instance, spec("offline", ["sh", "-c", script]))
    rt = make_runtime(jobs_root, instance)
    try:
        await eventually(lambda: _is_exited(rt, "offline"))
        st = await rt.inspect("offline")
        assert st.exit is not None and st.exit.exit_code == 9
        assert (await rt.wait("offline")).exit_code == 9
        assert await read_all(rt, "offline") == b"before\nno newline after\n"
        await rt.cleanup("offline")
        assert container_count(instance) == 0
    finally:
        await rt.close()


async def test_docker_output_resumes_without_gap_or_duplicate(
    jobs_root: Path, instance: str
) -> None:
    """A server that dies while a job prints, with part of the output written but not yet
    recorded: the next one cuts the log back to what was recorded and goes on from there."""
    script = 'i=0; while [ $i -lt 3000 ]; do echo "n $i"; i=$((i+1)); usleep 500; done'
    rt = make_runtime(jobs_root, instance)
    await rt.start(spec("count", ["sh", "-c", script]))
    await eventually(lambda: b"n 300\n" in output(rt, "count"))
    await rt.close()  # as if killed: no more output is written here
    log = jobs_root / "count" / "output.log"
    log.write_bytes(log.read_bytes() + b"garbage not recorded")  # a write the crash cut off
    rt2 = make_runtime(jobs_root, instance)
    try:
        assert (await rt2.inspect("count")).state in (State.RUNNING, State.EXITED)
        assert (await rt2.wait("count")).exit_code == 0
        expected = "".join(f"n {i}\n" for i in range(3000)).encode()
        assert await read_all(rt2, "count") == expected
    finally:
        await rt2.close()


async def test_docker_lost_container_is_not_found(runtime: DockerRuntime) -> None:
    await runtime.start(spec("lost", ["sleep", "60"]))
    cid = runtime._container_id("lost")
    assert cid is not None
    api.get_json_blocking(
        runtime.endpoint, api.path("/containers/{}", cid, force=1), method="DELETE"
    )
    with pytest.raises(RuntimeError_) as e:
        await asyncio.wait_for(runtime.wait("lost"), 20)
    assert e.value.reason == "NotFound"
    assert (await runtime.inspect("lost")).state is State.NOT_FOUND
    assert await read_all(runtime, "lost") == b""


def test_docker_engine_url_forms() -> None:
    assert api.Endpoint.parse("unix:///run/x.sock").path == "/run/x.sock"
    assert api.Endpoint.parse("/run/x.sock").url == "unix:///run/x.sock"
    ep = api.Endpoint.parse("tcp://127.0.0.1:2375")
    assert (ep.host, ep.port, ep.local) == ("127.0.0.1", 2375, True)
    with pytest.raises(ValueError):
        api.Endpoint.parse("ssh://host")
    assert ENGINE_URL


def raw_spec(job_id: str, **kw: Any) -> JobSpec:
    """A JobSpec as the server makes it: the user's raw entrypoint/command, argv their join."""
    from neuro_server.validation import split_command

    argv = split_command(kw.get("entrypoint"), "entrypoint") + split_command(
        kw.get("command"), "command"
    )
    base = spec(job_id, argv)
    return dataclasses.replace(base, **kw)


async def test_docker_image_entrypoint_and_command(runtime: DockerRuntime) -> None:
    # the image's CMD is /bin/sh: with no command it runs (stdin is empty: it exits at once)
    await runtime.start(raw_spec("default"))
    await runtime.start(raw_spec("cmd", command="echo 'hello there'"))
    await runtime.start(raw_spec("ep", entrypoint="sh -c", command="'echo from-ep $0' zero"))
    assert (await runtime.wait("default")).exit_code == 0
    assert (await runtime.wait("cmd")).exit_code == 0
    assert (await runtime.wait("ep")).exit_code == 0
    assert await read_all(runtime, "default") == b""
    assert await read_all(runtime, "cmd") == b"hello there\n"
    assert await read_all(runtime, "ep") == b"from-ep zero\n"


async def test_docker_extended_shm(runtime: DockerRuntime) -> None:
    await runtime.start(raw_spec("shm", command="sleep 60", shm=True, memory=512 << 20))
    cid = runtime._container_id("shm")
    assert cid is not None
    _status, info = api.get_json_blocking(runtime.endpoint, api.path("/containers/{}/json", cid))
    assert info["HostConfig"]["ShmSize"] == 512 << 20
    await runtime.stop("shm", grace=0)
    await runtime.wait("shm")


def test_docker_container_config(tmp_path: Path) -> None:
    # what the engine is asked for (no GPU engine here)
    rt = DockerRuntime(ENGINE_URL, root=tmp_path / "jobs")
    host = rt._container_config(raw_spec("g", command="true", gpus=2))["HostConfig"]
    assert host["DeviceRequests"] == [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}]
    assigned = rt._container_config(raw_spec("g", command="true", gpus=2, gpu_ids=(3, 1)))
    assert assigned["HostConfig"]["DeviceRequests"] == [  # those devices, not any two
        {"Driver": "", "Count": 0, "DeviceIDs": ["3", "1"], "Capabilities": [["gpu"]]}
    ]
    plain = rt._container_config(raw_spec("c"))
    assert "DeviceRequests" not in plain["HostConfig"]
    assert plain["HostConfig"]["ShmSize"] == 64 << 20
    assert "Entrypoint" not in plain and "Cmd" not in plain  # the image's own
    cmd = rt._container_config(raw_spec("c", command="echo 'a b'"))
    assert "Entrypoint" not in cmd and cmd["Cmd"] == ["echo", "a b"]
    ep = rt._container_config(raw_spec("c", entrypoint="sh -c"))
    assert ep["Entrypoint"] == ["sh", "-c"] and "Cmd" not in ep
    resolved = rt._container_config(spec("c", ["echo", "x"]))  # argv only: exactly that
    assert resolved["Entrypoint"] == ["echo"] and resolved["Cmd"] == ["x"]


async def _is_exited(rt: DockerRuntime, job_id: str) -> bool:
    return (await rt.inspect(job_id)).state is State.EXITED
