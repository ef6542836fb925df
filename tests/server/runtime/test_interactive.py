"""The process runtime's interactive side: TTY jobs, attach (through the supervisor's control
socket), exec beside a job, resize, signals, port connections and telemetry."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from neuro_server.runtime.base import JobSpec, RuntimeError_, State, StdioSession
from neuro_server.runtime.jobdir import SUPERVISOR, read_json
from neuro_server.runtime.process import ProcessRuntime, control
from neuro_server.runtime.process.procfs import supervisor_alive
from tests.server.runtime.conftest import eventually, output, spec

PY = sys.executable
ROOT = str(Path(__file__).resolve().parents[3])
TIMEOUT = 15.0


def tty_spec(job_id: str, argv: list[str], **kw: Any) -> JobSpec:
    s = spec(job_id, argv, **kw)
    return JobSpec(
        job_id=s.job_id,
        argv=s.argv,
        env=s.env,
        working_dir=s.working_dir,
        cpu=s.cpu,
        memory=s.memory,
        tty=True,
    )


@pytest.fixture
async def sessions() -> AsyncIterator[list[StdioSession]]:
    """Sessions a test opened; closed at teardown whatever happened."""
    opened: list[StdioSession] = []
    try:
        yield opened
    finally:
        for s in opened:
            await s.close()


async def read_until(session: StdioSession, needle: bytes | re.Pattern[bytes]) -> bytes:
    """Read until ``needle`` is in what came (all of it, streams joined)."""
    got = b""

    def found() -> bool:
        return needle.search(got) is not None if isinstance(needle, re.Pattern) else needle in got

    async def go() -> bytes:
        nonlocal got
        while not found():
            chunk = await session.read()
            if chunk is None:
                raise AssertionError(f"ended before {needle!r}: {got!r}")
            got += chunk[1]
        return got

    return await asyncio.wait_for(go(), TIMEOUT)


PROMPT = re.compile(rb"[#$] $")


async def prompted(session: StdioSession) -> bytes:
    """Read up to an interactive sh's prompt (typed input echoes before the shell prompts)."""
    return await read_until(session, PROMPT)


async def read_to_end(session: StdioSession) -> list[tuple[int, bytes]]:
    async def go() -> list[tuple[int, bytes]]:
        chunks = []
        while (chunk := await session.read()) is not None:
            chunks.append(chunk)
        return chunks

    return await asyncio.wait_for(go(), TIMEOUT)


