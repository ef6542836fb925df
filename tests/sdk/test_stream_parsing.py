"""Pure request building and frame/JSON parsing for attach, exec, top, signals (protocol 4.1,
4.3, 2.1 legacy table), no network."""

from __future__ import annotations

import json
import signal

import pytest

from neuro_sdk import ExecInspect, JobTelemetry, Message, ProtocolError
from neuro_sdk._parsing import (
    attach_query,
    decode_output_frame,
    exec_command,
    exec_create_body,
    exec_id_from_api,
    exec_inspect_from_api,
    exec_query,
    exit_code_from_frame,
    offset_from_frame,
    signal_query,
    size_query,
    telemetry_from_api,
)
from neuro_sdk._wire import CHANNELS_PROTOCOL, CLOSE_STDIN_FRAME, resize_frame, stdin_frame

MIB = 2**20


def test_channels_protocol_name() -> None:
    assert CHANNELS_PROTOCOL == "v2.channels.neu.ro"


# -- queries and bodies ------------------------------------------------------------------------


def test_attach_query_defaults() -> None:
    assert attach_query() == [("tty", "0"), ("stdin", "0"), ("stdout", "0"), ("stderr", "0")]


def test_attach_query_all_flags() -> None:
    assert attach_query(tty=True, stdin=True, stdout=True, stderr=True, logs=True) == [
        ("tty", "1"),
        ("stdin", "1"),
        ("stdout", "1"),
        ("stderr", "1"),
        ("logs", "1"),
    ]


def test_attach_query_offset_extension() -> None:
    assert attach_query(stdout=True, offset=0)[-1] == ("offset", "0")
    assert attach_query(stdout=True, offset=17)[-1] == ("offset", "17")
    assert attach_query(stdout=True, offset="end")[-1] == ("offset", "end")
    for bad in (-1, "start", True, 1.5):
        with pytest.raises(ValueError, match="offset"):
            attach_query(offset=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (["ls", "-l"], "ls -l"),
        (["bash", "-c", "echo 'a b' | wc -c"], "bash -c 'echo '\"'\"'a b'\"'\"' | wc -c'"),
        (("echo", ""), "echo ''"),
        ("bash -c 'echo hi'", "bash -c 'echo hi'"),  # a str is already a command line
    ],
    ids=["simple", "quoted", "empty-arg", "str"],
)
def test_exec_command(cmd: object, expected: str) -> None:
    assert exec_command(cmd) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("cmd", [[], "", "   "])
def test_exec_command_empty(cmd: object) -> None:
    with pytest.raises(ValueError, match="empty"):
        exec_command(cmd)  # type: ignore[arg-type]


def test_exec_query() -> None:
    assert exec_query(["sh", "-c", "x y"]) == [
        ("cmd", "sh -c 'x y'"),
        ("tty", "0"),
        ("stdin", "0"),
        ("stdout", "1"),
        ("stderr", "1"),
    ]
    assert exec_query(["bash"], tty=True, stdin=True, stderr=False) == [
        ("cmd", "bash"),
        ("tty", "1"),
        ("stdin", "1"),
        ("stdout", "1"),
        ("stderr", "0"),
    ]


def test_exec_create_body() -> None:
    assert exec_create_body(["echo", "a b"], tty=True) == {
        "command": "echo 'a b'",
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": True,
    }
    assert exec_create_body(["true"])["tty"] is False


def test_size_query() -> None:
    assert size_query(w=80, h=24) == [("w", "80"), ("h", "24")]


@pytest.mark.parametrize(
    ("sig", "expected"),
    [
        ("USR1", "USR1"),
        ("SIGUSR1", "SIGUSR1"),
        ("sigterm", "sigterm"),
        (9, "9"),
        (signal.SIGTERM, "15"),
    ],
)
def test_signal_query(sig: str | int, expected: str) -> None:
    assert signal_query(sig) == [("signal", expected)]


def test_signal_query_invalid() -> None:
    with pytest.raises(ValueError, match="empty"):
        signal_query(" ")
    with pytest.raises(TypeError):
        signal_query(True)
    with pytest.raises(TypeError):
        signal_query(1.5)  # type: ignore[arg-type]


# -- JSON answers ------------------------------------------------------------------------------


def test_exec_id_from_api() -> None:
    assert exec_id_from_api({"exec_id": "e-1"}) == "e-1"
    for bad in ({}, {"exec_id": 5}, ["e-1"]):
        with pytest.raises(ProtocolError, match="exec_id"):
            exec_id_from_api(bad)


def test_exec_inspect_from_api() -> None:
    data = {
        "id": "e-1",
        "running": False,
        "exit_code": 3,
        "job_id": "job-1",
        "tty": True,
        "entrypoint": "bash",
        "command": "bash -c 'exit 3'",
    }
    assert exec_inspect_from_api(data) == ExecInspect(
        id="e-1",
        job_id="job-1",
        running=False,
        exit_code=3,
        tty=True,
        entrypoint="bash",
        command="bash -c 'exit 3'",
    )
    running = exec_inspect_from_api({**data, "running": True, "exit_code": None})
    assert running.running is True
    assert running.exit_code is None


