"""The runtime contract, interactive side: TTY jobs, attach (several clients, replay with no gap
or duplicate), exec beside a job, resize, ports and telemetry.  Every runtime
(conftest.RUNTIMES) runs these; those that need terminals or limits skip where there are none."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from neuro_server.runtime.base import RuntimeError_, State, StdioSession
from tests.server.runtime_contract.conftest import (
    HELLO,
    LIMITS,
    TIMEOUT,
    TTY,
    Harness,
    eventually,
    free_port,
)

# an interactive sh's prompt (busybox ash asks the terminal where the cursor is right after it)
PROMPT = re.compile(rb"[#$] (\x1b\[6n)?$")


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


async def read_to_end(session: StdioSession) -> list[tuple[int, bytes]]:
    async def go() -> list[tuple[int, bytes]]:
        chunks = []
        while (chunk := await session.read()) is not None:
            chunks.append(chunk)
        return chunks

    return await asyncio.wait_for(go(), TIMEOUT)


def joined(chunks: list[tuple[int, bytes]], stream: int) -> bytes:
    return b"".join(data for s, data in chunks if s == stream)


async def resize_until_seen(
    resize: Callable[[int, int], Awaitable[None]], session: StdioSession, h: int, w: int
) -> None:
    """Resize, and again every 2 s, until the job's WINCH trap prints the new size: under load
    an engine may apply a resize before the container's terminal settles."""
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
            except TimeoutError:
                break
            assert chunk is not None, f"ended before {needle!r}: {got!r}"
            got += chunk[1]


# -- TTY jobs and attach -------------------------------------------------------------------


