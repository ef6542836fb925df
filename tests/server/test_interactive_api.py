"""attach, exec (both protocol generations), resize, top, signals and port forwarding through
the real SDK against the in-process server with the process runtime (protocol.md 2.1, 4.1,
4.3, 4.4)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import psutil
import pytest
from yarl import URL

from neuro_sdk import (
    AuthorizationError,
    Client,
    IllegalArgumentError,
    JobStatus,
    RemoteImage,
    ResourceNotFound,
)
from neuro_sdk._jobs import StdStream
from neuro_server.handlers import exec as exec_handlers
from tests.server.conftest import Api

UBUNTU = RemoteImage.new_external_image("ubuntu")
TIMEOUT = 15.0

Start = Callable[..., Awaitable[str]]


# -- helpers -----------------------------------------------------------------------------------


async def until(pred: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``pred`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def read_until(
    stream: StdStream,
    needle: bytes | Callable[[bytes], bool],
    timeout: float = TIMEOUT,
    fileno: int | None = None,
) -> bytes:
    """Read output (of one fileno, or all) until ``needle`` is in it; the bytes read."""
    check = needle if callable(needle) else (lambda data: needle in data)
    got = b""

    async def loop() -> None:
        nonlocal got
        while not check(got):
            msg = await stream.read_out()
            if msg is None:
                pytest.fail(f"the stream ended before {needle!r}; got {got!r}")
            if fileno is None or msg.fileno == fileno:
                got += msg.data

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {needle!r}; got {got!r}")
    return got


async def read_all(stream: StdStream, timeout: float = TIMEOUT) -> dict[int, bytes]:
    """Everything until the stream ends, by fileno."""
    out: dict[int, bytes] = {1: b"", 2: b""}

    async def loop() -> None:
        while (msg := await stream.read_out()) is not None:
            out[msg.fileno] += msg.data

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        pytest.fail(f"the stream did not end; got {out!r}")
    return out


def marked(marker: str) -> list[psutil.Process]:
    """Live processes whose command line has ``marker``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and marker in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def gone(marker: str) -> bool:
    return not marked(marker)


def sleep_marker() -> tuple[str, str]:
    """A ``sleep`` argument no other process has: (the marker, the argument)."""
    digits = str(uuid.uuid4().int)[:12]
    return digits, f"100.{digits}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connections_to(port: int) -> list[Any]:
    return [
        c
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    ]


def monitoring(api: Api, job_id: str, path: str) -> str:
    return f"{api.url}/jobs/{job_id}/{path}"


