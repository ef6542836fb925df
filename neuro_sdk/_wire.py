"""The wire vocabulary the client and our server share, defined once (protocol.md 4, and our
extensions): websocket subprotocols, the channel framing of attach and exec streams, the query
names of our extensions, signal names, and the ``server.json`` an embedded server publishes.

Pure: the standard library only, no I/O.  ``neuro_server`` imports it (as docker's daemon and
client share ``api/types``); nothing here knows the server or the CLI.

Frames of an attach or exec stream (subprotocol :data:`CHANNELS_PROTOCOL`) are one channel byte
and a payload::

    client -> server   STDIN + bytes | RESIZE + {"height", "width"} | CLOSE + STDIN (stdin EOF)
    server -> client   STDOUT | STDERR + bytes, STATUS + {"exit_code"} (the last frame),
                       OFFSET + {"offset": N[, "exec_id"]} (our extension, the first frame)
"""

from __future__ import annotations

import json
import signal as _signal
from typing import Any, TypedDict

# -- websocket subprotocols ---------------------------------------------------------------------

CHANNELS_PROTOCOL = "v2.channels.neu.ro"
"""The channel framing of attach and exec (protocol 4.1)."""
ATTACH_PROTOCOL = "attach.apolo.us"
"""The official client's name for the same framing on ``attach``."""
TOP_PROTOCOL = "top.apolo.us"
"""``top``: one JSON text frame of telemetry per sample."""
LOGS_PROTOCOL = "logs.apolo.us"
"""``log_ws``: the job's output as binary frames."""
LOG_OFFSET_PROTOCOL = "offset.logs.neuro"
"""Our extension of ``log_ws``: a client that asks for it may pass ``offset=N`` (bytes of this
same stream it already has) and gets the stream from byte N on; the server agrees by choosing
this subprotocol.  The official client asks for neither and sees nothing new."""

# -- channels -----------------------------------------------------------------------------------

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
OFFSET = 5
"""Our extension, server -> client: ``0x05`` + ``{"offset": N}``, the byte of the output a stream
starts at (attach with ``?offset=``; a resumable exec adds its ``exec_id``)."""

CLOSE_STDIN_FRAME = bytes([CLOSE, STDIN])
"""Client -> server "close channel 0" (stdin EOF), the k8s v5 convention."""

MAX_TERMINAL = 10000
"""Rows and columns of a terminal are 1..MAX_TERMINAL."""

# -- query names of our extensions --------------------------------------------------------------

Q_OFFSET = "offset"
"""attach: ``offset=N|end`` (resume the output at a byte); log_ws: ``offset=N``; a resumed exec:
``offset=N``."""
OFFSET_END = "end"
"""attach ``offset=end``: from the end of the output so far (nothing old, then live)."""
Q_LOGS = "logs"
"""attach ``logs=1``: the job's output so far before the live output."""
Q_HEIGHT, Q_WIDTH = "h", "w"
"""exec: a TTY's rows and columns at start (as ``exec_resize`` takes them)."""
Q_RESUMABLE = "resumable"
"""exec ``resumable=1``: the command outlives a dropped connection for a while."""
Q_RESUME = "resume"
"""exec ``resume=EXEC_ID&offset=N``: reconnect to a resumable exec at byte N of its output."""


def channel_frame(channel: int, payload: bytes = b"") -> bytes:
    """One frame: the channel byte, then the payload."""
    return bytes([channel]) + payload


def stdin_frame(data: bytes, *, legacy: bool = False) -> bytes:
    """Client -> server stdin: ``0x00`` + bytes (legacy exec_start: the bytes alone)."""
    return bytes(data) if legacy else channel_frame(STDIN, data)