def joined(chunks: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(data for s, data in chunks if s == stream)


def supervisor_gone(runtime: ProcessRuntime, job_id: str) -> Callable[[], bool]:
    sup = read_json(str(runtime.root / job_id / SUPERVISOR))
    assert sup is not None
    return lambda: not supervisor_alive(sup)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def dead(pid: int) -> bool:
    """Gone, and reaped (not a zombie)."""
    return not Path(f"/proc/{pid}").exists()


# -- TTY jobs and attach -------------------------------------------------------------------


async def test_tty_job_attach_and_type_into_sh(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(tty_spec("sh", ["sh"]))
    s = await runtime.attach("sh", stdin=True, stdout=True, stderr=True, logs=True)
    sessions.append(s)
    await prompted(s)
    await s.write(b"echo $((6*7)); tty; stty size\n")
    await read_until(s, re.compile(rb"\r\n42\r\n/dev/pts/\d+\r\n24 80\r\n"))
    assert b"42\r\n" in output(runtime, "sh")  # the log has it, as stream 1
    await s.write(b"exit 4\n")
    assert (await runtime.wait("sh")).exit_code == 4
    await read_to_end(s)
    assert s.exit_code == 4  # type: ignore[attr-defined]
    assert output(runtime, "sh")[:2] in (b"# ", b"$ ")  # an interactive shell: it prompts


async def test_tty_resize_sends_winch_and_stty_sees_it(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    script = "trap 'echo WINCH; stty size' WINCH; stty size; while :; do sleep 0.02; done"
    await runtime.start(tty_spec("winch", ["sh", "-c", script]))
    s = await runtime.attach("winch", stdin=False, stdout=True, stderr=False, logs=True)
    sessions.append(s)
    await read_until(s, b"24 80\r\n")
    await runtime.resize("winch", 33, 101)
    await read_until(s, b"WINCH\r\n33 101\r\n")
    await s.resize(40, 120)  # through the attached session too
    await read_until(s, b"WINCH\r\n40 120\r\n")
    await runtime.stop("winch", grace=0)
    await runtime.wait("winch")


async def test_attach_with_logs_gets_everything_once(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    script = 'i=0; while :; do echo "$i"; echo "e$i" >&2; i=$((i+1)); sleep 0.002; done'
    await runtime.start(spec("count", ["sh", "-c", script]))
    await eventually(lambda: b"\n50\n" in output(runtime, "count"))
    out = await runtime.attach("count", stdin=False, stdout=True, stderr=False, logs=True)
    err = await runtime.attach("count", stdin=False, stdout=False, stderr=True)
    sessions += [out, err]
    first_live = len(output(runtime, "count").split(b"\n"))  # lines in the log by now, about
    got = await read_until(out, f"\n{first_live + 100}\n".encode())
    n = int(got.split(b"\n")[-2])
    assert got == "".join(f"{i}\n" for i in range(n + 1)).encode()  # no gap, no duplicate
    live = await read_until(err, f"\ne{first_live + 100}\n".encode())
    numbers = [int(line[1:]) for line in live.split(b"\n")[:-1]]
    assert numbers and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert numbers[0] > 10  # live only: not from the start
    await runtime.stop("count", grace=0)
    await runtime.wait("count")


def _start_elsewhere(root: Path, cgroup_parent: str, job: JobSpec) -> None:
    """Start a job from another process that is then SIGKILLed, as a crashing server would be."""
    code = f"""
import asyncio, os, signal
from pathlib import Path
from neuro_server.runtime.base import JobSpec
from neuro_server.runtime.process import ProcessRuntime
rt = ProcessRuntime(Path({str(root)!r}), cgroup_parent={cgroup_parent!r})
asyncio.run(rt.start(JobSpec({job.job_id!r}, {list(job.argv)!r}, env={{}}, working_dir=None,
                             cpu=0, memory=0, tty={job.tty!r})))
os.kill(os.getpid(), signal.SIGKILL)
"""
    r = subprocess.run([PY, "-c", code], cwd=ROOT, capture_output=True, timeout=60, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr


async def test_attach_and_signal_after_a_server_restart(
    jobs_root: Path, cgroup_parent: str, sessions: list[StdioSession]
) -> None:
    script = "trap 'echo got-usr1' USR1; echo ready; while read line; do echo \"[$line]\"; done"
    _start_elsewhere(jobs_root, cgroup_parent, tty_spec("later", ["sh", "-c", script]))
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent)  # the restarted server
    assert (await rt.inspect("later")).state is State.RUNNING
    s = await rt.attach("later", stdin=True, stdout=True, stderr=True, logs=True)
    sessions.append(s)
    await read_until(s, b"ready\r\n")
    await s.write(b"hello\n")
    await read_until(s, b"[hello]\r\n")
    await rt.signal("later", signal.SIGUSR1)
    await read_until(s, b"got-usr1\r\n")
    await s.close_stdin()  # `read` gets EOF: the loop ends
    assert (await asyncio.wait_for(rt.wait("later"), TIMEOUT)).exit_code == 0


async def test_stop_a_tty_job_and_nothing_is_left(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    before = open_fds()
    await runtime.start(tty_spec("stoptty", ["sh"]))
    d = runtime.root / "stoptty"
    path = Path(read_json(str(d / control.CONTROL))["path"])  # type: ignore[index]
    assert path.is_socket() and path.stat().st_mode & 0o777 == 0o600
    s = await runtime.attach("stoptty", stdin=True, stdout=True, stderr=True, logs=True)
    await prompted(s)
    await s.write(b"echo $((3*3))\n")
    await read_until(s, b"\r\n9\r\n")
    gone = supervisor_gone(runtime, "stoptty")
    await runtime.stop("stoptty", grace=0.3)
    assert (await asyncio.wait_for(runtime.wait("stoptty"), TIMEOUT)).exit_code in (129, 137, 143)
    await read_to_end(s)
    await s.close()
    await eventually(gone)
    assert not path.exists() and not (d / control.CONTROL).exists()
    assert open_fds() == before
    assert await runtime.log_size("stoptty") == len(output(runtime, "stoptty")) > 0
    assert await runtime.log_size("never") == 0 and await runtime.log_size("../x") == 0


async def test_a_client_that_never_reads_does_not_hold_up_the_job(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent, attach_max_lag=6 << 20)
    chunk, count = 256 << 10, 96  # 24 MiB, at a pace a reading client keeps up with
    go = tmp_path / "go"
    code = (
        f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        f"for i in range({count}):\n"
        f"    sys.stdout.buffer.write(b'x' * {chunk}); sys.stdout.flush(); time.sleep(0.003)\n"
    )
    await rt.start(spec("flood", [PY, "-c", code]))
    slow = await rt.attach("flood", stdin=False, stdout=True, stderr=True)
    fast = await rt.attach("flood", stdin=False, stdout=True, stderr=True)
    try:
        go.touch()
        got = 0
        while (c := await asyncio.wait_for(fast.read(), TIMEOUT)) is not None:
            got += len(c[1])
        assert got == chunk * count
        assert (await asyncio.wait_for(rt.wait("flood"), TIMEOUT)).exit_code == 0
        assert (jobs_root / "flood" / "output.log").stat().st_size == chunk * count
        # the slow one was dropped once it fell behind: it gets what was on its way, then the end
        slow_got = sum(len(c[1]) for c in await read_to_end(slow))
        assert slow_got < chunk * count
        assert slow.exit_code is None  # type: ignore[attr-defined] # dropped, not told the end
    finally:
        await slow.close()
        await fast.close()


async def test_control_socket_of_a_long_job_dir(
    tmp_path: Path, cgroup_parent: str, sessions: list[StdioSession]
) -> None:
    from tests.server.runtime.conftest import kill_jobs

    root = tmp_path / ("d" * 60) / ("e" * 60) / "jobs"
    rt = ProcessRuntime(root, cgroup_parent=cgroup_parent)
    try:
        await rt.start(tty_spec("long", ["sh"]))
        path = read_json(str(root / "long" / control.CONTROL))["path"]  # type: ignore[index]
        assert len(path) <= control.MAX_UNIX_PATH and path.startswith(f"/tmp/neuro-{os.getuid()}/")
        s = await rt.attach("long", stdin=True, stdout=True, stderr=True, logs=True)
        sessions.append(s)
        await prompted(s)
        await s.write(b"echo $((5*5))\n")
        await read_until(s, b"\r\n25\r\n")
        gone = supervisor_gone(rt, "long")
        await s.write(b"exit\n")
        await rt.wait("long")
        await eventually(gone)
        assert not Path(path).exists()
    finally:
        kill_jobs(root, cgroup_parent)


# -- exec ----------------------------------------------------------------------------------


async def test_exec_exit_code_and_separate_streams(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    before = open_fds()
    s = await runtime.exec(
        "box", ["sh", "-c", "echo out; echo err >&2; exit 3"], tty=False, stdin=False
    )
    chunks = await read_to_end(s)
    assert joined(chunks, 1) == b"out\n" and joined(chunks, 2) == b"err\n"
    assert await s.wait() == 3
    await s.close()
    assert open_fds() == before
    assert b"out" not in output(runtime, "box")  # exec output is not the job's


async def test_exec_stdin_pipe_then_eof(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec("box", ["cat"], tty=False, stdin=True)
    sessions.append(s)
    await s.write(b"hello\n")
    assert await read_until(s, b"hello\n") == b"hello\n"
    await s.write(b"x" * 200_000)  # more than a pipe holds: write waits, cat reads
    await read_until(s, b"x" * 1000)
    await s.close_stdin()
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 0
    rest = await read_to_end(s)
    assert sum(len(c[1]) for c in rest) <= 200_000
    # without stdin, the command reads /dev/null
    n = await runtime.exec(
        "box", ["sh", "-c", "cat; readlink /proc/self/fd/0"], tty=False, stdin=False
    )
    sessions.append(n)
    assert joined(await read_to_end(n), 1) == b"/dev/null\n"
    assert await n.wait() == 0


async def test_exec_with_a_tty(runtime: ProcessRuntime, sessions: list[StdioSession]) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec(
        "box", ["sh", "-c", 'tty; echo "$TERM"; stty size; read x; stty size'], tty=True, stdin=True
    )
    sessions.append(s)
    await read_until(s, re.compile(rb"/dev/pts/\d+\r\nxterm\r\n24 80\r\n"))
    await s.resize(50, 132)
    await s.write(b"\n")
    await read_until(s, b"50 132\r\n")
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 0
    await read_to_end(s)


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
async def test_exec_of_a_missing_command_is_127(
    runtime: ProcessRuntime, sessions: list[StdioSession], tty: bool
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec("box", ["no-such-command-x"], tty=tty, stdin=False)
    sessions.append(s)
    chunks = await read_to_end(s)
    assert await s.wait() == 127
    message = b'neuro: cannot run "no-such-command-x": No such file or directory'
    assert message in joined(chunks, 1 if tty else 2)


async def test_exec_gets_the_jobs_env_cwd_and_cgroup(
    runtime: ProcessRuntime, tmp_path: Path, cgroup_parent: str, sessions: list[StdioSession]
) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    await runtime.start(
        spec(
            "envjob",
            ["sleep", "60"],
            env={"FOO": "from-job", "BAR": "x"},
            working_dir=str(wd),
            memory=256 << 20,
        )
    )
    s = await runtime.exec(
        "envjob",
        ["sh", "-c", 'echo "$FOO $BAR"; pwd; cat /proc/self/cgroup'],
        tty=False,
        stdin=False,
        env={"BAR": "from-exec"},
    )
    sessions.append(s)
    lines = joined(await read_to_end(s), 1).decode().splitlines()
    assert await s.wait() == 0
    assert lines[0] == "from-job from-exec"
    assert lines[1] == str(wd)
    from neuro_server.runtime import cgroups

    if cgroups.probe()[0] == "v1":
        mine = {line.split(":")[1]: line.split(":")[2] for line in lines[2:]}
        assert mine["memory"] == f"/{cgroup_parent}/envjob"
        assert any(
            k.split(",")[0] in ("cpu", "cpuacct") and v == f"/{cgroup_parent}/envjob"
            for k, v in mine.items()
        )


async def test_exec_close_kills_and_reaps_it(
    runtime: ProcessRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    before = open_fds()
    s = await runtime.exec(
        "box", ["sh", "-c", "sleep 61 & echo $!; sleep 62"], tty=False, stdin=False
    )
    got = await read_until(s, b"\n")
    child = int(got)
    pid = s.pid  # type: ignore[attr-defined]
    assert pid > 0 and Path(f"/proc/{pid}").exists()
    await s.close()
    assert await s.read() is None
    await eventually(lambda: dead(pid) and dead(child))
    assert open_fds() == before
    assert (await runtime.inspect("box")).state is State.RUNNING  # the job goes on


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connect_port_to_an_http_server(runtime: ProcessRuntime, tmp_path: Path) -> None:
    wd = tmp_path / "site"
    wd.mkdir()
    (wd / "hello.txt").write_text("hello from the job\n")
    port = _free_port()
    argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    await runtime.start(spec("web", argv, working_dir=str(wd)))

    async def connected() -> tuple[Any, Any]:
        while True:
            try:
                return await runtime.connect_port("web", port)
            except RuntimeError_ as e:
                assert e.reason == "PortNotListening"
                await asyncio.sleep(0.02)

    reader, writer = await asyncio.wait_for(connected(), TIMEOUT)
    try:
        writer.write(b"GET /hello.txt HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    assert response.startswith(b"HTTP/1.0 200") and response.endswith(b"hello from the job\n")
    await runtime.stop("web", grace=2)
    await runtime.wait("web")


async def test_connect_port_reaches_only_the_jobs_own_listeners(runtime: ProcessRuntime) -> None:
    """Jobs share the host's network: a port something else listens on (here the test, as a
    host service or another user's job would) is not the job's to forward, on either family;
    the job's own, on IPv4 or IPv6, is."""
    with socket.socket() as host4, socket.socket(socket.AF_INET6) as host6:
        host4.bind(("127.0.0.1", 0))
        host4.listen()
        host6.bind(("::1", 0))
        host6.listen()
        await runtime.start(spec("quiet", ["sleep", "60"]))
        for port in (host4.getsockname()[1], host6.getsockname()[1]):
            with pytest.raises(
                RuntimeError_,
                match=f"nothing listens on port {port} in job quiet .no process of the job",
            ) as e:
                await runtime.connect_port("quiet", port)
            assert e.value.reason == "PortNotListening"
    port = _free_port()
    # (a one-shot server, as `nc -l` is: its listener is gone once it accepted)
    serve = (
        f"import socket\ns=socket.socket(socket.AF_INET6)\ns.bind(('::1',{port}))\n"
        "s.listen()\nprint('up',flush=True)\nc,_=s.accept()\ns.close()\nc.sendall(b'v6')"
    )
    await runtime.start(spec("six", [PY, "-c", serve]))
    await eventually(lambda: b"up" in output(runtime, "six"))
    reader, writer = await runtime.connect_port("six", port)
    try:
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b"v6"
    finally:
        writer.close()
    for job in ("quiet", "six"):
        await runtime.stop(job, grace=0)
        await runtime.wait(job)


async def test_connect_port_refusals(runtime: ProcessRuntime) -> None:
    await runtime.start(spec("quiet", ["sleep", "60"]))
    port = _free_port()
    with pytest.raises(RuntimeError_, match=f"nothing listens on port {port} in job quiet") as e:
        await runtime.connect_port("quiet", port)
    assert e.value.reason == "PortNotListening"
    for bad in (0, 65536, -1):
        with pytest.raises(RuntimeError_) as e:
            await runtime.connect_port("quiet", bad)
        assert e.value.reason == "BadRequest"
    await runtime.stop("quiet", grace=0)
    await runtime.wait("quiet")
    with pytest.raises(RuntimeError_) as e:
        await runtime.connect_port("quiet", port)
    assert e.value.reason == "NotRunning"


# -- telemetry -----------------------------------------------------------------------------


async def test_stats_memory_of_a_hungry_job(runtime: ProcessRuntime) -> None:
    code = "import time; b = b'x' * (200 << 20); print('ready', flush=True); time.sleep(60)"
    await runtime.start(spec("hungry", [PY, "-c", code], memory=512 << 20))
    await eventually(lambda: b"ready" in output(runtime, "hungry"))
    t = await runtime.stats("hungry")
    assert t is not None
    assert 200 << 20 <= t.memory < 400 << 20, t
    await runtime.stop("hungry", grace=0)
    await runtime.wait("hungry")


async def test_stats_without_cgroups_from_the_process_tree(
    jobs_root: Path, cgroup_parent: str, tmp_path: Path
) -> None:
    (tmp_path / "none").mkdir()
    rt = ProcessRuntime(
        jobs_root, cgroup_parent=cgroup_parent, cgroup_root=str(tmp_path / "none"), nvml=False
    )
    code = "b = b'x' * (100 << 20)\nwhile True: pass"
    await rt.start(spec("tree", ["sh", "-c", f'{PY} -c "{code}"; true']))
    await eventually(lambda: (_rss_of_tree(rt, "tree") or 0) > 100 << 20)
    t = await rt.stats("tree")
    assert t is not None
    assert 0.3 <= t.cpu <= 1.3, t  # one busy process (shared with other tests' jobs)
    assert t.memory >= 100 << 20
    await rt.stop("tree", grace=0)
    await rt.wait("tree")


def _rss_of_tree(rt: ProcessRuntime, job_id: str) -> int | None:
    from neuro_server.runtime import telemetry

    sup = read_json(str(rt.root / job_id / SUPERVISOR))
    if sup is None:
        return None
    return telemetry.tree_usage(telemetry.tree_pids(int(sup["pid"])))[1]


class FakeNvml(types.SimpleNamespace):
    """The part of pynvml's API that telemetry uses, over made-up devices."""

    class NVMLError(Exception):
        pass

    def __init__(self, devices: list[dict[str, Any]], *, fail_init: bool = False) -> None:
        super().__init__()
        self.devices = devices
        self.fail_init = fail_init
        self.inits = 0

    def nvmlInit(self) -> None:
        self.inits += 1
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def nvmlDeviceGetComputeRunningProcesses(self, h: dict[str, Any]) -> list[Any]:
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in h["procs"]]

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return types.SimpleNamespace(gpu=h["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        return types.SimpleNamespace(used=h["used"], total=80 << 30, free=0)


async def test_stats_gpu_through_a_fake_nvml(jobs_root: Path, cgroup_parent: str) -> None:
    devices: list[dict[str, Any]] = []
    fake = FakeNvml(devices)
    rt = ProcessRuntime(jobs_root, cgroup_parent=cgroup_parent, nvml=fake, stats_interval=0.01)
    await rt.start(spec("gpu", ["sh", "-c", "sleep 60 & wait"]))
    await rt.start(spec("cpu", ["sleep", "60"]))
    gpu_pid = read_json(str(jobs_root / "gpu" / "started.json"))["pid"]  # type: ignore[index]
    child = await eventually(lambda: _children_of(gpu_pid))
    other = 999_999_999  # a pid of no job
    devices += [
        {"procs": [(gpu_pid, 1 << 30)], "util": 40, "used": 5 << 30},
        {"procs": [(other, 7 << 30)], "util": 90, "used": 7 << 30},
        # a process of the job whose memory NVML does not tell: the device's used memory
        {"procs": [(child, None), (other, 1 << 30)], "util": 61, "used": 3 << 30},
    ]
    t = await rt.stats("gpu")
    assert t is not None
    assert t.gpu_duty_cycle == 50  # the mean of its devices' 40 and 61
    assert t.gpu_memory == (1 << 30) + (3 << 30)
    c = await rt.stats("cpu")
    assert c is not None and c.gpu_duty_cycle is None and c.gpu_memory is None
    assert fake.inits == 1  # once per runtime

    broken = ProcessRuntime(
        jobs_root,
        cgroup_parent=cgroup_parent,
        nvml=FakeNvml(devices, fail_init=True),
        stats_interval=0.01,
    )
    b = await broken.stats("gpu")
    assert b is not None and b.gpu_duty_cycle is None and b.gpu_memory is None
    for job in ("gpu", "cpu"):
        await rt.stop(job, grace=0)
        await rt.wait(job)


def _children_of(pid: int) -> int | None:
    import psutil

    children = psutil.Process(pid).children()
    return children[0].pid if children else None


async def test_nvml_absent_or_without_driver_means_no_gpu_figures() -> None:
    from neuro_server.runtime.telemetry import Nvml

    # pynvml absent, or present without a driver, or this process uses no GPU: no figures
    assert Nvml().usage({os.getpid()}) == (None, None)
    assert Nvml(False).usage({os.getpid()}) == (None, None)
    assert Nvml(FakeNvml([])).usage(set()) == (None, None)


# -- signals -------------------------------------------------------------------------------


async def test_signal_through_the_control_socket(runtime: ProcessRuntime) -> None:
    script = "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.02; done"
    await runtime.start(spec("sig", ["sh", "-c", script]))
    await eventually(lambda: b"ready" in output(runtime, "sig"))
    await runtime.signal("sig", signal.SIGUSR1)
    await eventually(lambda: b"got-usr1" in output(runtime, "sig"))
    with pytest.raises(RuntimeError_):
        await runtime.signal("sig", 0)
    await runtime.signal("sig", signal.SIGKILL)
    assert (await runtime.wait("sig")).exit_code == 137
    await runtime.signal("sig", signal.SIGUSR1)  # ended: nothing happens