async def raw_websocket(
    api: Api,
    job_id: str,
    path: str,
    query: dict[str, str],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket handshake on a plain TCP connection, so that a test can drop it without a
    close frame (a client that crashed or lost its network)."""
    url = URL(monitoring(api, job_id, path)).with_query(query)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v2.channels.neu.ro\r\n"
        f"Authorization: Bearer {api.tokens['alice']}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def handshake_error(api: Api, url: str, **kw: Any) -> aiohttp.WSServerHandshakeError:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        async with api.session.ws_connect(url, headers=api.headers(), **kw):
            pass
    return info.value


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def client(api: Api) -> AsyncIterator[Client]:
    async with Client(api.url, api.tokens["alice"]) as c:
        yield c


@pytest.fixture
async def start(api: Api) -> AsyncIterator[Start]:
    """``await start(command, tty=False, user="alice")``: a running job's id; all are killed
    when the test ends."""
    clients: dict[str, Client] = {}
    started: list[tuple[Client, str]] = []

    async def run(command: str, *, tty: bool = False, user: str = "alice") -> str:
        if user not in clients:
            clients[user] = Client(api.url, api.tokens[user])
            await clients[user].__aenter__()
        c = clients[user]
        job = await c.jobs.start(image=UBUNTU, preset_name="cpu-small", command=command, tty=tty)
        started.append((c, job.id))

        async def running() -> bool:
            status = (await c.jobs.status(job.id)).status
            assert status in (JobStatus.PENDING, JobStatus.RUNNING), status
            return status == JobStatus.RUNNING

        await until(running, f"job {job.id} to run")
        return job.id

    yield run
    for c, job_id in started:
        with contextlib.suppress(Exception):
            await c.jobs.kill(job_id)
    for c in clients.values():
        await c.__aexit__(None, None, None)


async def finished_job(client: Client) -> str:
    job = await client.jobs.start(image=UBUNTU, preset_name="cpu-small", command="true")
    await until(lambda: _finished(client, job.id), f"job {job.id} to finish")
    return job.id


async def _finished(client: Client, job_id: str) -> bool:
    return (await client.jobs.status(job_id)).status.is_finished


# -- 1. the legacy calls (SDK 20.x-21.x) -------------------------------------------------------


async def test_legacy_exec_create_start_inspect_resize(client: Client, start: Start) -> None:
    job = await start("sleep 60")
    script = "echo ready; read line; stty size; echo got=$line; exit 3"
    exec_id = await client.jobs.exec_create(job, ["sh", "-c", script], tty=True)
    info = await client.jobs.exec_inspect(job, exec_id)
    assert (info.id, info.job_id, info.running, info.exit_code) == (exec_id, job, False, None)
    assert info.tty and info.entrypoint == "sh"

    async with client.jobs.exec_start(job, exec_id) as stream:
        await read_until(stream, b"ready")
        info = await client.jobs.exec_inspect(job, exec_id)
        assert info.running and info.exit_code is None
        await client.jobs.exec_resize(job, exec_id, w=123, h=45)
        await stream.resize(46, 124)  # the legacy StdStream.resize is exec_resize
        await stream.write_in(b"hello\n")  # legacy framing: raw stdin bytes, no prefix
        out = await read_until(stream, b"got=hello")
        assert b"46 124" in out
        rest = await read_all(stream)
    assert stream.exit_code is None  # no exit code frame in the legacy framing
    assert rest[2] == b""
    # once the stream ended, exec_inspect has the exit code at once (the old CLI reads it then)
    info = await client.jobs.exec_inspect(job, exec_id)
    assert (info.running, info.exit_code) == (False, 3)

    # a session starts once
    with pytest.raises(IllegalArgumentError, match="already started"):
        async with client.jobs.exec_start(job, exec_id):
            pass


async def test_legacy_exec_plain_output_and_stderr(client: Client, start: Start) -> None:
    job = await start("sleep 60")
    exec_id = await client.jobs.exec_create(job, "sh -c 'echo out; echo err >&2; exit 4'")
    async with client.jobs.exec_start(job, exec_id) as stream:
        out = await read_all(stream)
    assert out == {1: b"out\n", 2: b"err\n"}
    info = await client.jobs.exec_inspect(job, exec_id)
    assert (info.running, info.exit_code, info.tty) == (False, 4, False)


async def test_resize_of_a_tty_job(client: Client, start: Start) -> None:
    job = await start(
        """sh -c 'trap "stty size" WINCH; echo ready; while :; do sleep 0.1; done'""", tty=True
    )
    async with client.jobs.attach(job, stdout=True, tty=True, logs=True) as stream:
        await read_until(stream, b"ready")  # the trap is set
        await client.jobs.resize(job, w=101, h=31)
        await read_until(stream, b"31 101")
        await stream.resize(32, 102)  # the v2 way: a 0x04 frame
        await read_until(stream, b"32 102")
    with pytest.raises(IllegalArgumentError, match="'w' and 'h'"):
        await client.jobs.resize(job, w=0, h=10)


async def test_attach_stdin_stdout_to_a_tty_job(client: Client, start: Start) -> None:
    job = await start("sh -c 'cat; echo cat-ended; exit 6'", tty=True)
    async with client.jobs.attach(job, stdin=True, stdout=True, tty=True) as stream:
        await stream.write_in(b"hello\n")
        # once the terminal's echo, once cat's own output
        await read_until(stream, lambda data: data.count(b"hello") >= 2)
        await stream.close_stdin()  # the EOF character: cat ends
        await read_until(stream, b"cat-ended")
        await read_all(stream)
    assert stream.exit_code == 6  # the job ended while attached: its exit code comes too
    await until(lambda: _finished(client, job), "the job to finish")
    assert (await client.jobs.status(job)).history.exit_code == 6


# -- 2. the single-websocket exec --------------------------------------------------------------


async def test_exec_exit_code_and_split_output(client: Client, start: Start) -> None:
    job = await start("sleep 60")
    async with client.jobs.exec(job, ["sh", "-c", "echo out; echo err >&2; exit 5"]) as stream:
        out = await read_all(stream)
    assert out == {1: b"out\n", 2: b"err\n"}
    assert stream.exit_code == 5

    async with client.jobs.exec(job, ["cat"], stdin=True) as stream:
        await stream.write_in(b"abc\n")
        assert await read_until(stream, b"abc\n") == b"abc\n"
        await stream.write_in(b"def")
        await stream.close_stdin()
        out = await read_all(stream)
    assert out == {1: b"def", 2: b""}
    assert stream.exit_code == 0

    async with client.jobs.exec(job, "sh -c 'stty size; exit 2'", tty=True) as stream:
        await stream.resize(24, 80)
        out = await read_all(stream)
    assert b"24 80" in out[1] and out[2] == b""
    assert stream.exit_code == 2
    # at the size asked: the command sees it from its start, with no resize
    async with client.jobs.exec(job, ["stty", "size"], tty=True, size=(37, 101)) as stream:
        out = await read_all(stream)
    assert out[1].strip() == b"37 101" and stream.exit_code == 0

    async with client.jobs.exec(job, ["no-such-command-here"]) as stream:
        out = await read_all(stream)
    assert stream.exit_code == 127
    assert b"no-such-command-here" in out[2]


# -- 3. attach with an offset ------------------------------------------------------------------


LINES = "sh -c 'i=0; while :; do i=$((i+1)); echo \"line $i\"; sleep 0.02; done'"


def numbers(data: bytes) -> list[int]:
    """The numbers of the complete lines in ``data`` (a line cut at the start is skipped)."""
    lines = data.split(b"\r\n")[:-1]
    if lines and not data.startswith(b"line "):
        lines = lines[1:]
    assert all(re.fullmatch(rb"line \d+", line) for line in lines), data
    return [int(line.split()[1]) for line in lines]


async def test_attach_offset_end_and_exact_resume(client: Client, start: Start) -> None:
    job = await start(LINES, tty=True)
    async with client.jobs.attach(job, stdout=True, tty=True, offset=0) as stream:
        assert stream.offset == 0
        head = await read_until(stream, b"line 5\r\n")
    assert head.startswith(b"line 1\r\nline 2\r\n")

    async with client.jobs.attach(job, stdout=True, tty=True, offset="end") as stream:
        end = stream.offset
        assert end is not None and end >= len(head)
        after = await read_until(stream, lambda d: d.count(b"\r\n") >= 5)
    first = numbers(after)
    assert first[0] > 5 and first == list(range(first[0], first[0] + len(first)))

    # lose the connection in the middle of a line, resume from the byte after the last one read
    cut = after[:-3]
    resume = end + len(cut)
    async with client.jobs.attach(job, stdout=True, tty=True, offset=resume) as stream:
        assert stream.offset == resume
        more = await read_until(stream, lambda d: d.count(b"\r\n") >= 10)
    joined = numbers(cut + more)  # no gap, no duplicate, not even of a byte
    assert joined == list(range(first[0], first[0] + len(joined)))

    # and the bytes are exactly those of the job's output at these offsets
    async with client.jobs.attach(job, stdout=True, tty=True, offset=0) as stream:
        whole = await read_until(stream, lambda d: len(d) >= resume + len(more))
    assert whole[end : end + len(after)] == after
    assert whole[resume : resume + len(more)] == more

    with pytest.raises(IllegalArgumentError, match="invalid offset"):
        async with client._ws_connect(
            await client._monitoring_url() / job / "attach",
            params={"stdout": "1", "offset": "-1"},
        ):
            pass


# -- 4. top ------------------------------------------------------------------------------------


async def test_top_samples_and_end(client: Client, start: Start) -> None:
    job = await start("sh -c 'sleep 4'")
    samples = []
    async with client.jobs.top(job) as it:
        async for sample in it:
            samples.append(sample)
    # about one a second, and the stream closes when the job finishes
    assert len(samples) >= 2, samples
    assert samples[1].timestamp - samples[0].timestamp >= 0.8
    for s in samples:
        # a sleeping job: next to no CPU, and the memory of its processes
        assert s.cpu < 0.1 and s.memory_bytes is not None and s.memory_bytes > 0
    assert (await client.jobs.status(job)).status.is_finished

    with pytest.raises(ResourceNotFound, match="not running"):
        async with client.jobs.top(job) as it:
            async for _ in it:
                pass


# -- 5. signals --------------------------------------------------------------------------------


async def test_send_signal(client: Client, start: Start) -> None:
    job = await start(
        """sh -c 'trap "echo got-usr1" USR1; trap "echo got-term; exit 7" TERM; """
        """echo ready; while :; do sleep 0.1; done'"""
    )
    async with client.jobs.attach(job, stdout=True, logs=True) as stream:
        await read_until(stream, b"ready")
        await client.jobs.send_signal(job, "usr1")
        await read_until(stream, b"got-usr1")
        await client.jobs.send_signal(job, int(signal.SIGUSR1))
        await read_until(stream, b"got-usr1")  # the second one

        with pytest.raises(IllegalArgumentError, match="NOPE"):
            await client.jobs.send_signal(job, "NOPE")
        with pytest.raises(IllegalArgumentError, match="99"):
            await client.jobs.send_signal(job, 99)

        await client.jobs.send_signal(job, signal.SIGTERM)
        await read_until(stream, b"got-term")
    await until(lambda: _finished(client, job), "the job to finish")
    status = await client.jobs.status(job)
    assert status.status == JobStatus.FAILED and status.history.exit_code == 7

    words = rf"job {job} is not running: it has already finished \(failed\); no signal sent$"
    with pytest.raises(IllegalArgumentError, match=words):
        await client.jobs.send_signal(job, "USR1")


