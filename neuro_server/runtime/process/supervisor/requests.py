"""What the supervisor's clients ask (control protocol: ../control.py): attach, stdin and EOF for
the TTY, resize, signals, exec (a command run beside the job, with the job's environment,
working dir, cgroup, namespaces and credentials) and its kill."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct

from ...logfile import STDERR, STDOUT
from .. import control
from ..control import HEADER, MAX_FRAME, frame, json_frame
from ..procfs import kill_session, killpg
from .clients import Client
from .output import Output, set_winsize
from .spawn import SpawnError, spawn, spawn_failure

TYPE_CHECKING = False  # typing itself costs milliseconds at every job start
if TYPE_CHECKING:
    from typing import Any

    from ... import cgroups

    Record = dict[str, Any]

MAX_FDS = 4  # fds that may come with one request (exec)
CLIENT_SNDBUF = 1 << 20  # socket send buffer of an attached client


class Requests(Output):
    """Clients' requests (the state is the Supervisor's: job.py)."""

    tty: bool
    veof: bytes
    pid: int  # the job's main process (and its process group)
    status: int | None  # its wait status, once reaped
    env: dict[str, str]  # for exec
    cwd: str
    cgroup: cgroups.JobCgroup | None
    rlimit: int | None
    view: bool
    creds: tuple[int, int] | None
    ns_fds: list[tuple[int, int]]

    def on_client(self, c: Client, events: int) -> None:
        if events & select.POLLOUT:
            self.pump(c)
        if c.closed or not events & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return
        try:
            data, ancdata, flags, _ = c.sock.recvmsg(
                65536, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
            )
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.drop(c)
            return
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(cdata) // 4
                c.fds.extend(struct.unpack(f"{n}i", cdata[: n * 4]))
        if not data or flags & socket.MSG_CTRUNC:
            self.drop(c)
            return
        c.inbuf += data
        while len(c.inbuf) >= HEADER.size and not c.closed:
            length, kind = HEADER.unpack_from(c.inbuf)
            if length > MAX_FRAME:
                self.drop(c)
                return
            if len(c.inbuf) < HEADER.size + length:
                break
            payload = bytes(c.inbuf[HEADER.size : HEADER.size + length])
            del c.inbuf[: HEADER.size + length]
            try:
                self.request(c, kind, payload)
            except (ValueError, TypeError, KeyError, AttributeError, struct.error) as e:
                self.refuse(c, f"bad request: {e}", end=True)
        self.pump(c)

    def reply(self, c: Client, data: bytes) -> None:
        c.out += data

    def refuse(self, c: Client, message: str, *, end: bool = False) -> None:
        c.out += frame(control.ERROR, message.encode(errors="replace"))
        if end:
            c.ending = True

    def request(self, c: Client, kind: int, payload: bytes) -> None:
        if c.ending:
            return
        if kind == control.ATTACH:
            self.on_attach(c, json.loads(payload))
        elif kind in (control.STDIN, control.EOF):
            if not (c.attached and c.stdin):
                self.refuse(c, "stdin is not attached: attach with stdin to a job with a tty")
            elif self.master >= 0:
                self.stdin_buf += payload if kind == control.STDIN else self.veof
                self.watch_master()
        elif kind == control.RESIZE:
            rows, cols = control.WINSIZE.unpack(payload)
            if self.master >= 0:
                set_winsize(self.master, rows, cols)
            self.reply(c, frame(control.ACK))
        elif kind in (control.SIGNAL, control.SIGNAL_MAIN):
            (signum,) = control.SIGNUM.unpack(payload)
            if not 0 < signum < signal.NSIG:
                self.refuse(c, f"bad signal number {signum}")
            elif self.status is not None:
                self.refuse(c, "the job has exited")
            else:
                if kind == control.SIGNAL:
                    killpg(self.pid, signum)
                else:  # the job's own process (still our unreaped child: its pid is its own)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(self.pid, signum)
                self.reply(c, frame(control.ACK))
        elif kind == control.EXEC:
            self.on_exec(c, json.loads(payload))
        elif kind == control.KILL:
            if c.exec_pid in self.execs:
                kill_session(c.exec_pid)
        else:
            self.refuse(c, f"unknown request type {kind}", end=True)

    def on_attach(self, c: Client, req: Record) -> None:
        if c.attached or c.exec_pid:
            self.refuse(c, "already attached", end=True)
            return
        if req.get("stdin") and not self.tty:
            self.refuse(c, "the job was not started with a tty: its stdin is not open", end=True)
            return
        streams = []
        if req.get("stdout"):
            streams.append(STDOUT)
        if req.get("stderr"):
            streams.append(STDERR)
        assert self.log is not None
        c.attached, c.streams, c.stdin = True, tuple(streams), bool(req.get("stdin"))
        c.live_from = self.log.offset
        c.rec, c.pos = (0, 0) if req.get("logs") else (self.log.records, self.log.offset)
        # output comes in chunks of up to PIPE_SIZE: let a reading client keep up
        with contextlib.suppress(OSError):
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF)
        self.reply(c, json_frame(control.ACK, {"tty": self.tty}))
        if self.status is not None and not self.pipes:  # the job is done: only the rest
            c.exit_frame = json_frame(control.EXIT, {"exit_code": self.exit_code()})

    def on_exec(self, c: Client, req: Record) -> None:
        fds, c.fds = c.fds, []
        null = -1
        try:
            if c.attached or c.exec_pid:
                self.refuse(c, "this connection is in use", end=True)
                return
            if self.status is not None:
                self.refuse(c, "the job is not running", end=True)
                return
            argv = [str(a) for a in req["argv"]]
            tty, with_stdin = bool(req.get("tty")), bool(req.get("stdin"))
            want = 1 if tty else 3 if with_stdin else 2
            if not argv or len(fds) != want:
                self.refuse(c, f"bad exec request: {len(argv)} args, {len(fds)} fds", end=True)
                return
            env = dict(self.env)
            env.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
            if tty:
                env.setdefault("TERM", "xterm")
                stdio = (fds[0], fds[0], fds[0])
                if self.creds is not None:
                    os.fchown(fds[0], *self.creds)
            elif with_stdin:
                stdio = (fds[0], fds[1], fds[2])
            else:
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                stdio = (null, fds[0], fds[1])
            if self.view and not self.ns_fds:
                self.refuse(c, "the job's mount namespace is gone", end=True)
                return
            try:
                pid = spawn(
                    argv,
                    env,
                    self.cwd,
                    stdio,
                    self.cgroup,
                    self.rlimit,
                    tty=tty,
                    enter=self.ns_fds,
                    creds=self.creds,
                )
            except SpawnError as e:
                code, message = spawn_failure(e, argv[0], self.cwd)
                with contextlib.suppress(OSError):
                    os.write(stdio[2], f"neuro: {message}\n".encode(errors="replace"))
                self.reply(c, json_frame(control.EXIT, {"exit_code": code, "error": message}))
                c.ending = True
                return
            c.exec_pid = pid
            self.execs[pid] = c
            self.reply(c, json_frame(control.ACK, {"pid": pid}))
        finally:
            for fd in fds:
                os.close(fd)
            if null >= 0:
                os.close(null)

    def exit_code(self) -> int:
        return 128 + signal.SIGKILL if self.status is None else exit_code(self.status)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
