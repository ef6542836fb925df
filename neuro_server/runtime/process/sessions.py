"""The server's side of a job supervisor's control socket (protocol in control.py): attach and
exec sessions (``StdioSession`` of base.py) and one-shot requests (resize, signal).

An attach session is one control connection: output arrives as frames, stdin and resizes go back
as frames.  An exec session is a control connection that handed the supervisor the new process's
fds (SCM_RIGHTS): the supervisor forks it (in the job's cgroup, env and working dir) and reports
its exit; the output and stdin flow through pipes (or a PTY) held here, not through the socket.
Closing the connection kills the process: it never outlives its session or the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import struct
from collections.abc import Mapping, Sequence

from ..base import RuntimeError_
from . import control

STDIN_CHUNK = 64 << 10  # bytes per STDIN frame
READ_SIZE = 64 << 10
QUEUE_HIGH = 1 << 20  # exec output queued here beyond this: stop reading until it is taken
CLOSE_TIMEOUT = 5.0


class _Conn:
    """A framed connection to a supervisor."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, kind: int, payload: bytes = b"") -> None:
        self.writer.write(control.frame(kind, payload))
        await self.writer.drain()

    async def recv(self) -> tuple[int, bytes] | None:
        """The next frame; None when the supervisor closed the connection."""
        try:
            head = await self.reader.readexactly(control.HEADER.size)
            length, kind = control.HEADER.unpack(head)
            if length > control.MAX_FRAME:
                return None
            return kind, await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return None

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def control_path(job_dir: str) -> str | None:
    """The control socket of the job's supervisor, as its control.json says."""
    try:
        with open(os.path.join(job_dir, control.CONTROL)) as f:
            record = json.load(f)
        return str(record["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


async def _connect_socket(job_dir: str, job_id: str) -> socket.socket:
    path = control_path(job_dir)
    if path is None:
        raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except OSError as e:
        sock.close()
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning") from e
        raise RuntimeError_(f"cannot reach the supervisor of job {job_id}: {e}") from e
    return sock


async def connect(job_dir: str, job_id: str) -> _Conn:
    sock = await _connect_socket(job_dir, job_id)
    try:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    return _Conn(reader, writer)


async def request(job_dir: str, job_id: str, kind: int, payload: bytes = b"") -> bytes:
    """One request, its ACK's payload; RuntimeError_ when refused."""
    conn = await connect(job_dir, job_id)
    try:
        await conn.send(kind, payload)
        reply = await conn.recv()
    except (ConnectionError, OSError) as e:
        raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning") from e
    finally:
        await conn.close()
    return _ack(reply, job_id)


def _ack(reply: tuple[int, bytes] | None, job_id: str) -> bytes:
    if reply is None:
        raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
    kind, payload = reply
    if kind == control.ERROR:
        raise RuntimeError_(f"job {job_id}: {payload.decode(errors='replace')}")
    if kind != control.ACK:
        raise RuntimeError_(f"job {job_id}: unexpected reply {kind} from its supervisor")
    return payload


# -- attach ----------------------------------------------------------------------------------


class AttachSession:
    """Attached to a running job's own stdio through its supervisor."""

    def __init__(self, conn: _Conn, job_id: str, stdin: bool, tty: bool) -> None:
        self._conn = conn
        self.job_id = job_id
        self.stdin = stdin
        self.tty = tty
        self.exit_code: int | None = None  # the job's, once it ended while attached
        self.error = ""  # the last request the supervisor refused
        self._ended = False
        self._closed = False

    @classmethod
    async def open(
        cls, job_dir: str, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool
    ) -> AttachSession:
        conn = await connect(job_dir, job_id)
        try:
            req = {"stdin": stdin, "stdout": stdout, "stderr": stderr, "logs": logs}
            await conn.send(control.ATTACH, json.dumps(req).encode())
            ack = json.loads(_ack(await conn.recv(), job_id) or b"{}")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, job_id, stdin, bool(ack.get("tty")))

    async def read(self) -> tuple[int, bytes] | None:
        while not self._ended:
            got = await self._conn.recv()
            if got is None:
                break
            kind, payload = got
            if kind == control.OUT:
                return 1, payload
            if kind == control.ERR:
                return 2, payload
            if kind == control.EXIT:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.exit_code = int(json.loads(payload)["exit_code"])
                break
            if kind == control.ERROR:
                self.error = payload.decode(errors="replace")
        self._ended = True
        return None

    async def _send(self, kind: int, payload: bytes = b"") -> None:
        if self._closed or self._ended:
            return
        with contextlib.suppress(ConnectionError, OSError):
            await self._conn.send(kind, payload)

    async def write(self, data: bytes) -> None:
        if not self.stdin:
            return
        for i in range(0, len(data), STDIN_CHUNK):
            await self._send(control.STDIN, data[i : i + STDIN_CHUNK])

    async def close_stdin(self) -> None:
        if self.stdin:
            await self._send(control.EOF)

    async def resize(self, height: int, width: int) -> None:
        if self.tty:
            await self._send(control.RESIZE, _winsize(height, width))

    async def wait(self) -> int | None:
        return None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._ended = True
            await self._conn.close()


def _winsize(height: int, width: int) -> bytes:
    if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
        raise RuntimeError_(f"bad terminal size {height}x{width}", reason="BadRequest")
    return control.WINSIZE.pack(height, width)


# -- exec ------------------------------------------------------------------------------------


class ExecSession:
    """A process run beside a job (forked by its supervisor); its stdio is held here."""

    def __init__(
        self,
        conn: _Conn,
        job_id: str,
        *,
        tty: bool,
        stdin: bool,
        outputs: dict[int, int],
        stdin_fd: int,
    ) -> None:
        self._conn = conn
        self.job_id = job_id
        self.tty = tty
        self.stdin = stdin
        self.pid = 0
        self.error = ""  # why it could not start (the message went to its stderr too)
        self._loop = asyncio.get_running_loop()
        self._outputs = dict(outputs)  # fd -> stream, open
        self._master = next(iter(outputs)) if tty else -1  # kept for resize until close
        self._stdin_fd = stdin_fd  # a pipe's write end (non-tty with stdin), else -1
        self._queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        self._queued = 0
        self._paused = False
        self._exit: asyncio.Future[int] = self._loop.create_future()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        job_dir: str,
        job_id: str,
        argv: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        env: Mapping[str, str] | None,
        size: tuple[int, int] = control.TTY_SIZE,
    ) -> ExecSession:
        if isinstance(argv, (str, bytes)) or not argv:
            raise RuntimeError_("exec needs a command", reason="BadRequest")
        req = {
            "argv": [str(a) for a in argv],
            "env": {str(k): str(v) for k, v in (env or {}).items()},
            "tty": tty,
            "stdin": stdin,
        }
        sock = await _connect_socket(job_dir, job_id)
        mine: list[int] = []  # kept here
        theirs: list[int] = []  # for the process; closed here once sent
        try:
            if tty:
                master, slave = os.openpty()
                mine.append(master)
                theirs.append(slave)
                _set_winsize(master, *size)
                outputs = {master: 1}
                stdin_fd = -1
            else:
                stdin_fd = -1
                if stdin:
                    in_r, in_w = os.pipe()
                    mine.append(in_w)
                    theirs.append(in_r)
                    stdin_fd = in_w
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                mine += [out_r, err_r]
                theirs += [out_w, err_w]
                outputs = {out_r: 1, err_r: 2}
            for fd in mine:
                os.set_blocking(fd, False)
            await _send_fds(sock, control.frame(control.EXEC, json.dumps(req).encode()), theirs)
        except BaseException:
            for fd in mine:
                os.close(fd)
            sock.close()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        try:
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except BaseException:
            sock.close()
            for fd in mine:
                os.close(fd)
            raise
        session = cls(
            _Conn(reader, writer), job_id, tty=tty, stdin=stdin, outputs=outputs, stdin_fd=stdin_fd
        )
        try:
            await session._started()
        except BaseException:
            await session.close()
            raise
        return session

    async def _started(self) -> None:
        reply = await self._conn.recv()
        if reply is not None and reply[0] == control.EXIT:  # it could not start
            record = json.loads(reply[1])
            self.error = str(record.get("error") or "")
            self._exit.set_result(int(record["exit_code"]))
        else:
            self.pid = int(json.loads(_ack(reply, self.job_id) or b"{}").get("pid", 0))
            self._watcher = asyncio.create_task(self._watch())
        for fd in self._outputs:
            self._loop.add_reader(fd, self._on_readable, fd)

    async def _watch(self) -> None:
        """The control connection: the process's exit code, or the supervisor's end."""
        code: int | None = None
        while (got := await self._conn.recv()) is not None:
            if got[0] == control.EXIT:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    code = int(json.loads(got[1])["exit_code"])
                break
        if not self._exit.done():
            if code is None:
                self._exit.set_exception(
                    RuntimeError_(f"job {self.job_id}: its supervisor is gone", reason="NotFound")
                )
                self._exit.exception()  # retrieved: nobody may wait
            else:
                self._exit.set_result(code)

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the PTY's slave is closed everywhere
                raise
            data = b""
        if data:
            self._queued += len(data)
            self._queue.put_nowait((self._outputs[fd], data))
            if self._queued > QUEUE_HIGH and not self._paused:
                self._paused = True
                for f in self._outputs:
                    self._loop.remove_reader(f)
            return
        self._loop.remove_reader(fd)
        del self._outputs[fd]
        if fd != self._master:
            os.close(fd)
        if not self._outputs:
            self._queue.put_nowait(None)

    async def read(self) -> tuple[int, bytes] | None:
        if self._closed:
            return None
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later read ends too
            return None
        self._queued -= len(item[1])
        if self._paused and self._queued <= QUEUE_HIGH // 2:
            self._paused = False
            for fd in self._outputs:
                self._loop.add_reader(fd, self._on_readable, fd)
        return item

    async def write(self, data: bytes) -> None:
        fd = self._master if self.tty else self._stdin_fd
        if fd < 0 or self._closed or not data or not self.stdin:
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except (BlockingIOError, InterruptedError):
                await _writable(fd)
            except OSError as e:  # EPIPE / EIO: the process is gone or closed its stdin
                if e.errno in (errno.EPIPE, errno.EIO):
                    return
                raise

    async def close_stdin(self) -> None:
        if self._closed or not self.stdin:
            return
        if self.tty:
            await self.write(_veof(self._master))
        elif self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1

    async def resize(self, height: int, width: int) -> None:
        if self.tty and self._master >= 0 and not self._closed:
            _winsize(height, width)
            _set_winsize(self._master, height, width)

    async def wait(self) -> int | None:
        return await asyncio.shield(self._exit)

    async def close(self) -> None:
        """Kill the process if it still runs (its supervisor reaps it), release everything."""
        if self._closed:
            return
        self._closed = True
        if not self._exit.done():
            with contextlib.suppress(ConnectionError, OSError):
                await self._conn.send(control.KILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._exit), CLOSE_TIMEOUT)
        await self._conn.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        for fd in list(self._outputs):
            self._loop.remove_reader(fd)
            if fd != self._master:
                os.close(fd)
        self._outputs.clear()
        if self._master >= 0:
            os.close(self._master)
            self._master = -1
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1
        self._queue.put_nowait(None)


async def _send_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    """sendmsg with SCM_RIGHTS on a non-blocking socket (a fresh one: it hardly ever waits)."""
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
    sent = 0
    while sent < len(data):
        try:
            n = sock.sendmsg([data[sent:]], ancillary if sent == 0 else [])
        except (BlockingIOError, InterruptedError):
            await _writable(sock.fileno())
            continue
        sent += n


async def _writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_writable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, on_writable)
    try:
        await ready
    finally:
        loop.remove_writer(fd)


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _veof(fd: int) -> bytes:
    import termios

    try:
        return termios.tcgetattr(fd)[6][termios.VEOF] or b"\x04"
    except (OSError, termios.error):
        return b"\x04"
