"""The job's output in the supervisor: read from its pipes or its PTY, appended to the log (the
supervisor is its only writer), and sent to attached clients from memory when they keep up,
else from the log by record (a client that falls MAX_LAG behind is dropped); input for the PTY
from clients attached with stdin."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import struct
import sys
import time

from ...logfile import RECORD, STDERR, STDOUT, LogWriter
from .. import control
from ..control import STREAM_TYPE, frame
from .clients import STDIN_HIGH, Client, ControlSocket

PIPE_SIZE = 1 << 20
OUT_HIGH = 256 << 10  # a client's send buffer is refilled from the log below this
MAX_LAG = 64 << 20  # a client this far behind the live output is dropped (spec: attach_max_lag)


class Output(ControlSocket):
    """Output and the TTY (the state is the Supervisor's: job.py)."""

    log: LogWriter | None
    log_r: int
    idx_r: int
    max_lag: int
    pipes: dict[int, int]  # read end (or the PTY master) -> stream
    master: int
    slave: int
    tty: bool
    veof: bytes
    creds: tuple[int, int] | None

    def pump(self, c: Client) -> None:
        """Send what the client is due: queued frames, then output from the log."""
        while not c.closed:
            if c.attached:
                assert self.log is not None
                if self.log.offset - max(c.pos, c.live_from) > self.max_lag:
                    print("supervisor: dropped a client that fell behind", file=sys.stderr)
                    self.drop(c)
                    return
                self.fill(c)
            if not c.out:
                break
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.drop(c)
                return
            del c.out[:n]
            if c.out:
                break
        if c.closed:
            return
        if c.ending and not c.out:
            self.drop(c)
        else:
            self.update(c)

    def fill(self, c: Client) -> None:
        """Take records from output.idx (their data from output.log) into the send buffer."""
        assert self.log is not None
        while len(c.out) < OUT_HIGH and c.rec < self.log.records:
            count = min(64, self.log.records - c.rec)
            raw = os.pread(self.idx_r, count * RECORD.size, c.rec * RECORD.size)
            for offset, _when, stream, length in RECORD.iter_unpack(raw):
                if stream in c.streams:
                    c.out += frame(STREAM_TYPE[stream], pread_all(self.log_r, length, offset))
                c.rec += 1
                c.pos = offset + length
                if len(c.out) >= OUT_HIGH:
                    break
        if c.exit_frame is not None and c.rec >= self.log.records:
            c.out += c.exit_frame
            c.exit_frame = None
            c.ending = True

    def output(self, data: bytes, stream: int) -> None:
        """The job printed ``data``: to the log, and to each attached client (straight from
        memory when it is caught up; the others read it from the log when they can)."""
        log = self.log
        assert log is not None
        records, offset = log.records, log.offset
        log.write(data, stream)
        # (on a full disk or past the output limit the log may have kept less, or more: a
        # marker line; clients then take what it has, as the others do)
        whole = log.records == records + 1 and log.offset == offset + len(data)
        for c in list(self.clients.values()):
            if not c.attached:
                continue
            if whole and c.rec == log.records - 1 and len(c.out) < OUT_HIGH:
                if stream in c.streams:
                    c.out += frame(STREAM_TYPE[stream], data)
                c.rec, c.pos = log.records, log.offset
            self.pump(c)

    # -- the TTY -----------------------------------------------------------------------------

    def open_stdio(self) -> tuple[tuple[int, int, int], tuple[int, ...]]:
        """The job's stdio (its 0, 1, 2) and the ends of it to close here once it runs: a
        PTY for a tty job (its session leader gets the slave as its controlling terminal),
        else /dev/null and two pipes that we read."""
        if self.tty:
            master, slave = os.openpty()
            set_winsize(master, *control.TTY_SIZE)
            os.set_blocking(master, False)
            try:
                import termios

                self.veof = termios.tcgetattr(master)[6][termios.VEOF] or b"\x04"
            except (OSError, ImportError, IndexError):
                pass
            if self.creds is not None:  # its terminal is its own (tty, mesg, ssh check)
                os.fchown(slave, *self.creds)
            self.master, self.slave = master, slave
            self.pipes[master] = STDOUT
            stdio = (slave, slave, slave)
            child_ends: tuple[int, ...] = ()
        else:
            null = os.open(os.devnull, os.O_RDONLY)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.pipes.update({out_r: STDOUT, err_r: STDERR})
            for fd in self.pipes:
                set_pipe_size(fd)
            stdio = (null, out_w, err_w)
            child_ends = stdio
        return stdio, child_ends

    def watch_master(self) -> None:
        if self.master >= 0:
            events = select.POLLIN | (select.POLLOUT if self.stdin_buf else 0)
            self.watch(self.master, events)

    def write_stdin(self) -> None:
        was_high = len(self.stdin_buf) > STDIN_HIGH
        try:
            n = os.write(self.master, self.stdin_buf)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:  # EIO: nobody has the TTY open any more
            n = len(self.stdin_buf)
        del self.stdin_buf[:n]
        self.watch_master()
        if was_high and len(self.stdin_buf) <= STDIN_HIGH:
            for c in list(self.clients.values()):
                self.update(c)

    def close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def on_pipe(self, fd: int, events: int) -> bool:
        """Output (or the TTY's stdin) is ready; True when output was read."""
        if fd == self.master and events & select.POLLOUT and self.stdin_buf:
            self.write_stdin()
        if not events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return False
        try:
            data = os.read(fd, PIPE_SIZE)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: a PTY whose other side is closed everywhere
                raise
            data = b""
        if data:
            self.output(data, self.pipes[fd])
            return True
        self.unwatch(fd)
        os.close(fd)
        del self.pipes[fd]
        if fd == self.master:
            self.master = -1
            self.stdin_buf.clear()
            for c in list(self.clients.values()):
                self.update(c)
        return False


def pread_all(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:  # a regular file reads short only at its end
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


NUDGE = 0.05  # seconds


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Set the TTY's size.  Set to the size it has, it is nudged first (one column less, for
    NUDGE seconds): the kernel signals only a change, and shells redraw only on one, so a
    client that attaches at the TTY's size sees the screen redrawn, as after any resize."""
    import fcntl
    import termios

    old = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))[:2]
    if old == (rows, cols) and cols > 1:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols - 1, 0, 0))
        time.sleep(NUDGE)  # (the job reads the nudged size before it changes back)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def set_pipe_size(fd: int) -> None:
    import fcntl

    with contextlib.suppress(OSError):  # fewer bytes per read, nothing worse
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
