"""attach, exec (single websocket and legacy), resize, signals, top and port forwarding against
the loopback stub server (protocol 2.1, 4.1, 4.3, 4.4)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import socket

import pytest
from aiohttp import WSMsgType, web
from yarl import URL

from neuro_sdk import (
    Client,
    ExecInspect,
    IllegalArgumentError,
    JobTelemetry,
    Message,
    ProtocolError,
    ResourceNotFound,
    ServerUnreachable,
    StdStream,
)
from neuro_sdk._jobs import _ws_failure

from .helpers import TOKEN
from .stub_server import StubServer, WSPlayer

V2 = "v2.channels.neu.ro"
MON = "/api/v1/jobs/job-1"
MIB = 2**20


def check_common_headers(rec) -> None:  # type: ignore[no-untyped-def]
    assert rec.headers["Authorization"] == f"Bearer {TOKEN}"
    assert rec.headers["User-Agent"].startswith("neuro-sdk/")


def exit_frame(code: int) -> bytes:
    return b"\x03" + json.dumps({"exit_code": code}).encode()


async def read_all(stream: StdStream) -> list[Message]:
    out = []
    while (msg := await stream.read_out()) is not None:
        out.append(msg)
    return out


def x_error(status: int, message: str) -> dict:
    return {"status": status, "headers": {"X-Error": json.dumps({"error": message})}}


# -- attach ------------------------------------------------------------------------------------


async def test_attach_request_and_output(stub: StubServer, client: Client) -> None:
    player = WSPlayer([b"\x01", b"\x01out", b"\x02err", exit_frame(0)], protocols=(V2,))
    stub.add("GET", f"{MON}/attach", player)
    async with client.jobs.attach("job-1", stdout=True, stderr=True) as stream:
        assert isinstance(stream, StdStream)
        assert await read_all(stream) == [Message(1, b"out"), Message(2, b"err")]
        assert stream.exit_code == 0
        assert await stream.read_out() is None  # stays at EOF
    rec = stub.only("GET", f"{MON}/attach")
    check_common_headers(rec)
    assert list(rec.query.items()) == [
        ("tty", "0"),
        ("stdin", "0"),
        ("stdout", "1"),
        ("stderr", "1"),
    ]
    assert player.requested_protocols == V2
    assert player.protocol == V2


async def test_attach_tty_and_logs_flags(stub: StubServer, client: Client) -> None:
    player = WSPlayer([b"\x01replayed"], protocols=(V2,))
    stub.add("GET", f"{MON}/attach", player)
    async with client.jobs.attach("job-1", stdin=True, stdout=True, tty=True, logs=True) as stream:
        assert await read_all(stream) == [Message(1, b"replayed")]
        assert stream.exit_code is None  # closed without an exit code frame
    assert list(stub.only("GET", f"{MON}/attach").query.items()) == [
        ("tty", "1"),
        ("stdin", "1"),
        ("stdout", "1"),
        ("stderr", "0"),
        ("logs", "1"),
    ]


@pytest.mark.parametrize(("offset", "sent"), [(0, "0"), (1234, "1234"), ("end", "end")])
async def test_attach_offset_extension(
    stub: StubServer, client: Client, offset: int | str, sent: str
) -> None:
    player = WSPlayer([b'\x05{"offset": 1234}', b"\x01tail", b'\x05{"offset": 9}'])
    stub.add("GET", f"{MON}/attach", player)
    attach = client.jobs.attach("job-1", stdout=True, offset=offset)  # type: ignore[arg-type]
    async with attach as stream:
        assert stream.offset == 1234  # read before the block starts
        assert await read_all(stream) == [Message(1, b"tail")]
        assert stream.offset == 9  # a later offset frame updates it
    assert list(stub.only("GET", f"{MON}/attach").query.items())[-1] == ("offset", sent)


async def test_attach_offset_from_a_server_without_the_extension(
    stub: StubServer, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first frame is output: it is kept for read_out
    stub.add("GET", f"{MON}/attach", WSPlayer([b"\x01first", b"\x01second"]))
    async with client.jobs.attach("job-1", stdout=True, offset=0) as stream:
        assert stream.offset is None
        assert await read_all(stream) == [Message(1, b"first"), Message(1, b"second")]
    # a silent server: the wait for the offset frame is bounded
    monkeypatch.setattr("neuro_sdk._jobs.OFFSET_FRAME_TIMEOUT", 0.05)
    stub.add("GET", f"{MON}/attach", WSPlayer([1, b"\x01late"]))
    async with client.jobs.attach("job-1", stdin=True, stdout=True, offset="end") as stream:
        assert stream.offset is None
        await stream.write_in(b"go")
        assert await read_all(stream) == [Message(1, b"late")]


async def test_attach_invalid_offset_frame(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/attach", WSPlayer([b'\x05{"offset": -1}']))
    with pytest.raises(ProtocolError, match="offset"):
        async with client.jobs.attach("job-1", stdout=True, offset=0):
            pass


async def test_attach_stdin_resize_and_close_stdin_frames(stub: StubServer, client: Client) -> None:
    player = WSPlayer([4, b"\x01done"], protocols=(V2,))
    stub.add("GET", f"{MON}/attach", player)
    async with client.jobs.attach("job-1", stdin=True, stdout=True, tty=True) as stream:
        await stream.write_in(b"hi\n")
        await stream.write_in(b"")  # nothing is sent for no data
        await stream.resize(24, 80)
        await stream.close_stdin()
        await stream.write_in(b"\x04")
        assert await read_all(stream) == [Message(1, b"done")]
    assert player.received[0] == b"\x00hi\n"
    assert player.received[1][:1] == b"\x04"
    assert json.loads(player.received[1][1:]) == {"height": 24, "width": 80}
    assert player.received[2] == b"\xff\x00"
    assert player.received[3] == b"\x00\x04"


async def test_attach_large_stdin_is_split(stub: StubServer, client: Client) -> None:
    data = bytes(range(256)) * (10 * 1024 + 3)  # ~2.5 MiB
    player = WSPlayer([3], protocols=(V2,))
    stub.add("GET", f"{MON}/attach", player)
    async with client.jobs.attach("job-1", stdin=True) as stream:
        await stream.write_in(data)
        assert await stream.read_out() is None
    assert len(player.received) == 3
    assert all(isinstance(f, bytes) and f[:1] == b"\x00" for f in player.received)
    assert b"".join(f[1:] for f in player.received) == data  # type: ignore[index]


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b'{"exit_code": 42}', 42), (b"garbage", 1), (b"", 1)],
    ids=["code", "malformed", "empty"],
)
async def test_attach_exit_code_frame(
    stub: StubServer, client: Client, payload: bytes, code: int
) -> None:
    # frames after the exit code are not read: the stream is closed
    stub.add("GET", f"{MON}/attach", WSPlayer([b"\x01a", b"\x03" + payload, b"\x01b"]))
    async with client.jobs.attach("job-1", stdout=True) as stream:
        assert await read_all(stream) == [Message(1, b"a")]
        assert stream.exit_code == code
        with pytest.raises(ConnectionResetError):
            await stream.write_in(b"late")


@pytest.mark.parametrize(
    ("frame", "match"),
    [("text", "text frame"), (b"\x07x", "channel 7"), (b"\x00echo", "channel 0")],
    ids=["text", "unknown-channel", "stdin-channel"],
)
async def test_attach_protocol_errors(
    stub: StubServer, client: Client, frame: bytes | str, match: str
) -> None:
    stub.add("GET", f"{MON}/attach", WSPlayer([b"\x01ok", frame]))
    async with client.jobs.attach("job-1", stdout=True) as stream:
        assert await stream.read_out() == Message(1, b"ok")
        with pytest.raises(ProtocolError, match=match):
            await stream.read_out()


async def test_stream_close_detaches(stub: StubServer, client: Client) -> None:
    player = WSPlayer([b"\x01hello"], read_to_end=True, protocols=(V2,))
    stub.add("GET", f"{MON}/attach", player)
    async with client.jobs.attach("job-1", stdout=True) as stream:
        assert await stream.read_out() == Message(1, b"hello")
        await stream.close()
        assert await stream.read_out() is None
        with pytest.raises(ConnectionResetError):
            await stream.write_in(b"x")
        await stream.close_stdin()  # a no-op once closed
        await stream.close()  # idempotent
    assert player.client_closed


async def test_stream_close_wakes_a_pending_reader(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/attach", WSPlayer(read_to_end=True, protocols=(V2,)))
    async with client.jobs.attach("job-1", stdout=True) as stream:
        reader = asyncio.create_task(stream.read_out())
        await asyncio.sleep(0.05)
        await stream.close()
        assert await asyncio.wait_for(reader, 5) is None


async def test_attach_handshake_error(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/attach", **x_error(404, "job job-1 is not running"))
    with pytest.raises(ResourceNotFound, match="job job-1 is not running") as info:
        async with client.jobs.attach("job-1", stdout=True):
            pass
    assert info.value.status == 404


# -- exec (single websocket) -------------------------------------------------------------------


async def test_exec_request_output_and_exit_code(stub: StubServer, client: Client) -> None:
    player = WSPlayer([b"\x01a b\n", b"\x02warn\n", exit_frame(3)], protocols=(V2,))
    stub.add("GET", f"{MON}/exec", player)
    cmd = ["bash", "-c", "echo 'a b'; exit 3"]
    async with client.jobs.exec("job-1", cmd) as stream:
        assert await read_all(stream) == [Message(1, b"a b\n"), Message(2, b"warn\n")]
    assert stream.exit_code == 3
    rec = stub.only("GET", f"{MON}/exec")
    check_common_headers(rec)
    assert list(rec.query.items()) == [
        ("cmd", "bash -c 'echo '\"'\"'a b'\"'\"'; exit 3'"),
        ("tty", "0"),
        ("stdin", "0"),
        ("stdout", "1"),
        ("stderr", "1"),
    ]
    assert player.requested_protocols == V2


async def test_exec_tty_stdin(stub: StubServer, client: Client) -> None:
    player = WSPlayer([2, b"\x01$ ", exit_frame(0)], protocols=(V2,))
    stub.add("GET", f"{MON}/exec", player)
    async with client.jobs.exec("job-1", ["bash"], tty=True, stdin=True, stderr=False) as stream:
        await stream.resize(h=50, w=132)
        await stream.write_in(b"exit\r")
        assert await read_all(stream) == [Message(1, b"$ ")]
        assert stream.exit_code == 0
    assert json.loads(player.received[0][1:]) == {"height": 50, "width": 132}
    assert player.received[1] == b"\x00exit\r"
    assert list(stub.only("GET", f"{MON}/exec").query.items())[1:] == [
        ("tty", "1"),
        ("stdin", "1"),
        ("stdout", "1"),
        ("stderr", "0"),
    ]


async def test_exec_empty_command_sends_nothing(stub: StubServer, client: Client) -> None:
    with pytest.raises(ValueError, match="empty"):
        async with client.jobs.exec("job-1", []):
            pass
    assert stub.requests == []


async def test_exec_handshake_error(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/exec", **x_error(400, "'cmd' cannot be parsed"))
    with pytest.raises(IllegalArgumentError, match="'cmd' cannot be parsed"):
        async with client.jobs.exec("job-1", ["x"]):
            pass


# -- legacy exec sessions ----------------------------------------------------------------------


async def test_exec_create(stub: StubServer, client: Client) -> None:
    stub.add("POST", f"{MON}/exec_create", json={"exec_id": "exec-7"})
    assert await client.jobs.exec_create("job-1", ["echo", "a b"], tty=True) == "exec-7"
    rec = stub.only("POST", f"{MON}/exec_create")
    check_common_headers(rec)
    assert rec.json() == {
        "command": "echo 'a b'",
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": True,
    }


async def test_exec_create_bad_answer(stub: StubServer, client: Client) -> None:
    stub.add("POST", f"{MON}/exec_create", json={"id": "exec-7"})
    with pytest.raises(ProtocolError, match="exec_id"):
        await client.jobs.exec_create("job-1", ["true"])


async def test_exec_start_legacy_framing(stub: StubServer, client: Client) -> None:
    player = WSPlayer([b"\x01out", b"\x02err", 2, b"\x01bye"])
    stub.add("GET", f"{MON}/exec-7/exec_start", player)
    stub.add("POST", f"{MON}/exec-7/exec_resize", status=204)
    async with client.jobs.exec_start("job-1", "exec-7") as stream:
        assert await stream.read_out() == Message(1, b"out")
        assert await stream.read_out() == Message(2, b"err")
        await stream.write_in(b"in1")
        await stream.close_stdin()  # the legacy protocol has no such frame
        await stream.resize(24, 80)  # -> POST exec_resize
        await stream.write_in(b"\x00in2")
        assert await read_all(stream) == [Message(1, b"bye")]
        assert stream.exit_code is None
    assert player.received == [b"in1", b"\x00in2"]  # raw stdin, no channel prefix
    assert player.requested_protocols is None
    check_common_headers(stub.only("GET", f"{MON}/exec-7/exec_start"))
    rec = stub.only("POST", f"{MON}/exec-7/exec_resize")
    assert list(rec.query.items()) == [("w", "80"), ("h", "24")]


async def test_exec_start_exit_code_frame_is_protocol_error(
    stub: StubServer, client: Client
) -> None:
    stub.add("GET", f"{MON}/exec-7/exec_start", WSPlayer([exit_frame(0)]))
    async with client.jobs.exec_start("job-1", "exec-7") as stream:
        with pytest.raises(ProtocolError, match="channel 3"):
            await stream.read_out()


async def test_exec_start_handshake_error(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/exec-7/exec_start", **x_error(404, "no such exec session: exec-7"))
    with pytest.raises(ResourceNotFound, match="no such exec session"):
        async with client.jobs.exec_start("job-1", "exec-7"):
            pass


async def test_exec_inspect(stub: StubServer, client: Client) -> None:
    stub.add(
        "GET",
        f"{MON}/exec-7/exec_inspect",
        json={
            "id": "exec-7",
            "running": False,
            "exit_code": 5,
            "job_id": "job-1",
            "tty": False,
            "entrypoint": "sh",
            "command": "sh -c 'exit 5'",
        },
    )
    assert await client.jobs.exec_inspect("job-1", "exec-7") == ExecInspect(
        id="exec-7",
        job_id="job-1",
        running=False,
        exit_code=5,
        tty=False,
        entrypoint="sh",
        command="sh -c 'exit 5'",
    )
    check_common_headers(stub.only("GET", f"{MON}/exec-7/exec_inspect"))


async def test_exec_resize_and_resize(stub: StubServer, client: Client) -> None:
    stub.add("POST", f"{MON}/exec-7/exec_resize", status=204)
    stub.add("POST", f"{MON}/resize", status=204)
    await client.jobs.exec_resize("job-1", "exec-7", w=100, h=30)
    await client.jobs.resize("job-1", w=120, h=40)
    rec = stub.only("POST", f"{MON}/exec-7/exec_resize")
    check_common_headers(rec)
    assert list(rec.query.items()) == [("w", "100"), ("h", "30")]
    rec = stub.only("POST", f"{MON}/resize")
    check_common_headers(rec)
    assert list(rec.query.items()) == [("w", "120"), ("h", "40")]


async def test_resize_error(stub: StubServer, client: Client) -> None:
    stub.add("POST", f"{MON}/resize", json={"error": "job job-1 has no TTY"}, status=400)
    with pytest.raises(IllegalArgumentError, match="has no TTY"):
        await client.jobs.resize("job-1", w=1, h=1)


# -- send_signal -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "expected"),
    [("USR1", "USR1"), ("SIGUSR1", "SIGUSR1"), (9, "9"), (signal.SIGTERM, "15")],
)
async def test_send_signal(stub: StubServer, client: Client, sig: str | int, expected: str) -> None:
    stub.add("POST", f"{MON}/kill", status=204)
    await client.jobs.send_signal("job-1", sig)
    rec = stub.only("POST", f"{MON}/kill")
    check_common_headers(rec)
    assert list(rec.query.items()) == [("signal", expected)]
    assert rec.body == b""


async def test_send_signal_error(stub: StubServer, client: Client) -> None:
    stub.add("POST", f"{MON}/kill", json={"error": "invalid signal 'FOO'"}, status=400)
    with pytest.raises(IllegalArgumentError, match="invalid signal"):
        await client.jobs.send_signal("job-1", "FOO")


# -- top ---------------------------------------------------------------------------------------


async def test_top(stub: StubServer, client: Client) -> None:
    frames = [
        json.dumps(
            {
                "cpu": 0.5,
                "memory": 10,
                "memory_bytes": 10 * MIB + MIB // 4,
                "timestamp": 100.0,
                "gpu_duty_cycle": 7,
                "gpu_memory": 1,
                "gpu_memory_bytes": MIB,
            }
        ),
        json.dumps({"cpu": 1.0, "memory": 20, "timestamp": 101.0}),  # an old server: MiB only
    ]
    stub.add("GET", f"{MON}/top", WSPlayer(frames))
    samples = [t async for t in client.jobs.top("job-1")]
    assert samples == [
        JobTelemetry(
            cpu=0.5,
            memory=10.25,
            timestamp=100.0,
            gpu_duty_cycle=7,
            gpu_memory=1.0,
            memory_bytes=10 * MIB + MIB // 4,
            gpu_memory_bytes=MIB,
        ),
        JobTelemetry(cpu=1.0, memory=20.0, timestamp=101.0, memory_bytes=20 * MIB),
    ]
    rec = stub.only("GET", f"{MON}/top")
    check_common_headers(rec)
    assert rec.query_string == ""


async def test_top_early_exit_with_context_manager(stub: StubServer, client: Client) -> None:
    frame = json.dumps({"cpu": 0.5, "memory_bytes": MIB, "timestamp": 1.0})
    player = WSPlayer([frame], read_to_end=True)
    stub.add("GET", f"{MON}/top", player)
    async with client.jobs.top("job-1") as samples:
        async for t in samples:
            assert t.memory == 1.0
            break
    assert player.client_closed


async def test_top_without_frames_is_not_running(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/top", WSPlayer())
    with pytest.raises(IllegalArgumentError, match="Job is not running"):
        async for _ in client.jobs.top("job-1"):
            pass


async def test_top_invalid_frame(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/top", WSPlayer(["{not json"]))
    with pytest.raises(ProtocolError, match="telemetry"):
        async for _ in client.jobs.top("job-1"):
            pass


async def test_top_handshake_error(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/top", **x_error(400, "Job not found"))
    with pytest.raises(IllegalArgumentError, match="Job not found"):
        async for _ in client.jobs.top("job-1"):
            pass


# -- port forwarding ---------------------------------------------------------------------------


class EchoTunnel:
    """``port_forward`` handler: greets, then echoes every binary frame until the client
    closes; records the connections."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.opened = 0
        self.closed = 0
        self.protocols: list[str | None] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.opened += 1
        self.protocols.append(request.headers.get("Sec-WebSocket-Protocol"))
        if self.greeting:
            await ws.send_bytes(self.greeting)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        self.closed += 1
        return ws


