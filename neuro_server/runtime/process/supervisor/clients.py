"""The supervisor's control socket (protocol: ../control.py) and its clients: the socket, the
poll set, and each client's connection (attached: a cursor into output.log; exec: the command
it runs).  What clients ask for is requests.py's; what they are sent, output.py's."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys

from ...jobdir import read_json, write_json
from .. import control
from ..procfs import kill_session

MAX_CLIENTS = 128
STDIN_HIGH = 256 << 10  # pending TTY input above this: stop reading the clients that send it


class Client:
    """One connection to the control socket."""

    __slots__ = (
        "attached",
        "closed",
        "ending",
        "exec_pid",
        "exit_frame",
        "fd",
        "fds",
        "inbuf",
        "live_from",
        "out",
        "pos",
        "rec",
        "sock",
        "stdin",
        "streams",
    )

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.out = bytearray()  # frames not yet sent
        self.fds: list[int] = []  # received with SCM_RIGHTS, for the next EXEC
        self.attached = False
        self.streams: tuple[int, ...] = ()
        self.stdin = False
        self.rec = 0  # attached: the next output.idx record to send
        self.pos = 0  # attached: output.log offset up to which records were taken
        self.live_from = 0  # attached: output.log offset when it attached
        self.exit_frame: bytes | None = None  # sent once all output was sent
        self.exec_pid = 0
        self.ending = False  # close once ``out`` is sent
        self.closed = False


class ControlSocket:
    """The control socket and its clients (the state is the Supervisor's: job.py)."""

    dir: str
    poller: select.poll
    events: dict[int, int]
    clients: dict[int, Client]
    execs: dict[int, Client]  # pid -> the client that ran it
    listener: socket.socket | None
    sock_path: str
    sock_id: tuple[int, int] | None
    stdin_buf: bytearray  # for the PTY

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def listen(self) -> None:
        """Bind the control socket (0600) and say where in control.json; without it the job
        still runs (attach and exec are refused then)."""
        try:
            path = control.socket_path(self.dir)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a dead supervisor's
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(path)
            except OSError:
                sock.close()
                raise
            finally:
                os.umask(old)
            sock.listen(64)
            sock.setblocking(False)
            st = os.stat(path)
            self.listener, self.sock_path, self.sock_id = sock, path, (st.st_dev, st.st_ino)
            write_json(self.path(control.CONTROL), {"path": path, "pid": os.getpid()})
        except OSError as e:
            print(f"supervisor: no control socket: {e}", file=sys.stderr)

    def close_listener(self) -> None:
        """Stop taking connections; remove the socket and control.json (if still ours)."""
        if self.listener is None:
            return
        self.unwatch(self.listener.fileno())
        self.listener.close()
        self.listener = None
        try:
            st = os.lstat(self.sock_path)
            if (st.st_dev, st.st_ino) == self.sock_id:
                os.unlink(self.sock_path)
        except OSError:
            pass
        record = read_json(self.path(control.CONTROL))
        if record is not None and record.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                os.unlink(self.path(control.CONTROL))

    def watch(self, fd: int, events: int) -> None:
        if fd not in self.events:
            self.poller.register(fd, events)
        elif self.events[fd] != events:
            self.poller.modify(fd, events)
        self.events[fd] = events

    def unwatch(self, fd: int) -> None:
        if self.events.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def accept(self) -> None:
        while self.listener is not None:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: the others go on
                print(f"supervisor: accept: {e}", file=sys.stderr)
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            c = Client(sock)
            self.clients[c.fd] = c
            self.update(c)

    def update(self, c: Client) -> None:
        if c.closed:
            return
        events = 0
        if not (c.stdin and len(self.stdin_buf) > STDIN_HIGH):
            events |= select.POLLIN
        if c.out:
            events |= select.POLLOUT
        self.watch(c.fd, events)

    def drop(self, c: Client) -> None:
        """Close a client; an exec'd process it still runs is killed."""
        if c.closed:
            return
        c.closed = True
        self.unwatch(c.fd)
        self.clients.pop(c.fd, None)
        c.sock.close()
        for fd in c.fds:
            os.close(fd)
        c.fds.clear()
        if c.exec_pid in self.execs:
            kill_session(c.exec_pid)
