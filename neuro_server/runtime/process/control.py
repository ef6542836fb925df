"""The control protocol between a job's supervisor and the server (attach, stdin, resize, signal,
exec).  Standard library only and light: the supervisor imports it at every job start.

The supervisor listens on a unix stream socket (mode 0600).  Its path is in ``control.json`` in
the job dir: ``JOB_DIR/control.sock`` when that is short enough for AF_UNIX, else
``/tmp/neuro-<uid>/<hash>.sock`` (a directory of mode 0700 owned by the uid).

Every message either way is one frame::

    length: u32 big-endian (of the payload only) | type: u8 | payload (length bytes)

Client -> supervisor:

    ATTACH  JSON {"stdin", "stdout", "stderr", "logs"}  -> ACK, then OUT/ERR frames, then EXIT
    STDIN   raw bytes for the job's TTY (attached with stdin; TTY jobs only)
    EOF     (empty) the TTY's VEOF character (^D)
    RESIZE  u16 rows, u16 cols                           -> ACK (a no-op without a TTY)
    SIGNAL  u32 signum, to the job's process group       -> ACK
    SIGNAL_MAIN  u32 signum, to the job's own process only (not its children) -> ACK
    EXEC    JSON {"argv", "env", "tty", "stdin"} and, as SCM_RIGHTS on the same send, the
            process's fds: tty -> [pty slave]; else [stdin read end if "stdin"] + [stdout write
            end, stderr write end].  -> ACK {"pid"} then EXIT {"exit_code"} when it ended; or
            EXIT {"exit_code": 126|127, "error"} at once when it cannot start (the message is
            also written to its stderr).  Closing the connection kills the exec'd process.
    KILL    (empty) SIGKILL the exec'd process's session

Supervisor -> client:

    ACK     JSON (may be empty) the request was done
    ERROR   UTF-8 text: the request was refused (the supervisor closes after a refused ATTACH)
    OUT     stdout bytes (everything, on a TTY)
    ERR     stderr bytes
    EXIT    JSON {"exit_code"}: the job (attach) or the exec'd process ended; nothing follows

STDIN and EOF get no ACK (an ERROR when refused).  Frames carry at most MAX_FRAME bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct

HEADER = struct.Struct("!IB")
TTY_SIZE = (24, 80)  # rows, columns of a terminal until a client says its size
WINSIZE = struct.Struct("!HH")
SIGNUM = struct.Struct("!I")
MAX_FRAME = 4 << 20

# client -> supervisor
ATTACH, STDIN, EOF, RESIZE, SIGNAL, EXEC, KILL, SIGNAL_MAIN = 1, 2, 3, 4, 5, 6, 7, 8
# supervisor -> client
ACK, ERROR, OUT, ERR, EXIT = 0x81, 0x82, 0x83, 0x84, 0x85
STREAM_TYPE = {1: OUT, 2: ERR}

CONTROL = "control.json"  # {"path": the socket, "pid": the supervisor}
SOCKET_NAME = "control.sock"
MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), kind) + payload


def json_frame(kind: int, data: object) -> bytes:
    return frame(kind, json.dumps(data).encode())


def socket_path(job_dir: str) -> str:
    """Where the supervisor of ``job_dir`` listens: in the job dir when the path fits."""
    path = os.path.join(job_dir, SOCKET_NAME)
    if len(os.fsencode(path)) <= MAX_UNIX_PATH:
        return path
    import hashlib  # only for long job dirs: it costs milliseconds to import

    digest = hashlib.sha256(os.fsencode(os.path.abspath(job_dir))).hexdigest()[:24]
    return os.path.join(short_dir(), f"{digest}.sock")


def short_dir() -> str:
    """``/tmp/neuro-<uid>``, created 0700; refused when someone else owns it or it is a link."""
    d = f"/tmp/neuro-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(d, 0o700)
    import stat

    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{d} is not a private directory of uid {os.getuid()}")
    return d