def test_exec_inspect_invalid() -> None:
    with pytest.raises(ProtocolError, match="missing key 'job_id'"):
        exec_inspect_from_api({"id": "e-1", "running": True})
    with pytest.raises(ProtocolError):
        exec_inspect_from_api(["x"])


def test_telemetry_current_format() -> None:
    frame = {
        "cpu": 0.25,
        "memory": 100,
        "memory_bytes": 100 * MIB + MIB // 2,
        "timestamp": 1700000000.5,
        "gpu_duty_cycle": 40,
        "gpu_memory": 2048,
        "gpu_memory_bytes": 2048 * MIB,
    }
    assert telemetry_from_api(frame) == JobTelemetry(
        cpu=0.25,
        memory=100.5,  # memory_bytes wins over the rounded MiB value
        timestamp=1700000000.5,
        gpu_duty_cycle=40,
        gpu_memory=2048.0,
        memory_bytes=100 * MIB + MIB // 2,
        gpu_memory_bytes=2048 * MIB,
    )


def test_telemetry_old_format_mib_only() -> None:
    t = telemetry_from_api({"cpu": 1, "memory": 64, "timestamp": 10, "gpu_memory": 3})
    assert t == JobTelemetry(
        cpu=1.0,
        memory=64.0,
        timestamp=10.0,
        gpu_duty_cycle=None,
        gpu_memory=3.0,
        memory_bytes=64 * MIB,
        gpu_memory_bytes=3 * MIB,
    )


def test_telemetry_without_gpu() -> None:
    t = telemetry_from_api({"cpu": 0, "memory_bytes": 0, "timestamp": 1})
    assert t.gpu_duty_cycle is None
    assert t.gpu_memory is None
    assert t.gpu_memory_bytes is None
    assert t.memory == 0.0


@pytest.mark.parametrize(
    "frame",
    [
        {"memory": 1, "timestamp": 1},
        {"cpu": 1, "timestamp": 1},
        {"cpu": 1, "memory": 1},
        {"cpu": "x", "memory": 1, "timestamp": 1},
        [1, 2],
    ],
    ids=["no-cpu", "no-memory", "no-timestamp", "bad-cpu", "not-object"],
)
def test_telemetry_invalid(frame: object) -> None:
    with pytest.raises(ProtocolError, match="telemetry"):
        telemetry_from_api(frame)


# -- channel framing ---------------------------------------------------------------------------


def test_client_frames() -> None:
    assert stdin_frame(b"abc") == b"\x00abc"
    assert stdin_frame(b"abc", legacy=True) == b"abc"
    frame = resize_frame(h=24, w=80)
    assert frame[:1] == b"\x04"
    assert json.loads(frame[1:]) == {"height": 24, "width": 80}
    assert CLOSE_STDIN_FRAME == b"\xff\x00"


@pytest.mark.parametrize("legacy", [False, True])
def test_decode_output_frames(legacy: bool) -> None:
    assert decode_output_frame(b"\x01out", legacy=legacy) == Message(1, b"out")
    assert decode_output_frame(b"\x02err", legacy=legacy) == Message(2, b"err")
    assert decode_output_frame(b"\x01", legacy=legacy) is None  # k8s channel announcement
    assert decode_output_frame(b"", legacy=legacy) is None
    with pytest.raises(ProtocolError, match="channel 0"):
        decode_output_frame(b"\x00in", legacy=legacy)
    with pytest.raises(ProtocolError, match="channel 7"):
        decode_output_frame(b"\x07x", legacy=legacy)


def test_decode_exit_code_frame() -> None:
    assert decode_output_frame(b'\x03{"exit_code": 42}') == 42
    assert decode_output_frame(b'\x03{"exit_code": 0, "message": "ok"}') == 0
    with pytest.raises(ProtocolError, match="channel 3"):
        decode_output_frame(b'\x03{"exit_code": 42}', legacy=True)


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"\xff", b"[]", b"{}", b'{"exit_code": "2"}', b'{"exit_code": true}'],
)
def test_malformed_exit_code_is_1(payload: bytes) -> None:
    assert exit_code_from_frame(payload) == 1
    assert decode_output_frame(b"\x03" + payload) == 1


def test_offset_frame() -> None:
    assert offset_from_frame(b'{"offset": 0}') == 0
    assert offset_from_frame(b'{"offset": 123}') == 123
    for bad in (b"", b"x", b"[]", b'{"offset": -1}', b'{"offset": "1"}', b'{"offset": true}'):
        with pytest.raises(ProtocolError, match="offset"):
            offset_from_frame(bad)
    # the frame decoder itself does not know the extension: StdStream reads 0x05 frames first
    with pytest.raises(ProtocolError, match="channel 5"):
        decode_output_frame(b'\x05{"offset": 1}')
