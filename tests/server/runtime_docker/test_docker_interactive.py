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
            except TimeoutError:
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


async def test_attach_type_and_signal_after_a_server_restart(
    jobs_root: Path, instance: str, sessions: list[StdioSession]
) -> None:
    script = "trap 'echo got-usr1' USR1; echo ready; while read line; do echo \"[$line]\"; done"
    start_in_a_server_process(jobs_root, instance, spec("later", ["sh", "-c", script], tty=True))
    rt = make_runtime(jobs_root, instance)  # the restarted server
    try:
        assert (await rt.inspect("later")).state is State.RUNNING
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
