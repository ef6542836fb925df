"""The wire vocabulary the SDK shares with the server (neuro_sdk/_wire.py): what one side
encodes the other decodes, and one signal parser for the SDK, the CLI and the server."""

from __future__ import annotations

import json
import signal

import pytest

from neuro_sdk import JobTelemetry, Message
from neuro_sdk._parsing import (
    decode_output_frame,
    exec_id_from_frame,
    exit_code_from_frame,
    offset_from_frame,
    telemetry_from_api,
)
from neuro_sdk._wire import (
    CLOSE_STDIN_FRAME,
    OFFSET,
    RESIZE,
    STDERR,
    STDIN,
    UNCATCHABLE,
    channel_frame,
    offset_frame,
    parse_offset,
    parse_resize,
    parse_status,
    resize_frame,
    signal_name,
    signal_number,
    signal_spelling,
    status_frame,
    stdin_frame,
    telemetry_frame,
)

MIB = 1 << 20


def test_wire_channel_frames_round_trip() -> None:
    assert decode_output_frame(channel_frame(STDERR, b"oops")) == Message(2, b"oops")
    assert decode_output_frame(status_frame(7)) == 7
    assert stdin_frame(b"ls\n") == bytes([STDIN]) + b"ls\n" and CLOSE_STDIN_FRAME == b"\xff\x00"
    frame = resize_frame(h=24, w=80)
    assert frame[0] == RESIZE and parse_resize(frame[1:]) == (24, 80)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"[]",
        b'{"height": 0, "width": 80}',
        b'{"height": 24, "width": 10001}',
        b'{"height": "x"}',
        b"[" * 100_000,
    ],
    ids=["empty", "list", "zero", "too-wide", "not-a-number", "deep"],
)
def test_wire_parse_resize_ignores_garbage(payload: bytes) -> None:
    assert parse_resize(payload) is None


def test_wire_offset_frames_round_trip() -> None:
    plain, resumable = offset_frame(123), offset_frame(0, exec_id="e1")
    assert plain[0] == resumable[0] == OFFSET
    assert json.loads(resumable[1:]) == {"exec_id": "e1", "offset": 0}
    assert (offset_from_frame(plain[1:]), exec_id_from_frame(plain[1:])) == (123, None)
    assert (offset_from_frame(resumable[1:]), exec_id_from_frame(resumable[1:])) == (0, "e1")
    for bad in (b"", b"{}", b'{"offset": -1}', b'{"offset": true}', b'{"offset": "1"}'):
        assert parse_offset(bad) is None


def test_wire_status_frames() -> None:
    assert parse_status(status_frame(0)[1:]) == 0
    for bad in (b"", b"{}", b'{"exit_code": true}', b'{"exit_code": "1"}', b"[1]"):
        assert parse_status(bad) is None and exit_code_from_frame(bad) == 1


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        (False, JobTelemetry(cpu=0.25, memory=3.0, timestamp=1.5, memory_bytes=3 * MIB)),
        (
            True,
            JobTelemetry(
                cpu=0.25,
                memory=3.0,
                timestamp=1.5,
                memory_bytes=3 * MIB,
                gpu_duty_cycle=40,
                gpu_memory=2.0,
                gpu_memory_bytes=2 * MIB,
            ),
        ),
    ],
    ids=["cpu", "gpu"],
)
def test_wire_telemetry_frame_reads_back(gpu: bool, expected: JobTelemetry) -> None:
    text = telemetry_frame(
        cpu=0.25,
        memory=3 * MIB,
        timestamp=1.5,
        gpu_duty_cycle=40 if gpu else None,
        gpu_memory=2 * MIB if gpu else None,
    )
    assert telemetry_from_api(json.loads(text)) == expected
    assert json.loads(text)["memory"] == 3  # (MiB, as the official client reads it)


@pytest.mark.parametrize(
    ("text", "number", "spelling"),
    [
        ("USR1", signal.SIGUSR1, "SIGUSR1"),
        ("sigusr1", signal.SIGUSR1, "SIGUSR1"),
        (" term ", signal.SIGTERM, "SIGTERM"),
        ("10", 10, "10"),
        ("34", 34, "34"),
        ("0", None, "0"),
        ("65", None, "65"),
        ("NOPE", None, "SIGNOPE"),
        ("", None, "SIG"),
        ("SIG_DFL", None, "SIG_DFL"),
    ],
    ids=[
        "name",
        "lower-with-sig",
        "spaces",
        "number",
        "real-time",
        "zero",
        "too-big",
        "unknown",
        "empty",
        "not-a-signal",
    ],
)
def test_wire_signal_number(text: str, number: int | None, spelling: str) -> None:
    assert signal_number(text) == number
    assert signal_spelling(text) == spelling


def test_wire_signal_names() -> None:
    assert signal_name(signal.SIGUSR1) == "SIGUSR1"
    assert signal_name(int(signal.SIGRTMIN) + 1) == str(int(signal.SIGRTMIN) + 1)
    assert {signal.SIGKILL, signal.SIGSTOP} == UNCATCHABLE
