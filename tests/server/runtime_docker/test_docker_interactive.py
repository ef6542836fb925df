"""The docker runtime's interactive side against a real engine: TTY jobs, attach (several
clients, replay with no gap or duplicate), exec, resize, ports and telemetry."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from neuro_server.runtime.base import RuntimeError_, State, StdioSession
from neuro_server.runtime.docker import DockerRuntime
from tests.server.runtime_docker.conftest import (
    TIMEOUT,
    eventually,
    make_runtime,
    output,
    skip_without_engine,
    spec,
    start_in_a_server_process,
)

skip_without_engine()


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


async def resize_until_seen(resize, session: StdioSession, h: int, w: int) -> None:  # type: ignore[no-untyped-def]
    """Resize, and again every 2 s, until the job's WINCH trap prints the new size: under load
    the engine may apply a resize before the container's terminal settles."""
    needle = b"WINCH\r\n%d %d\r\n" % (h, w)
    got = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while needle not in got:
        assert loop.time() < deadline, f"the job never saw {h}x{w}: {got!r}"
        await resize(h, w)
        retry = loop.time() + 2
        while needle not in got and loop.time() < retry:
            try:
                chunk = await asyncio.wait_for(session.read(), retry - loop.time())
            except asyncio.TimeoutError:
                break
            assert chunk is not None, f"ended before {needle!r}: {got!r}"
            got += chunk[1]


# busybox ash asks the terminal where the cursor is right after its prompt
PROMPT = re.compile(rb"[#$] (\x1b\[6n)?$")


async def prompted(session: StdioSession) -> bytes:
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


# -- TTY jobs and attach -------------------------------------------------------------------


async def test_tty_job_attach_and_type_into_sh(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("sh", ["sh"], tty=True))
    s = await runtime.attach("sh", stdin=True, stdout=True, stderr=True, logs=True)
    sessions.append(s)
    await prompted(s)
    await s.write(b"echo $((6*7)); tty; stty size\n")
    await read_until(s, re.compile(rb"\r\n42\r\n/dev/pts/\d+\r\n24 80\r\n"))
    assert b"42\r\n" in output(runtime, "sh")  # the log has it
    await s.write(b"exit 4\n")
    assert (await asyncio.wait_for(runtime.wait("sh"), TIMEOUT)).exit_code == 4
    await read_to_end(s)
    assert s.exit_code == 4  # type: ignore[attr-defined]