async def roundtrip(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await reader.readexactly(len(data))
    finally:
        writer.close()
        await writer.wait_closed()


async def wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_port_forward_moves_bytes_both_ways(stub: StubServer, client: Client) -> None:
    echo = EchoTunnel(greeting=b"hello from the job\n")
    stub.add("GET", f"{MON}/port_forward/8080", echo)
    async with client.jobs.port_forward("job-1", 0, 8080) as port:
        assert isinstance(port, int) and port > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"hello from the job\n"  # server -> client first
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: echo.closed == 1)  # the local close ends the tunnel
    rec = stub.only("GET", f"{MON}/port_forward/8080")
    check_common_headers(rec)
    assert echo.protocols == [None]


async def test_port_forward_concurrent_connections(stub: StubServer, client: Client) -> None:
    echo = EchoTunnel()
    stub.add("GET", f"{MON}/port_forward/80", echo)
    payloads = [bytes([i]) * (i * 1000 + 1) for i in range(1, 6)]
    payloads.append(bytes(range(256)) * (5 * MIB // 256 + 1))  # more than one 4 MiB read
    async with client.jobs.port_forward("job-1", 0, 80) as port:
        results = await asyncio.gather(*(roundtrip(port, p) for p in payloads))
    assert results == payloads
    assert echo.opened == len(payloads)
    assert len([r for r in stub.requests if r.path == f"{MON}/port_forward/80"]) == len(payloads)


async def test_port_forward_remote_close_ends_tunnel(stub: StubServer, client: Client) -> None:
    stub.add("GET", f"{MON}/port_forward/22", WSPlayer([b"SSH-2.0-x\r\n"]))
    async with client.jobs.port_forward("job-1", 0, 22) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.read() == b"SSH-2.0-x\r\n"  # then EOF
        writer.close()
        await writer.wait_closed()


async def test_port_forward_exit_closes_tunnels_and_listener(
    stub: StubServer, client: Client
) -> None:
    echo = EchoTunnel()
    stub.add("GET", f"{MON}/port_forward/80", echo)
    async with client.jobs.port_forward("job-1", 0, 80) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the tunnel was closed
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: echo.closed == 1)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_port_forward_tunnel_error_is_logged(
    stub: StubServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    stub.add("GET", f"{MON}/port_forward/81", **x_error(400, "Cannot connect to port 81"))
    with caplog.at_level(logging.WARNING, logger="neuro_sdk"):
        async with client.jobs.port_forward("job-1", 0, 81) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await writer.wait_closed()
            # the listener goes on after a failed tunnel
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await writer.wait_closed()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert all("Cannot connect to port 81" in m for m in messages)


async def test_port_forward_port_in_use(stub: StubServer, client: Client) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"local port {port} is already in use") as info:
            async with client.jobs.port_forward("job-1", port, 80):
                pass
    assert info.value.errno == errno.EADDRINUSE
    assert stub.requests == []


@pytest.mark.parametrize(("local", "job"), [(-1, 80), (70000, 80), (0, 0), (0, 65536)])
async def test_port_forward_invalid_ports(client: Client, local: int, job: int) -> None:
    with pytest.raises(ValueError, match="port"):
        async with client.jobs.port_forward("job-1", local, job):
            pass


async def test_port_forward_fixed_local_port(stub: StubServer, client: Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    stub.add("GET", f"{MON}/port_forward/80", EchoTunnel())
    async with client.jobs.port_forward("job-1", free, 80) as port:
        assert port == free
        assert await roundtrip(port, b"abc") == b"abc"


class FakeWS:
    def __init__(self, exc: BaseException | None) -> None:
        self._exc = exc

    def exception(self) -> BaseException | None:
        return self._exc


def test_ws_failure_mapping() -> None:
    url = URL("http://mon.example.com/api/v1/jobs/job-1/attach?tty=0")
    ws = FakeWS(ConnectionResetError("reset"))
    lost = _ws_failure(ws, "the connection", url)  # type: ignore[arg-type]
    assert isinstance(lost, ServerUnreachable)
    assert str(lost) == "Lost the connection: reset"
    assert lost.url == "http://mon.example.com/api/v1/jobs/job-1/attach"
    ws = FakeWS(ValueError("bad"))
    broken = _ws_failure(ws, "the connection", url)  # type: ignore[arg-type]
    assert isinstance(broken, ProtocolError)
    assert isinstance(broken.__cause__, ValueError)