def resize_frame(*, h: int, w: int) -> bytes:
    """Client -> server terminal size: ``0x04`` + ``{"height": h, "width": w}``."""
    return channel_frame(RESIZE, json.dumps({"height": int(h), "width": int(w)}).encode())


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(height, width) of a resize frame's payload; None for garbage (a size out of
    1..MAX_TERMINAL too: a terminal cannot take it), which a server ignores."""
    try:
        size = json.loads(payload)
        h, w = int(size["height"]), int(size["width"])
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return None
    return (h, w) if 0 < h <= MAX_TERMINAL and 0 < w <= MAX_TERMINAL else None


def status_frame(exit_code: int) -> bytes:
    """Server -> client, the last frame: ``0x03`` + ``{"exit_code": N}``."""
    return channel_frame(STATUS, json.dumps({"exit_code": exit_code}).encode())


def offset_frame(offset: int, *, exec_id: str | None = None) -> bytes:
    """Server -> client, the first frame (our extension): ``0x05`` + ``{"offset": N}``, with
    the ``exec_id`` of a resumable exec first when there is one."""
    data: dict[str, Any] = {} if exec_id is None else {"exec_id": exec_id}
    data["offset"] = offset
    return channel_frame(OFFSET, json.dumps(data).encode())


def parse_status(payload: bytes) -> int | None:
    """The exit code of a STATUS frame's payload; None when it has none (malformed)."""
    data = _json_object(payload)
    code = data.get("exit_code") if data is not None else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def parse_offset(payload: bytes) -> tuple[int, str | None] | None:
    """(offset, exec_id or None) of an OFFSET frame's payload; None when malformed."""
    data = _json_object(payload)
    offset = data.get("offset") if data is not None else None
    if data is None or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return None
    exec_id = data.get("exec_id")
    return offset, exec_id if isinstance(exec_id, str) else None


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


# -- telemetry (``top``) --------------------------------------------------------------------------

_MIB = 1 << 20


def telemetry_frame(
    *,
    cpu: float,
    memory: int,
    timestamp: float,
    gpu_duty_cycle: int | None = None,
    gpu_memory: int | None = None,
) -> str:
    """One ``top`` text frame (protocol 4.3): ``cpu`` in cores, ``memory`` in MiB and, our
    extension, ``memory_bytes`` exactly; the GPU keys only when the job has a GPU's numbers
    (``gpu_memory`` in MiB, ``gpu_memory_bytes``)."""
    frame: dict[str, Any] = {
        "cpu": round(cpu, 4),
        "memory": memory // _MIB,
        "memory_bytes": memory,
        "timestamp": timestamp,
    }
    if gpu_duty_cycle is not None:
        frame["gpu_duty_cycle"] = gpu_duty_cycle
    if gpu_memory is not None:
        frame["gpu_memory"] = gpu_memory // _MIB
        frame["gpu_memory_bytes"] = gpu_memory
    return json.dumps(frame)


# -- signals ------------------------------------------------------------------------------------

UNCATCHABLE = frozenset({int(_signal.SIGKILL), int(_signal.SIGSTOP)})
"""Signals a job cannot catch (no use as a life-span signal)."""


def signal_number(text: str) -> int | None:
    """'USR1', 'SIGUSR1', 'usr1' or '10' -> 10; None when it names no signal of this system."""
    text = text.strip()
    if text.isdigit():
        num = int(text)
        return num if num != 0 and num in {int(s) for s in _signal.valid_signals()} else None
    sig = getattr(_signal, signal_spelling(text), None)
    return int(sig) if isinstance(sig, _signal.Signals) else None


def signal_spelling(text: str) -> str:
    """How a signal given by name is sent: upper case with its ``SIG`` (``usr1`` ->
    ``SIGUSR1``); a number stays as it is."""
    text = text.strip()
    if text.isdigit():
        return text
    name = text.upper()
    return name if name.startswith("SIG") else "SIG" + name


def signal_name(num: int) -> str:
    """SIGUSR1 for 10; the number itself for a real-time signal (no name of its own)."""
    try:
        return _signal.Signals(num).name
    except ValueError:
        return str(num)


# -- server.json: how an embedded server tells the client where it is ---------------------------

SERVER_DIR = "server"
"""The embedded server's data dir, under the client's config dir."""
SERVER_INFO_FILE = "server.json"
"""In the server's data dir: a :class:`ServerInfo`, written once the server listens (mode
0600) and removed when it stops."""


class ServerInfo(TypedDict):
    """The contents of ``server.json``."""

    url: str
    """The API's base URL: ``http://127.0.0.1:PORT/api/v1``."""
    pid: int
    """The server's process: the file is stale once it is gone."""
    token_file: str
    """A file (mode 0600) holding the local user's token."""
    server_config: dict[str, Any]
    """The ``GET /config`` answer, so that a client needs no request to learn it."""


def server_info_json(info: ServerInfo) -> str:
    """The text of ``server.json``."""
    return json.dumps(info)