async def test_tty_resize_sends_winch_and_stty_sees_it(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    script = "trap 'echo WINCH; stty size' WINCH; stty size; while :; do sleep 0.02; done"
    await runtime.start(spec("winch", ["sh", "-c", script], tty=True))
    s = await runtime.attach("winch", stdin=False, stdout=True, stderr=False, logs=True)
    sessions.append(s)
    # the first `stty size` (the engine may apply the initial 24x80 a moment after the start)
    await read_until(s, b"\r\n")
    await resize_until_seen(lambda h, w: runtime.resize("winch", h, w), s, 33, 101)
    await resize_until_seen(s.resize, s, 40, 120)  # through the attached session too
    await runtime.stop("winch", grace=0)
    await runtime.wait("winch")


async def test_tty_eof_ends_cat(runtime: DockerRuntime, sessions: list[StdioSession]) -> None:
    await runtime.start(spec("cat", ["cat"], tty=True))
    s = await runtime.attach("cat", stdin=True, stdout=True, stderr=True)
    sessions.append(s)
    await s.write(b"abc\n")
    await read_until(s, b"abc\r\nabc\r\n")  # the terminal's echo, then cat's
    await s.close_stdin()
    assert (await asyncio.wait_for(runtime.wait("cat"), TIMEOUT)).exit_code == 0
    await read_to_end(s)
    assert s.exit_code == 0  # type: ignore[attr-defined]


async def test_two_clients_and_one_detaches(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("two", ["sh"], tty=True))
    a = await runtime.attach("two", stdin=True, stdout=True, stderr=True, logs=True)
    b = await runtime.attach("two", stdin=False, stdout=True, stderr=True)
    sessions += [a, b]
    await prompted(a)
    await a.write(b"echo $((100+1))\n")
    await read_until(a, re.compile(rb"\r\n101\r\n.*[#$] "))
    await read_until(b, re.compile(rb"\r\n101\r\n.*[#$] "))
    await a.close()  # detach: the job goes on
    assert await a.read() is None
    c = await runtime.attach("two", stdin=True, stdout=True, stderr=True)
    sessions.append(c)
    await c.write(b"echo $((200+2))\n")
    await read_until(b, b"\r\n202\r\n")
    await read_until(c, b"\r\n202\r\n")
    assert runtime.inspect("two").state is State.RUNNING
    await c.write(b"exit\n")
    assert (await asyncio.wait_for(runtime.wait("two"), TIMEOUT)).exit_code == 0
    await read_to_end(b)  # ends with the job


async def test_attach_with_logs_gets_everything_once(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    script = 'i=0; while :; do echo "$i"; echo "e$i" >&2; i=$((i+1)); usleep 2000; done'
    await runtime.start(spec("count", ["sh", "-c", script]))
    await eventually(lambda: b"\n50\n" in output(runtime, "count"))
    out = await runtime.attach("count", stdin=False, stdout=True, stderr=False, logs=True)
    err = await runtime.attach("count", stdin=False, stdout=False, stderr=True)
    sessions += [out, err]
    first_live = len(output(runtime, "count").split(b"\n")) // 2  # lines so far, about
    got = await read_until(out, f"\n{first_live + 100}\n".encode())
    n = int(got.split(b"\n")[-2])
    assert got == "".join(f"{i}\n" for i in range(n + 1)).encode()  # no gap, no duplicate
    live = await read_until(err, f"\ne{first_live + 100}\n".encode())
    numbers = [int(line[1:]) for line in live.split(b"\n")[:-1]]
    assert numbers and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert numbers[0] > 10  # live only: not from the start
    assert runtime.log_size("count") == len(output(runtime, "count")) > 0
    await runtime.stop("count", grace=0)
    await runtime.wait("count")


async def test_attach_refusals(runtime: DockerRuntime) -> None:
    await runtime.start(spec("plain", ["sleep", "60"]))
    with pytest.raises(RuntimeError_, match="not started with a tty") as e:
        await runtime.attach("plain", stdin=True, stdout=True, stderr=True)
    assert e.value.reason == "BadRequest"
    with pytest.raises(RuntimeError_) as e:
        await runtime.attach("nothing", stdin=False, stdout=True, stderr=True)
    assert e.value.reason == "NotFound"
    s = await runtime.attach("plain", stdin=False, stdout=True, stderr=True)
    await s.write(b"ignored")  # no stdin: a no-op
    await runtime.resize("plain", 10, 10)  # no tty: a no-op
    await runtime.stop("plain", grace=0)
    await runtime.wait("plain")
    assert await read_to_end(s) == []
    await s.close()
    with pytest.raises(RuntimeError_) as e:
        await runtime.attach("plain", stdin=False, stdout=True, stderr=True)
    assert e.value.reason == "NotRunning"
    with pytest.raises(RuntimeError_):
        await runtime.resize("plain", 10, 10)


async def test_attach_type_and_signal_after_a_server_restart(
    jobs_root: Path, instance: str, sessions: list[StdioSession]
) -> None:
    script = "trap 'echo got-usr1' USR1; echo ready; while read line; do echo \"[$line]\"; done"
    start_in_a_server_process(jobs_root, instance, spec("later", ["sh", "-c", script], tty=True))
    rt = make_runtime(jobs_root, instance)  # the restarted server
    try:
        assert rt.inspect("later").state is State.RUNNING
        s = await rt.attach("later", stdin=True, stdout=True, stderr=True, logs=True)
        sessions.append(s)
        await read_until(s, b"ready\r\n")
        await s.write(b"hello\n")
        await read_until(s, b"[hello]\r\n")
        await s.write(b"again\n")
        await read_until(s, b"[again]\r\n")
        await rt.signal("later", signal.SIGUSR1)
        await read_until(s, b"got-usr1\r\n")
        await s.close_stdin()  # `read` gets EOF: the loop ends
        assert (await asyncio.wait_for(rt.wait("later"), TIMEOUT)).exit_code == 0
        log = output(rt, "later")
        assert log.count(b"ready\r\n") == 1 and log.count(b"[hello]\r\n") == 1
        assert log.count(b"[again]\r\n") == 1
    finally:
        for s in sessions:
            await s.close()
        await rt.close()


# -- exec ----------------------------------------------------------------------------------


async def test_exec_exit_code_and_separate_streams(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec(
        "box", ["sh", "-c", "echo out; echo err >&2; exit 3"], tty=False, stdin=False
    )
    sessions.append(s)
    chunks = await read_to_end(s)
    assert joined(chunks, 1) == b"out\n" and joined(chunks, 2) == b"err\n"
    assert await s.wait() == 3
    assert b"out" not in output(runtime, "box")  # exec output is not the job's


async def test_exec_stdin_pipe_then_eof(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec("box", ["cat"], tty=False, stdin=True)
    sessions.append(s)
    await s.write(b"hello\n")
    assert await read_until(s, b"hello\n") == b"hello\n"
    await s.write(b"x" * 200_000)  # more than a pipe holds
    await read_until(s, b"x" * 1000)
    await s.close_stdin()
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 0
    rest = await read_to_end(s)
    assert sum(len(c[1]) for c in rest) <= 200_000
    # without stdin, the command reads nothing
    n = await runtime.exec("box", ["sh", "-c", "cat; echo done"], tty=False, stdin=False)
    sessions.append(n)
    assert joined(await read_to_end(n), 1) == b"done\n"
    assert await n.wait() == 0


async def test_exec_with_a_tty(runtime: DockerRuntime, sessions: list[StdioSession]) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    script = "trap 'stty size; exit 0' WINCH; tty; echo \"$TERM\"; stty size; while :; do sleep 0.05; done"
    s = await runtime.exec("box", ["sh", "-c", script], tty=True, stdin=True)
    sessions.append(s)
    await read_until(s, re.compile(rb"/dev/pts/\d+\r\nxterm\r\n24 80\r\n"))
    await s.resize(50, 132)  # the job sees WINCH
    try:
        await asyncio.wait_for(read_until(s, b"50 132\r\n"), 3)
    except TimeoutError:  # Podman applies exec resizes on its own time: once more
        await s.resize(51, 132)
        await read_until(s, re.compile(rb"5[01] 132\r\n"))
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 0
    await read_to_end(s)
    typed = await runtime.exec("box", ["head", "-n", "1"], tty=True, stdin=True)
    sessions.append(typed)
    await typed.write(b"typed\n")
    await read_until(typed, b"typed\r\ntyped\r\n")  # the terminal's echo, then head's
    assert await asyncio.wait_for(typed.wait(), TIMEOUT) == 0


async def test_exec_refused_for_finished_and_unknown_jobs(runtime: DockerRuntime) -> None:
    await runtime.start(spec("done", ["true"]))
    await runtime.wait("done")
    with pytest.raises(RuntimeError_) as e:
        await runtime.exec("done", ["true"], tty=False, stdin=False)
    assert e.value.reason == "NotRunning"
    with pytest.raises(RuntimeError_) as e:
        await runtime.exec("nope", ["true"], tty=False, stdin=False)
    assert e.value.reason == "NotFound"


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
async def test_exec_of_a_missing_command_is_127(
    runtime: DockerRuntime, sessions: list[StdioSession], tty: bool
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec("box", ["no-such-command-x"], tty=tty, stdin=False)
    sessions.append(s)
    chunks = await read_to_end(s)
    assert await s.wait() == 127
    said = joined(chunks, 1 if tty else 2)
    assert b"no-such-command-x" in said and b"not found" in said
    x = await runtime.exec("box", ["/etc/passwd"], tty=tty, stdin=False)
    sessions.append(x)
    await read_to_end(x)
    assert await x.wait() == 126


async def test_exec_gets_the_jobs_env_and_cwd(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(
        spec("envjob", ["sleep", "60"], env={"FOO": "from-job", "BAR": "x"}, working_dir="/tmp")
    )
    s = await runtime.exec(
        "envjob",
        ["sh", "-c", 'echo "$FOO $BAR"; pwd'],
        tty=False,
        stdin=False,
        env={"BAR": "from-exec"},
    )
    sessions.append(s)
    lines = joined(await read_to_end(s), 1).decode().splitlines()
    assert await s.wait() == 0
    assert lines == ["from-job from-exec", "/tmp"]


async def test_exec_close_kills_it_and_its_children(
    runtime: DockerRuntime, sessions: list[StdioSession]
) -> None:
    await runtime.start(spec("box", ["sleep", "60"]))
    s = await runtime.exec(
        "box", ["sh", "-c", "sleep 61 & echo $!; sleep 62"], tty=False, stdin=False
    )
    await read_until(s, b"\n")
    pid = s.pid  # type: ignore[attr-defined]
    assert pid > 0 and Path(f"/proc/{pid}").exists()
    await s.close()
    assert await s.read() is None

    check = await runtime.exec("box", ["ps"], tty=False, stdin=False)
    sessions.append(check)
    listing = joined(await read_to_end(check), 1)
    assert b"sleep 61" not in listing and b"sleep 62" not in listing
    assert runtime.inspect("box").state is State.RUNNING  # the job goes on


async def test_exec_ends_with_the_job(runtime: DockerRuntime, sessions: list[StdioSession]) -> None:
    script = "trap 'exit 0' USR1; while :; do sleep 0.02; done"
    await runtime.start(spec("short", ["sh", "-c", script]))
    s = await runtime.exec("short", ["sleep", "60"], tty=True, stdin=True)
    sessions.append(s)
    await runtime.signal("short", signal.SIGUSR1)
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 137
    await read_to_end(s)


# -- ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "exec"])
async def test_connect_port_to_an_http_server(runtime: DockerRuntime, mode: str) -> None:
    runtime.port_connect = mode  # exec: through a relay in the container (rootless engines)
    await runtime.start(spec("web", ["httpd", "-f", "-p", "8080", "-h", "/www"]))

    async def connected() -> tuple[Any, Any]:
        while True:
            try:
                return await runtime.connect_port("web", 8080)
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
    assert response.startswith(b"HTTP/1.") and b" 200 " in response.split(b"\r\n")[0]
    assert response.endswith(b"hello from the job\n")
    await runtime.stop("web", grace=2)
    await runtime.wait("web")


@pytest.mark.parametrize("mode", ["auto", "exec"])
async def test_connect_port_refusals(runtime: DockerRuntime, mode: str) -> None:
    runtime.port_connect = mode
    await runtime.start(spec("quiet", ["sleep", "60"]))
    with pytest.raises(RuntimeError_, match="nothing listens on port 8081 in job quiet") as e:
        await runtime.connect_port("quiet", 8081)
    assert e.value.reason == "PortNotListening"
    for bad in (0, 65536, -1):
        with pytest.raises(RuntimeError_) as e:
            await runtime.connect_port("quiet", bad)
        assert e.value.reason == "BadRequest"
    await runtime.stop("quiet", grace=0)
    await runtime.wait("quiet")
    with pytest.raises(RuntimeError_) as e:
        await runtime.connect_port("quiet", 8081)
    assert e.value.reason == "NotRunning"


# -- telemetry -----------------------------------------------------------------------------


async def test_stats_cpu_of_a_busy_loop_limited_to_half_a_core(runtime: DockerRuntime) -> None:
    await runtime.start(spec("busy", ["sh", "-c", "while :; do :; done"], cpu=0.5))
    first = await runtime.stats("busy")
    assert first is not None and 0.0 <= first.cpu <= 1.0
    await asyncio.sleep(1.0)  # a measurement over time, not a wait for a condition
    t = await runtime.stats("busy")
    assert t is not None
    assert 0.3 <= t.cpu <= 0.7, t
    assert t.gpu_duty_cycle is None and t.gpu_memory is None
    await runtime.stop("busy", grace=0)
    await runtime.wait("busy")
    assert await runtime.stats("busy") is None
    assert await runtime.stats("never") is None


async def test_stats_memory_of_a_hungry_job(runtime: DockerRuntime) -> None:
    # 48 MiB in /dev/shm (a tmpfs: memory of the job's cgroup)
    script = "dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>/dev/null; echo ready; sleep 60"
    await runtime.start(spec("hungry", ["sh", "-c", script], memory=256 << 20))
    await eventually(lambda: b"ready" in output(runtime, "hungry"))
    t = await runtime.stats("hungry")
    assert t is not None
    assert 48 << 20 <= t.memory < 200 << 20, t
    await runtime.stop("hungry", grace=0)
    await runtime.wait("hungry")
