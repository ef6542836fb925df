"""The one module that owns interactive terminals: raw mode, window size, detach keys, and
pumping a job's stdio (attach, exec, run -t) to and from the local terminal.

Raw mode is set once and restored exactly once, in ``finally``, whatever happens (errors,
signals, a dropped connection).  The initial window size is sent before any output is read,
then again on every SIGWINCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuro_sdk import StdStream

from .parse import DEFAULT_DETACH_KEYS, parse_detach_keys  # noqa: F401  (re-exported)


class DetachMatcher:
    """Watches typed bytes for the detach sequence.  Bytes that may start the sequence are
    held back; if the sequence breaks they are sent after all (so typing Ctrl-P alone
    still reaches the job)."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Returns (bytes to send, detach?)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for b in data:
            candidate = self.held + bytes([b])
            if self.keys.startswith(candidate):
                if candidate == self.keys:
                    self.held = b""
                    return bytes(out), True
                self.held = candidate
                continue
            out += self.held  # the sequence broke: what was held goes to the job after all
            if self.keys[0] == b:
                self.held = bytes([b])
            else:
                out.append(b)
                self.held = b""
        return bytes(out), False


def terminal_size(fd: int) -> tuple[int, int]:
    """(rows, columns) of the terminal on fd; 24x80 when it is not a terminal or does not know
    its size (0x0)."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return 24, 80
    if size.lines <= 0 or size.columns <= 0:
        return 24, 80
    return size.lines, size.columns


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal in raw mode; restore it exactly once on the way out."""
    old = termios.tcgetattr(fd)
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            restored = True
            termios.tcsetattr(fd, termios.TCSADRAIN, old)

    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        restore()


@dataclasses.dataclass
class Outcome:
    detached: bool = False
    killed: bool = False  # the user killed the job from the Ctrl-C dialog
    exit_code: int | None = None  # from the stream's exit frame, when there was one
    ended: bool = False  # the remote side ended the stream
    seen: int = 0  # output bytes delivered so far (to resume after a reconnect)


async def pump_tty(
    stream: StdStream,
    outcome: Outcome,
    *,
    detach_keys: bytes,
    stdin_fd: int | None = None,
    stdout_fd: int | None = None,
) -> None:
    """Connect the local terminal (raw mode) to a TTY stream until it ends or the user
    detaches; ``outcome`` says which, and counts the output bytes delivered."""
    in_fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    out_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    loop = asyncio.get_running_loop()
    matcher = DetachMatcher(detach_keys)
    detach = asyncio.Event()
    pending: list[asyncio.Task[Any]] = []

    async def send_size() -> None:
        rows, cols = terminal_size(out_fd)
        await stream.resize(rows, cols)

    def on_input() -> None:
        try:
            data = os.read(in_fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:  # EOF on the local terminal
            loop.remove_reader(in_fd)
            pending.append(loop.create_task(stream.close_stdin()))
            return
        send, detached = matcher.feed(data)
        if send:
            pending.append(loop.create_task(stream.write_in(send)))
        if detached:
            outcome.detached = True
            detach.set()

    def on_winch() -> None:
        pending.append(loop.create_task(send_size()))

    async def output() -> None:
        while True:
            msg = await stream.read_out()
            if msg is None:
                return
            outcome.seen += len(msg.data)
            view = memoryview(msg.data)
            while view:
                try:
                    n = os.write(out_fd, view)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                view = view[n:]

    with raw_mode(in_fd) if os.isatty(in_fd) else contextlib.nullcontext():
        await send_size()
        loop.add_reader(in_fd, on_input)
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(signal.SIGWINCH, on_winch)
        out_task = loop.create_task(output())
        detach_task = loop.create_task(detach.wait())
        try:
            await asyncio.wait({out_task, detach_task}, return_when=asyncio.FIRST_COMPLETED)
            if out_task.done():
                out_task.result()  # re-raise a connection error
                outcome.ended = True
                outcome.exit_code = getattr(stream, "exit_code", None)
        finally:
            loop.remove_reader(in_fd)
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signal.SIGWINCH)
            for t in (out_task, detach_task, *pending):
                if not t.done():
                    t.cancel()
            for t in (out_task, detach_task, *pending):
                with contextlib.suppress(BaseException):
                    await t


async def read_stdin(queue: asyncio.Queue[bytes | None], fd: int | None = None) -> None:
    """Local stdin into ``queue`` as it comes, then None at its end.

    Pipes and terminals are watched by the event loop, never read by a thread: a thread
    blocked in read() is one asyncio.run waits for on the way out, so a command that ended
    would still hang until stdin closed (``neuro exec JOB -- true < <(sleep 12)``).  Regular
    files and /dev/null, which epoll refuses, never block: they are read in place."""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno() if fd is None else fd
    ready = asyncio.Event()
    try:
        loop.add_reader(fd, ready.set)
    except (OSError, ValueError):  # a regular file, /dev/null, or no stdin at all
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            await queue.put(data or None)
            if not data:
                return
    import select

    try:
        while True:
            await ready.wait()
            ready.clear()
            # (a readiness callback from before the last read may have set it again: read only
            # what is there now, for the fd stays blocking; it may be the user's terminal)
            if not select.select([fd], [], [], 0)[0]:
                continue
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)  # (at EOF a pipe stays readable: do not spin)
            await queue.put(data or None)
            if not data:
                return
    finally:
        loop.remove_reader(fd)


async def pump_plain(
    stream: StdStream,
    outcome: Outcome,
    *,
    forward_stdin: bool,
    stdin_queue: asyncio.Queue[bytes | None] | None = None,
) -> None:
    """Non-TTY: stdout frames to stdout, stderr frames to stderr; local stdin (when
    forwarded, or taken from ``stdin_queue``) is sent as it comes and its EOF closes the
    remote stdin."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []

    async def drain_queue(queue: asyncio.Queue[bytes | None]) -> None:
        while True:
            data = await queue.get()
            if data is None:
                await stream.close_stdin()
                return
            await stream.write_in(data)

    if forward_stdin and stdin_queue is None:
        stdin_queue = asyncio.Queue(maxsize=16)
        tasks.append(loop.create_task(read_stdin(stdin_queue)))
    if stdin_queue is not None:
        tasks.append(loop.create_task(drain_queue(stdin_queue)))
    try:
        while True:
            msg = await stream.read_out()
            if msg is None:
                break
            outcome.seen += len(msg.data)
            data = msg.data
            target = sys.stderr if msg.fileno == 2 else sys.stdout
            buf = getattr(target, "buffer", None)
            if buf is not None:
                buf.write(data)
                buf.flush()
            else:  # pragma: no cover - test streams
                target.write(data.decode("utf-8", "replace"))
                target.flush()
        outcome.ended = True
        outcome.exit_code = getattr(stream, "exit_code", None)
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