# -- 6. port forwarding ------------------------------------------------------------------------


async def http_get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def test_port_forward(
    api: Api, client: Client, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    job = await start(f"python3 -m http.server {port} --bind 127.0.0.1")
    await until(lambda: listening(port), "the job's http server")
    async with client.jobs.port_forward(job, 0, port) as local:
        assert local != port
        answer = await http_get(local)
        assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
        assert b"Directory listing" in answer
        assert await http_get(local) == answer  # every connection its own tunnel

    # nothing listens: the tunnel closes at once, the local connection gets EOF (no hang)
    dead = free_port()
    async with client.jobs.port_forward(job, 0, dead) as local:
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
    assert f"Cannot connect to port {dead}" in caplog.text

    e = await handshake_error(api, monitoring(api, job, f"port_forward/{dead}"))
    assert e.status == 400
    assert f"Cannot connect to port {dead}" in e.headers["X-Error"]
    for bad in ("0", "70000", "http"):
        e = await handshake_error(api, monitoring(api, job, f"port_forward/{bad}"))
        assert e.status == 400 and "invalid port" in e.headers["X-Error"], (bad, e.headers)


# -- 7. bad input ------------------------------------------------------------------------------


async def test_bad_input(api: Api, client: Client, start: Start) -> None:
    job = await start("sleep 60")
    done = await finished_job(client)
    with pytest.raises(
        ResourceNotFound,
        match=rf"job {done} is not running: it has already finished \(succeeded\)$",
    ):
        async with client.jobs.exec(done, ["true"]):
            pass
    with pytest.raises(
        ResourceNotFound,
        match=rf"job {done} is not running: it has already finished \(succeeded\)$",
    ):
        async with client.jobs.attach(done, stdout=True):
            pass
    with pytest.raises(
        ResourceNotFound,
        match=rf"job {done} is not running: it has already finished \(succeeded\)$",
    ):
        await client.jobs.exec_create(done, ["true"])
    with pytest.raises(
        ResourceNotFound,
        match=rf"job {done} is not running: it has already finished \(succeeded\)$",
    ):
        await client.jobs.resize(done, w=80, h=24)

    bobs = await start("sleep 60", user="bob")
    with pytest.raises(AuthorizationError):
        async with client.jobs.exec(bobs, ["true"]):
            pass
    with pytest.raises(AuthorizationError):
        async with client.jobs.attach(bobs, stdout=True):
            pass
    with pytest.raises(AuthorizationError):
        await client.jobs.exec_create(bobs, ["true"])
    with pytest.raises(AuthorizationError):
        await client.jobs.send_signal(bobs, "KILL")
    with pytest.raises(AuthorizationError):
        async with client.jobs.top(bobs) as it:
            async for _ in it:
                pass
    e = await handshake_error(api, monitoring(api, bobs, "port_forward/1"))
    assert e.status == 403
    async with client.jobs.port_forward(bobs, 0, 1) as local:
        # refused per connection: the local connection is closed, no hang
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
    # bob's exec sessions are not alice's
    async with Client(api.url, api.tokens["bob"]) as bob:
        bob_exec = await bob.jobs.exec_create(bobs, ["true"])
    with pytest.raises(AuthorizationError):
        await client.jobs.exec_inspect(bobs, bob_exec)

    e = await handshake_error(api, monitoring(api, job, "exec"), params={"stdout": "1"})
    assert e.status == 400 and "'cmd' is required" in e.headers["X-Error"]
    for size in ({"h": "0", "w": "80"}, {"h": "24"}, {"h": "x", "w": "80"}):
        e = await handshake_error(
            api,
            monitoring(api, job, "exec"),
            params={"cmd": "true", "tty": "1", "stdout": "1", **size},
        )
        assert e.status == 400 and "'w' and 'h' must be" in e.headers["X-Error"], size
    with pytest.raises(ValueError, match="Invalid terminal size 0x80"):
        async with client.jobs.exec(job, ["true"], tty=True, size=(0, 80)):
            pass
    with pytest.raises(ResourceNotFound, match="no such exec session"):
        await client.jobs.exec_inspect(job, "0123456789abcdef")
    with pytest.raises(ResourceNotFound, match="no such exec session"):
        await client.jobs.exec_resize(job, "0123456789abcdef", w=80, h=24)
    with pytest.raises(IllegalArgumentError, match="at least one of stdin, stdout, stderr"):
        async with client.jobs.attach(job):
            pass
    with pytest.raises(IllegalArgumentError, match="at least one of stdin, stdout, stderr"):
        async with client.jobs.exec(job, ["true"], stdout=False, stderr=False):
            pass


# -- 8. no leaks -------------------------------------------------------------------------------


def fds() -> int:
    return psutil.Process().num_fds()


async def settle(baseline: int, slack: int = 3) -> None:
    await until(lambda: fds() <= baseline + slack, f"open fds back near {baseline} (now {fds()})")


async def test_exec_client_gone_leaves_no_process(client: Client, start: Start) -> None:
    job = await start("sleep 60")
    async with client.jobs.exec(job, ["true"]) as stream:  # warm up connections
        await read_all(stream)
    baseline = fds()

    # v2 exec: the client goes while the command runs
    marker, arg = sleep_marker()
    async with client.jobs.exec(job, ["sleep", arg], stdin=True) as stream:
        await until(functools.partial(marked, marker), "the exec'd sleep")
    await until(functools.partial(gone, marker), "the exec'd sleep to be killed")

    # a command that closed its output but still runs
    marker, arg = sleep_marker()
    async with client.jobs.exec(job, ["sh", "-c", f"exec >&- 2>&-; sleep {arg}"]) as stream:
        await until(functools.partial(marked, marker), "the exec'd sleep")
    await until(functools.partial(gone, marker), "the exec'd sleep (no output) to be killed")

    # legacy exec_start
    marker, arg = sleep_marker()
    exec_id = await client.jobs.exec_create(job, ["sleep", arg], tty=True)
    async with client.jobs.exec_start(job, exec_id) as stream:
        await until(functools.partial(marked, marker), "the exec'd sleep")
    await until(functools.partial(gone, marker), "the legacy exec'd sleep to be killed")
    info = await until(lambda: _not_running(client, job, exec_id), "exec_inspect: not running")
    assert info.exit_code == 128 + signal.SIGKILL

    # the job itself goes on
    assert (await client.jobs.status(job)).status == JobStatus.RUNNING
    await settle(baseline)


async def test_dropped_connections_leave_nothing(api: Api, client: Client, start: Start) -> None:
    job = await start(LINES, tty=True)
    port = free_port()
    server = await start(f"python3 -m http.server {port} --bind 127.0.0.1")
    await until(lambda: listening(port), "the job's http server")
    _, writer = await raw_websocket(api, job, "attach", {"stdout": "1"})
    writer.transport.abort()
    await asyncio.sleep(0)
    baseline = fds()

    for _ in range(3):
        marker, arg = sleep_marker()
        _, writer = await raw_websocket(api, job, "exec", {"cmd": f"sleep {arg}", "stdin": "1"})
        await until(functools.partial(marked, marker), "the exec'd sleep")
        writer.transport.abort()  # no close frame: the TCP connection just ends
        await until(functools.partial(gone, marker), "the exec'd sleep to be killed")

        exec_id = await client.jobs.exec_create(job, ["sleep", arg], tty=True)
        _, writer = await raw_websocket(api, job, f"{exec_id}/exec_start", {})
        await until(functools.partial(marked, marker), "the legacy exec'd sleep")
        writer.transport.abort()
        await until(functools.partial(gone, marker), "the legacy exec'd sleep to be killed")

        reader, writer = await raw_websocket(api, job, "attach", {"stdout": "1", "tty": "1"})
        await reader.read(100)  # output flows
        writer.transport.abort()

        _, writer = await raw_websocket(api, server, f"port_forward/{port}", {})
        await until(lambda: connections_to(port), "the tunnel to the job's port")
        writer.transport.abort()
        await until(lambda: not connections_to(port), "the tunnel's connection to be closed")
    assert (await client.jobs.status(job)).status == JobStatus.RUNNING
    await settle(baseline, slack=3)


async def _not_running(client: Client, job: str, exec_id: str) -> Any:
    info = await client.jobs.exec_inspect(job, exec_id)
    return None if info.running else info


async def test_attach_and_port_forward_client_gone(client: Client, start: Start) -> None:
    job = await start(LINES, tty=True)
    port = free_port()
    server = await start(f"python3 -m http.server {port} --bind 127.0.0.1")
    await until(lambda: listening(port), "the job's http server")
    async with client.jobs.port_forward(server, 0, port) as local:
        await http_get(local)  # warm up
    async with client.jobs.attach(job, stdout=True, tty=True) as stream:
        await read_until(stream, b"line")
    await until(lambda: not connections_to(port), "no connection to the job's port")
    baseline = fds()

    for _ in range(5):
        async with client.jobs.attach(job, stdout=True, stdin=True, tty=True) as stream:
            await read_until(stream, lambda d: d.count(b"\r\n") >= 3)
    # a tunnel that is open (a request half sent) when the client goes
    for _ in range(5):
        async with client.jobs.port_forward(server, 0, port) as local:
            reader, writer = await asyncio.open_connection("127.0.0.1", local)
            writer.write(b"GET / HTTP/1.1\r\n")
            await writer.drain()
            await until(lambda: connections_to(port), "the tunnel to the job's port")
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
        writer.close()
        await until(lambda: not connections_to(port), "the tunnel's connection to be closed")
    assert (await client.jobs.status(job)).status == JobStatus.RUNNING
    await settle(baseline)


async def test_legacy_exec_records_are_bounded(
    client: Client, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[dict[str, Any]] = []
    real = exec_handlers._execs

    def spy(request: Any) -> dict[str, Any]:
        execs = real(request)
        if not records:
            records.append(execs)
        return execs

    monkeypatch.setattr(exec_handlers, "_execs", spy)
    monkeypatch.setattr(exec_handlers, "MAX_EXECS", 5)
    job = await start("sleep 60")
    ids = []
    for i in range(12):  # finished and never started sessions make room for new ones
        exec_id = await client.jobs.exec_create(job, ["sh", "-c", f"exit {i}"])
        ids.append(exec_id)
        if i % 2:
            async with client.jobs.exec_start(job, exec_id) as stream:
                await read_all(stream)
            assert (await client.jobs.exec_inspect(job, exec_id)).exit_code == i
        assert len(records[0]) <= 5
    # the newest are still there
    assert (await client.jobs.exec_inspect(job, ids[-1])).exit_code == 11
    with pytest.raises(ResourceNotFound):
        await client.jobs.exec_inspect(job, ids[0])

    # running sessions are never dropped: when they fill the table, 429
    streams = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(5):
            exec_id = await client.jobs.exec_create(job, ["sleep", "30"])
            streams.append(await stack.enter_async_context(client.jobs.exec_start(job, exec_id)))
            await until(
                functools.partial(_running, client, job, exec_id), "the exec session to run"
            )
        with pytest.raises(IllegalArgumentError, match="too many exec sessions"):
            await client.jobs.exec_create(job, ["true"])
    await until(
        lambda: len(records[0]) <= 5 and not any(r.running for r in records[0].values()),
        "the sessions to end",
    )


async def _running(client: Client, job: str, exec_id: str) -> bool:
    return (await client.jobs.exec_inspect(job, exec_id)).running