async def test_contract_tty_job_attach_and_type_into_sh(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    rt.needs(TTY)
    await rt.runtime.start(rt.spec("sh", ["sh"], tty=True))
    s = await rt.runtime.attach("sh", stdin=True, stdout=True, stderr=True, logs=True)
    sessions.append(s)
    await read_until(s, PROMPT)
    await s.write(b"echo $((6*7)); tty; stty size\n")
    await read_until(s, re.compile(rb"\r\n42\r\n/dev/pts/\d+\r\n24 80\r\n"))
    assert b"42\r\n" in rt.output("sh")  # the log has it
    await s.write(b"exit 4\n")
    assert (await asyncio.wait_for(rt.runtime.wait("sh"), TIMEOUT)).exit_code == 4
    await read_to_end(s)
    assert s.exit_code == 4  # type: ignore[attr-defined]


async def test_contract_tty_resize_sends_winch_and_stty_sees_it(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    rt.needs(TTY)
    script = "trap 'echo WINCH; stty size' WINCH; stty size; while :; do sleep 0.02; done"
    await rt.runtime.start(rt.spec("winch", ["sh", "-c", script], tty=True))
    s = await rt.runtime.attach("winch", stdin=False, stdout=True, stderr=False, logs=True)
    sessions.append(s)
    await read_until(s, b"\r\n")  # the first `stty size`
    await resize_until_seen(lambda h, w: rt.runtime.resize("winch", h, w), s, 33, 101)
    await resize_until_seen(s.resize, s, 40, 120)  # through the attached session too
    await rt.runtime.stop("winch", grace=0)
    await rt.runtime.wait("winch")


async def test_contract_tty_eof_ends_cat(rt: Harness, sessions: list[StdioSession]) -> None:
    rt.needs(TTY)
    await rt.runtime.start(rt.spec("cat", ["cat"], tty=True))
    s = await rt.runtime.attach("cat", stdin=True, stdout=True, stderr=True)
    sessions.append(s)
    await s.write(b"abc\n")
    await read_until(s, b"abc\r\nabc\r\n")  # the terminal's echo, then cat's
    await s.close_stdin()
    assert (await asyncio.wait_for(rt.runtime.wait("cat"), TIMEOUT)).exit_code == 0
    await read_to_end(s)
    assert s.exit_code == 0  # type: ignore[attr-defined]


async def test_contract_two_clients_and_one_detaches(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    rt.needs(TTY)
    await rt.runtime.start(rt.spec("two", ["sh"], tty=True))
    a = await rt.runtime.attach("two", stdin=True, stdout=True, stderr=True, logs=True)
    b = await rt.runtime.attach("two", stdin=False, stdout=True, stderr=True)
    sessions += [a, b]
    await read_until(a, PROMPT)
    await a.write(b"echo $((100+1))\n")
    await read_until(a, re.compile(rb"\r\n101\r\n.*[#$] "))
    await read_until(b, re.compile(rb"\r\n101\r\n.*[#$] "))  # the next prompt: c may type
    await a.close()  # detach: the job goes on
    assert await a.read() is None
    c = await rt.runtime.attach("two", stdin=True, stdout=True, stderr=True)
    sessions.append(c)
    await c.write(b"echo $((200+2))\n")
    await read_until(b, b"\r\n202\r\n")
    await read_until(c, b"\r\n202\r\n")
    assert (await rt.runtime.inspect("two")).state is State.RUNNING
    await c.write(b"exit\n")
    assert (await asyncio.wait_for(rt.runtime.wait("two"), TIMEOUT)).exit_code == 0
    await read_to_end(b)  # ends with the job


async def test_contract_attach_with_logs_gets_everything_once(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    script = 'i=0; while :; do echo "$i"; echo "e$i" >&2; i=$((i+1)); sleep 0.002; done'
    await rt.runtime.start(rt.spec("count", ["sh", "-c", script]))
    await eventually(lambda: b"\n50\n" in rt.output("count"))
    out = await rt.runtime.attach("count", stdin=False, stdout=True, stderr=False, logs=True)
    err = await rt.runtime.attach("count", stdin=False, stdout=False, stderr=True)
    sessions += [out, err]
    first_live = len(rt.output("count").split(b"\n")) // 2  # lines so far, about
    got = await read_until(out, f"\n{first_live + 100}\n".encode())
    n = int(got.split(b"\n")[-2])
    assert got == "".join(f"{i}\n" for i in range(n + 1)).encode()  # no gap, no duplicate
    live = await read_until(err, f"\ne{first_live + 100}\n".encode())
    numbers = [int(line[1:]) for line in live.split(b"\n")[:-1]]
    assert numbers and numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert numbers[0] > 10  # live only: not from the start
    assert await rt.runtime.log_size("count") == len(rt.output("count")) > 0
    await rt.runtime.stop("count", grace=0)
    await rt.runtime.wait("count")


async def test_contract_attach_refusals(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("plain", ["sleep", "60"]))
    with pytest.raises(RuntimeError_, match="not started with a tty") as e:
        await rt.runtime.attach("plain", stdin=True, stdout=True, stderr=True)
    assert e.value.reason == "BadRequest"
    with pytest.raises(RuntimeError_) as e:
        await rt.runtime.attach("nothing", stdin=False, stdout=True, stderr=True)
    assert e.value.reason == "NotFound"
    s = await rt.runtime.attach("plain", stdin=False, stdout=True, stderr=True)
    await s.write(b"ignored")  # no stdin: a no-op
    await rt.runtime.resize("plain", 10, 10)  # no tty: a no-op
    await rt.runtime.stop("plain", grace=0)
    await rt.runtime.wait("plain")
    assert await read_to_end(s) == []
    await s.close()
    with pytest.raises(RuntimeError_) as e:
        await rt.runtime.attach("plain", stdin=False, stdout=True, stderr=True)
    assert e.value.reason == "NotRunning"
    with pytest.raises(RuntimeError_):
        await rt.runtime.resize("plain", 10, 10)


# -- exec ----------------------------------------------------------------------------------


async def test_contract_exec_exit_code_and_separate_streams(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    await rt.runtime.start(rt.spec("box", ["sleep", "60"]))
    s = await rt.runtime.exec(
        "box", ["sh", "-c", "echo out; echo err >&2; exit 3"], tty=False, stdin=False
    )
    sessions.append(s)
    chunks = await read_to_end(s)
    assert joined(chunks, 1) == b"out\n" and joined(chunks, 2) == b"err\n"
    assert await s.wait() == 3
    assert b"out" not in rt.output("box")  # exec output is not the job's


async def test_contract_exec_stdin_pipe_then_eof(rt: Harness, sessions: list[StdioSession]) -> None:
    await rt.runtime.start(rt.spec("box", ["sleep", "60"]))
    s = await rt.runtime.exec("box", ["cat"], tty=False, stdin=True)
    sessions.append(s)
    await s.write(b"hello\n")
    assert await read_until(s, b"hello\n") == b"hello\n"
    await s.write(b"x" * 200_000)  # more than a pipe holds: write waits, cat reads
    await read_until(s, b"x" * 1000)
    await s.close_stdin()
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 0
    rest = await read_to_end(s)
    assert sum(len(c[1]) for c in rest) <= 200_000


async def test_contract_exec_with_a_tty(rt: Harness, sessions: list[StdioSession]) -> None:
    rt.needs(TTY)
    await rt.runtime.start(rt.spec("box", ["sleep", "60"]))
    script = (
        "trap 'stty size; exit 0' WINCH; tty; echo \"$TERM\"; stty size; "
        "while :; do sleep 0.05; done"
    )
    s = await rt.runtime.exec("box", ["sh", "-c", script], tty=True, stdin=True)
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
    typed = await rt.runtime.exec("box", ["head", "-n", "1"], tty=True, stdin=True)
    sessions.append(typed)
    await typed.write(b"typed\n")
    await read_until(typed, b"typed\r\ntyped\r\n")  # the terminal's echo, then head's
    assert await asyncio.wait_for(typed.wait(), TIMEOUT) == 0


async def test_contract_exec_refused_for_finished_and_unknown_jobs(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("done", ["true"]))
    await rt.runtime.wait("done")
    with pytest.raises(RuntimeError_) as e:
        await rt.runtime.exec("done", ["true"], tty=False, stdin=False)
    assert e.value.reason == "NotRunning"
    with pytest.raises(RuntimeError_) as e:
        await rt.runtime.exec("nope", ["true"], tty=False, stdin=False)
    assert e.value.reason == "NotFound"


async def test_contract_exec_of_a_command_that_cannot_run(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    await rt.runtime.start(rt.spec("box", ["sleep", "60"]))
    s = await rt.runtime.exec("box", ["no-such-command-x"], tty=False, stdin=False)
    sessions.append(s)
    said = joined(await read_to_end(s), 2)
    assert await s.wait() == 127
    assert b"no-such-command-x" in said
    x = await rt.runtime.exec("box", ["/etc/passwd"], tty=False, stdin=False)
    sessions.append(x)
    await read_to_end(x)
    assert await x.wait() == 126


async def test_contract_exec_gets_the_jobs_env_and_cwd(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    await rt.runtime.start(
        rt.spec("envjob", ["sleep", "60"], env={"FOO": "from-job", "BAR": "x"}, working_dir="/tmp")
    )
    s = await rt.runtime.exec(
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


async def test_contract_exec_close_kills_it_and_its_children(
    rt: Harness, sessions: list[StdioSession]
) -> None:
    await rt.runtime.start(rt.spec("box", ["sleep", "60"]))
    s = await rt.runtime.exec(
        "box", ["sh", "-c", "sleep 61 & echo $!; sleep 62"], tty=False, stdin=False
    )
    got = await read_until(s, b"\n")
    await s.close()
    assert await s.read() is None

    child = int(got)

    async def gone() -> bool:  # (as the job sees its processes: its pid namespace's pids)
        check = await rt.runtime.exec("box", ["kill", "-0", str(child)], tty=False, stdin=False)
        sessions.append(check)
        await read_to_end(check)
        return await check.wait() != 0

    await eventually(gone)
    assert (await rt.runtime.inspect("box")).state is State.RUNNING  # the job goes on


async def test_contract_exec_ends_with_the_job(rt: Harness, sessions: list[StdioSession]) -> None:
    script = "trap 'exit 0' USR1; while :; do sleep 0.02; done"
    await rt.runtime.start(rt.spec("short", ["sh", "-c", script]))
    s = await rt.runtime.exec("short", ["sleep", "60"], tty=TTY in rt.traits, stdin=True)
    sessions.append(s)
    await rt.runtime.signal("short", signal.SIGUSR1)
    assert await asyncio.wait_for(s.wait(), TIMEOUT) == 137
    await read_to_end(s)


# -- ports ---------------------------------------------------------------------------------


async def test_contract_connect_port_to_an_http_server(rt: Harness) -> None:
    job, port = rt.web("web")
    await rt.runtime.start(job)

    async def connected() -> tuple[Any, Any]:
        while True:
            try:
                return await rt.runtime.connect_port("web", port)
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
    assert response.endswith(HELLO)
    await rt.runtime.stop("web", grace=2)
    await rt.runtime.wait("web")


async def test_contract_connect_port_refusals(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("quiet", ["sleep", "60"]))
    port = free_port()
    with pytest.raises(RuntimeError_, match=f"nothing listens on port {port} in job quiet") as e:
        await rt.runtime.connect_port("quiet", port)
    assert e.value.reason == "PortNotListening"
    for bad in (0, 65536, -1):
        with pytest.raises(RuntimeError_) as e:
            await rt.runtime.connect_port("quiet", bad)
        assert e.value.reason == "BadRequest"
    await rt.runtime.stop("quiet", grace=0)
    await rt.runtime.wait("quiet")
    with pytest.raises(RuntimeError_) as e:
        await rt.runtime.connect_port("quiet", port)
    assert e.value.reason == "NotRunning"


# -- telemetry -----------------------------------------------------------------------------


async def test_contract_stats_cpu_of_a_busy_loop_limited_to_half_a_core(rt: Harness) -> None:
    rt.needs(LIMITS)
    await rt.runtime.start(rt.spec("busy", ["sh", "-c", "while :; do :; done"], cpu=0.5))
    first = await rt.runtime.stats("busy")
    assert first is not None and 0.0 <= first.cpu <= 1.0
    await asyncio.sleep(1.0)  # a measurement over time, not a wait for a condition
    t = await rt.runtime.stats("busy")
    assert t is not None
    assert 0.3 <= t.cpu <= 0.7, t
    assert t.gpu_duty_cycle is None and t.gpu_memory is None  # no GPU here (no NVML)
    await rt.runtime.stop("busy", grace=0)
    await rt.runtime.wait("busy")
    assert await rt.runtime.stats("busy") is None
    assert await rt.runtime.stats("never") is None


async def test_contract_stats_of_a_running_job(rt: Harness) -> None:
    await rt.runtime.start(rt.spec("idle", ["sh", "-c", "while :; do sleep 0.05; done"]))
    t = await eventually(lambda: rt.runtime.stats("idle"))
    assert 0.0 <= t.cpu < 1.0 and t.memory > 0 and t.timestamp > 0
    await rt.runtime.stop("idle", grace=0)
    await rt.runtime.wait("idle")
    assert await rt.runtime.stats("idle") is None
