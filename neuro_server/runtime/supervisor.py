"""The per-job supervisor of the process runtime (like containerd's shim or podman's conmon).

    python -m neuro_server.runtime.supervisor JOB_DIR [--ready-fd N]

It detaches from the server (fork; the server reaps only the short-lived parent), owns the job's
process and its pipes or PTY, appends the output to ``output.log``/``output.idx``, enforces limits
(cgroups, else rlimits), stops the job on SIGTERM (grace period from ``stop.json``), and records
the exit in ``exit.json`` before it exits.  Jobs thereby outlive the server.

While the job runs it serves a control socket (protocol in control.py): any server process can
attach to the output (live, or the log so far and then live, with no gap: this process is the
only writer), write to the TTY, resize it, signal the job, and run commands beside it (exec).
One thread, one poll loop; a slow client never holds up the job or the log (each client is a
cursor into output.log; one that falls MAX_LAG behind is dropped).

Standard library only, and nothing heavy: it starts for every job.

Job directory layout (all JSON written atomically: tmp file, rename):
    spec.json        written by the server: argv, env, working_dir, cpu, memory, cgroup_parent,
                     uid, gid, home (who the job runs as: jobusers.py)...
    supervisor.json  {pid, starttime, boot_id, started_at} of this supervisor (pid reuse check)
    started.json     {pid, starttime, pgid, started_at, limits} once the job's process runs
    stop.json        {grace} written by the server before it sends SIGTERM here
    exit.json        {exit_code, oom_killed, finished_at, error, started_at, limits} (fsynced)
    *.json.slot      room for supervisor.json, started.json and exit.json, taken by the server
                     before the start: written in place and renamed, a record needs no new
                     space, so a full disk cannot cost a job its exit code (write_record)
    output.reserve   a little space the log gives up at the end (logfile.py)
    control.json     {path, pid}: where this supervisor's control socket listens (control.py)
    control.sock     the control socket (attach, stdin, resize, signal, exec) while the job runs
    output.log, output.idx   the job's output (see logfile.py)
    supervisor.log   this process's own stdout/stderr (tracebacks)
    work/            the job's working directory unless the spec names one (or a home:
                     a job of a uid of its own works in HOME/jobs/JOB_ID, its home's)
    view/            empty on the host: where the job's own view of the files is built (mountns.py)
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import struct
import sys
import time

from . import cgroups, control
from .control import HEADER, MAX_FRAME, STREAM_TYPE, frame, json_frame
from .logfile import IDX_NAME, LOG_NAME, RECORD, STDERR, STDOUT, LogWriter

TYPE_CHECKING = False  # typing itself costs milliseconds at every job start
if TYPE_CHECKING:
    from typing import Any

    Record = dict[str, Any]

SPEC = "spec.json"
SUPERVISOR = "supervisor.json"
STARTED = "started.json"
STOP = "stop.json"
EXIT = "exit.json"
SUPERVISOR_LOG = "supervisor.log"
WORK = "work"
VIEW = "view"  # an empty directory where a job's own view of the files is built (mountns.py)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_GRACE = 10.0
DRAIN_TIMEOUT = 2.0  # after the job's end: how long a pipe may stay silent before we stop reading
PIPE_SIZE = 1 << 20
PR_SET_CHILD_SUBREAPER = 36
MAX_CLIENTS = 128
OUT_HIGH = 256 << 10  # a client's send buffer is refilled from the log below this
MAX_LAG = 64 << 20  # a client this far behind the live output is dropped (spec: attach_max_lag)
CLIENT_SNDBUF = 1 << 20  # socket send buffer of an attached client
STDIN_HIGH = 256 << 10  # pending TTY input above this: stop reading the clients that send it
FLUSH_TIMEOUT = 2.0  # after the job's end: how long attached clients get to take the rest
PR_SET_PDEATHSIG = 1
SLOT_SIZE = 4096  # bytes of a record's slot: one page, one block
MAX_FDS = 4  # fds that may come with one request (exec)


# -- small file helpers, shared with process.py ------------------------------------------------


def iso_now(t: float | None = None) -> str:
    """``2024-05-01T12:00:00.123456+00:00``: what datetime.fromisoformat reads back."""
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}+00:00"


def write_json(path: str, data: Record, *, durable: bool = False) -> None:
    """Write atomically (readers see the old file or the new one); ``durable``: fsync too."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.rename(tmp, path)
    if durable:
        _fsync_dir(path)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_slot(path: str) -> None:
    """Take the room of the record ``path`` now (``path.slot``, SLOT_SIZE bytes written):
    write_record fills it in place later, which needs no new space.  OSError (ENOSPC) when
    there is no room even now."""
    fd = os.open(f"{path}.slot", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, b" " * SLOT_SIZE)  # real bytes: allocated now, on every filesystem
    finally:
        os.close(fd)


def write_record(path: str, data: Record, *, durable: bool = False) -> None:
    """write_json, on a full disk too: into ``path``'s slot in place (the JSON padded with
    spaces, which readers skip), then renamed over ``path`` (atomic; a rename needs no data
    space).  Without a slot (or a record too long for one), write_json."""
    body = json.dumps(data).encode()
    try:
        fd = os.open(f"{path}.slot", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd < 0 or len(body) > SLOT_SIZE:
        if fd >= 0:
            os.close(fd)
        write_json(path, data, durable=durable)
        return
    try:
        os.pwrite(fd, body.ljust(SLOT_SIZE), 0)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(f"{path}.slot", path)
    if durable:
        _fsync_dir(path)


def read_json(path: str) -> Record | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks since boot)`` of a live pid, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0].decode(), int(fields[19])


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def supervisor_alive(record: Record) -> bool:
    """Whether the supervisor described by supervisor.json still runs (not a reused pid)."""
    try:
        pid, starttime = int(record["pid"]), int(record["starttime"])
    except (KeyError, TypeError, ValueError):
        return False
    if record.get("boot_id", "") != boot_id():
        return False
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in "ZXx" and stat[1] == starttime


# -- starting the job ----------------------------------------------------------------------------


class SpawnError(Exception):
    def __init__(self, stage: str, err: int, text: str) -> None:
        super().__init__(text)
        self.stage, self.errno, self.text = stage, err, text


def spawn(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    stdio: tuple[int, int, int],
    cgroup: cgroups.JobCgroup | None,
    rlimit_data: int | None,
    tty: bool = False,
    view: tuple[Any, ...] | None = None,
    enter: list[tuple[int, int]] | None = None,
    creds: tuple[int, int] | None = None,
    make_cwd: bool = False,
) -> int:
    """fork+exec the job in its own session, its cgroup joined before exec; returns its pid.

    ``stdio`` are the fds for the job's 0, 1, 2 (pipes, or a PTY's slave three times with
    ``tty``: it becomes the session's controlling terminal).  ``view``: the arguments of
    mountns.enter_view (the job's own mounts); ``enter``: the namespaces of a job to join
    (exec beside a job with a view).  ``creds``: the (uid, gid) it runs as, dropped to (no
    supplementary groups) once all that is done, so only the job's own permissions apply to
    ``cwd`` (made then, with ``make_cwd``) and what it runs.  Jobs get a umask of 022 (the
    server's is 077).  A failure before exec comes back through a close-on-exec pipe as
    SpawnError.
    """
    if view is not None or enter:
        from . import mountns
    if tty:
        import fcntl
        import termios
    if rlimit_data is not None:
        import resource
    parent = os.getpid()
    prctl = _libc().prctl
    err_r, err_w = os.pipe()  # close-on-exec: EOF without data means exec succeeded
    pid = os.fork()
    if pid == 0:  # the child: only ever leaves through exec or _exit
        stage = "setup"
        try:
            os.close(err_r)
            signal.set_wakeup_fd(-1)
            for s in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; jobs must not
                signal.signal(s, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.umask(0o022)  # (before the view too: what it makes must be open to the job)
            os.setsid()
            if tty:
                stage = "tty"
                fcntl.ioctl(stdio[0], termios.TIOCSCTTY, 0)
            if cgroup is not None:
                stage = "cgroup"
                cgroup.join(os.getpid())
            if rlimit_data is not None:
                stage = "rlimit"
                _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
                limit = rlimit_data if hard == resource.RLIM_INFINITY else min(rlimit_data, hard)
                resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
            if view is not None:
                stage = "mounts"
                mountns.enter_view(*view)
            if enter:
                stage = "namespaces"
                mountns.enter(enter)
            stage = "stdio"
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            if creds is not None:
                stage = "user"
                os.setgroups([])
                os.setgid(creds[1])
                os.setuid(creds[0])
            stage = "cwd"
            if make_cwd:
                os.makedirs(cwd, exist_ok=True)
            os.chdir(cwd)
            stage = "exec"
            # the supervisor's death takes the job's first process with it (its children
            # are the server's to kill then: process.py); set last, as a change of
            # credentials (a user namespace, a uid) clears it
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died already
                os._exit(128 + signal.SIGKILL)
            os.execvpe(argv[0], argv, env)
        except OSError as e:
            report = f"{stage}\0{e.errno or 0}\0{e.strerror or e}"
        except BaseException as e:  # noqa: BLE001 - anything at all must reach the parent
            report = f"{stage}\0{0}\0{e!r}"
        try:
            os.write(err_w, report.encode(errors="replace"))
        finally:
            os._exit(127)
    os.close(err_w)
    chunks = []
    while chunk := os.read(err_r, 4096):
        chunks.append(chunk)
    os.close(err_r)
    if chunks:
        os.waitpid(pid, 0)
        stage, err, text = b"".join(chunks).decode(errors="replace").split("\0", 2)
        raise SpawnError(stage, int(err), text)
    return pid


def spawn_failure(e: SpawnError, argv0: str, cwd: str) -> tuple[int, str]:
    """Exit code and message (shell conventions: 127 not found, 126 cannot execute)."""
    if e.stage == "cwd":
        return 127, f'cannot run "{argv0}": working directory "{cwd}": {e.text}'
    if e.stage == "exec":
        code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        return code, f'cannot run "{argv0}": {e.text}'
    if e.stage == "mounts":
        return 125, f"cannot place the job's volumes: {e.text}"
    return 127, f'cannot run "{argv0}": {e.stage}: {e.text}'


# -- the supervisor ------------------------------------------------------------------------------


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


class Supervisor:
    def __init__(self, job_dir: str, ready_fd: int = -1) -> None:
        self.dir = job_dir
        self.ready_fd = ready_fd  # written and closed once the job runs or could not start
        spec = read_json(self.path(SPEC))
        if spec is None:
            raise SystemExit(f"supervisor: no readable {SPEC} in {job_dir}")
        self.spec = spec
        self.tty = bool(spec.get("tty"))
        try:
            self.max_lag = int(spec.get("attach_max_lag") or MAX_LAG)
        except (TypeError, ValueError):
            self.max_lag = MAX_LAG
        self.signals: list[int] = []
        self.cgroup: cgroups.JobCgroup | None = None
        self.rlimit: int | None = None
        self.env: dict[str, str] = {}
        self.cwd = ""
        self.view = bool(spec.get("mounts") or spec.get("files"))  # a mount namespace of its own
        self.creds = _creds(spec)  # (uid, gid) the job and its execs run as; None: ours
        self.ns_fds: list[tuple[int, int]] = []  # its namespaces, for exec
        self.pid = 0  # the job's main process (and its process group)
        self.status: int | None = None
        self.kill_at: float | None = None
        self.started_at = ""
        self.limits = ""
        self.pipes: dict[int, int] = {}  # read end (or the PTY master) -> stream
        self.master = -1  # the PTY master of a tty job while it is open
        # our copy of the PTY's slave, kept until the job's main process is reaped: else a job
        # that closes its stdio before it exits (GNU cat does) would read EIO here, we would
        # close the master, and the kernel's hangup would SIGHUP the job as it exits
        self.slave = -1
        self.stdin_buf = bytearray()  # for the PTY
        self.veof = b"\x04"
        self.log: LogWriter | None = None
        self.log_r = self.idx_r = -1
        self.listener: socket.socket | None = None
        self.sock_path = ""
        self.sock_id: tuple[int, int] | None = None
        self.clients: dict[int, Client] = {}
        self.execs: dict[int, Client] = {}  # pid -> the client that ran it
        self.poller = select.poll()
        self.events: dict[int, int] = {}

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        for s in (
            signal.SIGTERM,
            signal.SIGUSR2,
            signal.SIGCHLD,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGQUIT,
            signal.SIGUSR1,
        ):
            signal.signal(s, self.on_signal)
        _set_subreaper()
        me = os.getpid()
        stat = proc_stat(me)
        write_record(
            self.path(SUPERVISOR),
            {
                "pid": me,
                "starttime": stat[1] if stat else 0,
                "boot_id": boot_id(),
                "started_at": iso_now(),
            },
        )
        try:
            limit = max(0, int(self.spec.get("output_limit") or 0))
        except (TypeError, ValueError):
            limit = 0
        log = self.log = LogWriter(self.dir, limit=limit)
        self.log_r = os.open(self.path(LOG_NAME), os.O_RDONLY | os.O_CLOEXEC)
        self.idx_r = os.open(self.path(IDX_NAME), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.listen()
            started = self.start(log)
            self.ready()
            if started:
                try:
                    self.supervise(log, wake_r)
                except Exception as e:  # noqa: BLE001 - whatever it is, record the exit
                    # never leave a job running that nobody watches, nor a job without its exit
                    import traceback

                    traceback.print_exc()
                    if self.status is None:
                        self.kill_all(signal.SIGKILL)
                        try:
                            self.status = os.waitpid(self.pid, 0)[1]
                        except ChildProcessError:
                            pass
                    self.close_listener()
                    code = self.finish(error=f"the job's supervisor failed: {e!r}")
                else:
                    self.close_listener()
                    code = self.finish()
                self.farewell(wake_r, code)
        finally:
            self.close_listener()
            for c in list(self.clients.values()):
                self.drop(c)
            self.close_slave()
            if self.master >= 0:
                os.close(self.master)
                self.master = -1
            self.close_namespaces()
            log.close()
            os.close(self.log_r)
            os.close(self.idx_r)
            if self.cgroup is not None:
                left = self.cgroup.remove()
                if left:
                    print(f"supervisor: cgroups not removed: {left}", file=sys.stderr)

    def ready(self) -> None:
        if self.ready_fd >= 0:
            try:
                os.write(self.ready_fd, b"1")
            except OSError:
                pass  # the server is gone: it will read the files
            os.close(self.ready_fd)
            self.ready_fd = -1

    # -- the control socket ----------------------------------------------------------------------

    def listen(self) -> None:
        """Bind the control socket (0600) and say where in control.json; without it the job
        still runs (attach and exec are refused then)."""
        try:
            path = control.socket_path(self.dir)
            try:
                os.unlink(path)  # a dead supervisor's
            except FileNotFoundError:
                pass
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
            try:
                os.unlink(self.path(control.CONTROL))
            except OSError:
                pass

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
            _kill_session(c.exec_pid)

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
                _set_winsize(self.master, rows, cols)
            self.reply(c, frame(control.ACK))
        elif kind in (control.SIGNAL, control.SIGNAL_MAIN):
            (signum,) = control.SIGNUM.unpack(payload)
            if not 0 < signum < signal.NSIG:
                self.refuse(c, f"bad signal number {signum}")
            elif self.status is not None:
                self.refuse(c, "the job has exited")
            else:
                if kind == control.SIGNAL:
                    _killpg(self.pid, signum)
                else:  # the job's own process (still our unreaped child: its pid is its own)
                    try:
                        os.kill(self.pid, signum)
                    except (ProcessLookupError, PermissionError):
                        pass
                self.reply(c, frame(control.ACK))
        elif kind == control.EXEC:
            self.on_exec(c, json.loads(payload))
        elif kind == control.KILL:
            if c.exec_pid in self.execs:
                _kill_session(c.exec_pid)
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
        try:  # output comes in chunks of up to PIPE_SIZE: let a reading client keep up
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF)
        except OSError:
            pass
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
                pid = spawn(argv, env, self.cwd, stdio, self.cgroup, self.rlimit, tty=tty,
                            enter=self.ns_fds, creds=self.creds)
            except SpawnError as e:
                code, message = spawn_failure(e, argv[0], self.cwd)
                try:
                    os.write(stdio[2], f"neuro: {message}\n".encode(errors="replace"))
                except OSError:
                    pass
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
                    c.out += frame(STREAM_TYPE[stream], _pread(self.log_r, length, offset))
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

    # -- the job -----------------------------------------------------------------------------

    def start(self, log: LogWriter) -> bool:
        """Start the job; False when it could not start (exit.json is written then)."""
        spec = self.spec
        argv = [str(a) for a in spec["argv"]]
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        env.setdefault("PATH", DEFAULT_PATH)
        # a job of a uid of its own: its home (the job dir is not for it to see), where the
        # job makes its own working dir, as that uid
        home = str(spec.get("home") or "") if self.creds is not None else ""
        if home:
            env.setdefault("HOME", home)
        self.env = dict(env)  # for exec
        if self.tty:
            env.setdefault("TERM", "xterm")
        default_cwd = os.path.join(home, "jobs", str(spec["job_id"])) if home else self.path(WORK)
        cwd = self.cwd = spec.get("working_dir") or default_cwd
        make_cwd = not spec.get("working_dir") and bool(home)
        if not spec.get("working_dir") and not home:
            os.makedirs(cwd, exist_ok=True)
        memory, cpu = int(spec.get("memory") or 0), float(spec.get("cpu") or 0)
        pids = int(spec.get("pids_limit") or 0)
        root = spec.get("cgroup_root") or cgroups.ROOT
        parent = spec.get("cgroup_parent") or "neuro"
        mem_by = cpu_by = None
        try:
            self.cgroup, mem_by, cpu_by = cgroups.setup(parent, spec["job_id"], memory, cpu, root,
                                                        pids=pids)
        except OSError as e:
            print(f"supervisor: no cgroup: {e}", file=sys.stderr)
        if self.tty:
            # a PTY: the job's session leader gets the slave as its controlling terminal
            master, slave = os.openpty()
            _set_winsize(master, *control.TTY_SIZE)
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
            # stdin from /dev/null, stdout and stderr to pipes that we read
            null = os.open(os.devnull, os.O_RDONLY)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            self.pipes.update({out_r: STDOUT, err_r: STDERR})
            for fd in self.pipes:
                _set_pipe_size(fd)
            stdio = (null, out_w, err_w)
            child_ends = stdio
        view = None
        if self.view:  # volumes and secret files: placed in a mount namespace of the job's own
            import base64

            from .base import Mount

            view = (
                [Mount(str(m["root"]), str(m["path"]), str(m["dst"]), bool(m["read_only"]))
                 for m in spec.get("mounts") or ()],
                [(str(dst), base64.b64decode(data)) for dst, data in spec.get("files") or ()],
                self.path(VIEW),
                os.geteuid() != 0,
                self.creds,
            )
        while True:
            self.rlimit = memory if memory > 0 and mem_by is None else None
            mem_how = mem_by or ("rlimit (RLIMIT_DATA)" if self.rlimit else None)
            pids_by = (f"cgroup {self.cgroup.version}"
                       if self.cgroup is not None and self.cgroup.pids_limit else None)
            self.limits = cgroups.describe(mem_how, cpu_by, memory, cpu, pids=pids or None,
                                           pids_by=pids_by)
            self.started_at = iso_now()
            try:
                self.pid = spawn(argv, env, cwd, stdio, self.cgroup, self.rlimit, tty=self.tty,
                                 view=view, creds=self.creds, make_cwd=make_cwd)
                break
            except SpawnError as e:
                if e.stage == "cgroup" and self.cgroup is not None:
                    # created but not joinable (e.g. a delegated v2 tree): run without it
                    print(f"supervisor: cannot join cgroup: {e.text}", file=sys.stderr)
                    self.cgroup.remove()
                    self.cgroup, mem_by, cpu_by = None, None, None
                    continue
                code, message = spawn_failure(e, argv[0], cwd)
                for fd in (*child_ends, *self.pipes):
                    os.close(fd)
                self.pipes.clear()
                self.master = -1
                self.close_slave()
                if e.stage != "mounts":  # (that one fails the start: the job's status says it)
                    log.write(f"neuro: {message}\n".encode(), STDERR)
                self.write_exit(code, error=message, started=e.stage != "mounts")
                return False
        for fd in child_ends:
            os.close(fd)
        if view is not None:
            from . import mountns

            try:
                self.ns_fds = mountns.namespace_fds(self.pid, userns=view[3])
            except OSError as e:  # it ended already; exec is refused then
                print(f"supervisor: the job's namespaces: {e}", file=sys.stderr)
        if os.path.exists(self.path(STOP)):  # asked to stop while starting
            self.signals.append(signal.SIGTERM)
        stat = proc_stat(self.pid)
        write_record(
            self.path(STARTED),
            {
                "pid": self.pid,
                "starttime": stat[1] if stat else 0,  # (its pid may be reused once it is gone)
                "pgid": self.pid,
                "started_at": self.started_at,
                "limits": self.limits,
                "tty": self.tty,
            },
        )
        return True

    def supervise(self, log: LogWriter, wake_r: int) -> None:
        self.watch(wake_r, select.POLLIN)
        for fd in self.pipes:
            self.watch(fd, select.POLLIN)
        if self.listener is not None:
            self.watch(self.listener.fileno(), select.POLLIN)
        drain_until: float | None = None
        while True:
            self.handle_signals()
            self.reap()
            now = time.monotonic()
            if self.status is None:
                if self.kill_at is not None and now >= self.kill_at:
                    self.kill_at = None
                    self.kill_all(signal.SIGKILL)
            else:
                if drain_until is None:
                    # the main process is gone: so goes the rest; then read the pipes to the end
                    self.kill_rest()
                    self.close_namespaces()
                    self.close_slave()
                    drain_until = now + DRAIN_TIMEOUT
                if not self.pipes:
                    return
                if now >= drain_until:
                    print(
                        "supervisor: a process out of reach keeps the output open", file=sys.stderr
                    )
                    for fd in self.pipes:
                        self.unwatch(fd)
                        os.close(fd)
                    self.pipes.clear()
                    self.master = -1
                    return
            deadlines = [d for d in (self.kill_at, drain_until) if d is not None]
            # wake up now and then even without signals: a lost SIGCHLD must not hang us
            timeout = min([1.0] + [max(0.0, d - now) for d in deadlines])
            for fd, ev in self.poller.poll(timeout * 1000):
                if fd == wake_r:
                    _drain(wake_r)
                elif fd in self.pipes:
                    if self.on_pipe(fd, ev) and drain_until is not None:
                        drain_until = time.monotonic() + DRAIN_TIMEOUT
                elif self.listener is not None and fd == self.listener.fileno():
                    self.accept()
                elif fd in self.clients:
                    self.on_client(self.clients[fd], ev)

    def farewell(self, wake_r: int, code: int) -> None:
        """The job is done and its output read: attached clients get the rest and the exit
        code (a while, at most), exec clients the exit of their (killed) processes."""
        exit_frame = json_frame(control.EXIT, {"exit_code": code})
        for c in list(self.clients.values()):
            if c.attached:
                c.exit_frame = exit_frame
            elif not c.exec_pid or c.exec_pid not in self.execs:
                c.ending = True
            self.pump(c)
        deadline = time.monotonic() + FLUSH_TIMEOUT
        while self.clients and time.monotonic() < deadline:
            self.signals.clear()
            self.reap()
            for fd, ev in self.poller.poll(100):
                if fd == wake_r:
                    _drain(wake_r)
                elif fd in self.clients:
                    self.on_client(self.clients[fd], ev)
        if self.clients:
            print(f"supervisor: {len(self.clients)} clients did not take the end", file=sys.stderr)

    def handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGCHLD or self.status is not None:
                continue
            if signum == signal.SIGTERM:
                stop = read_json(self.path(STOP)) or {}
                try:
                    grace = max(0.0, float(stop.get("grace", DEFAULT_GRACE)))
                except (TypeError, ValueError):
                    grace = DEFAULT_GRACE
                self.kill_all(signal.SIGTERM)
                kill_at = time.monotonic() + grace
                self.kill_at = kill_at if self.kill_at is None else min(self.kill_at, kill_at)
            elif signum == signal.SIGUSR2:
                self.kill_all(signal.SIGKILL)
            else:
                _killpg(self.pid, signum)

    def kill_all(self, signum: int) -> None:
        _killpg(self.pid, signum)
        if self.cgroup is not None:
            if signum == signal.SIGKILL:
                self.cgroup.kill()
            else:
                self.cgroup.signal(signum)

    def kill_rest(self) -> None:
        """After the main process ended: SIGKILL what is left of its group, cgroup, and the
        orphans that came to us as their subreaper (they may have left the group), and the
        processes that exec ran beside the job."""
        self.kill_all(signal.SIGKILL)
        for _ in range(100):
            orphans = _children(os.getpid())
            if not orphans:
                break
            for pid in orphans:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.001)
            self.reap()

    def close_namespaces(self) -> None:
        """Let the job's mount namespace go (with its hold on volumes and disks) once its
        processes have."""
        for fd, _ in self.ns_fds:
            os.close(fd)
        self.ns_fds = []

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status
            elif pid in self.execs:
                c = self.execs.pop(pid)
                if not c.closed:
                    c.out += json_frame(control.EXIT, {"exit_code": _exit_code(status)})
                    c.ending = True
                    self.pump(c)

    def exit_code(self) -> int:
        return 128 + signal.SIGKILL if self.status is None else _exit_code(self.status)

    def finish(self, error: str = "") -> int:
        code = self.exit_code()
        oom = self.cgroup.oom_killed(code) if self.cgroup is not None else False
        if self.log is not None:
            try:  # what a full disk cost, said while the reserve makes room for it
                self.log.finish()
            except OSError as e:
                print(f"supervisor: the end of the log: {e}", file=sys.stderr)
        self.write_exit(code, oom_killed=oom, error=error)
        return code

    def write_exit(self, code: int, *, oom_killed: bool = False, error: str = "",
                   started: bool = True) -> None:
        """``started``: False when the job could not be set up at all (its volumes), which
        the server reports as a failure to start rather than as the job's exit."""
        write_record(
            self.path(EXIT),
            {
                "started": started,
                "exit_code": code,
                "oom_killed": oom_killed,
                "finished_at": iso_now(),
                "error": error[:1000],  # (within its slot)
                "started_at": self.started_at,
                "limits": self.limits,
            },
            durable=True,
        )


def _creds(spec: Record) -> tuple[int, int] | None:
    """The (uid, gid) of spec.json's ``uid`` and ``gid``; None when it has none (or not
    numbers): the job runs as this process's user."""
    uid, gid = spec.get("uid"), spec.get("gid")
    if type(uid) is not int or uid < 0:
        return None
    return uid, gid if type(gid) is int and gid >= 0 else uid


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _pread(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:  # a regular file reads short only at its end
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _kill_session(sid: int) -> None:
    """SIGKILL a process session: its leader's group, and members that left the group."""
    _killpg(sid, signal.SIGKILL)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[3]) == sid:
            try:
                os.kill(int(name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _killpg(pgid: int, signum: int) -> None:
    if pgid > 0:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _set_pipe_size(fd: int) -> None:
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # fewer bytes per read, nothing worse


_LIBC: Any = None


def _libc() -> Any:
    """libc through ctypes, loaded once (before a fork: the child only calls it)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


class _Diary:
    """The supervisor's stderr (supervisor.log) that a full disk cannot break: a line that
    does not fit is dropped, where a failed write would end the supervisor."""

    def write(self, text: str) -> int:
        try:
            os.write(2, text.encode(errors="replace"))
        except OSError:
            pass
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return 2


def _set_subreaper() -> None:
    """Orphaned descendants of the job become our children: we can kill and reap them
    (on hosts whose init never reaps, they would otherwise stay zombies in the job's cgroup)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _children(ppid: int) -> list[int]:
    """Pids whose parent is ``ppid`` (/proc/PID/task/TID/children is not always built in)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == ppid and fields[0] not in (b"Z", b"X"):
            found.append(int(name))
    return found


def main(argv: list[str]) -> None:
    ready_fd = -1
    if len(argv) == 4 and argv[2] == "--ready-fd":
        ready_fd = int(argv[3])
        os.set_inheritable(ready_fd, False)  # not for the job
    elif len(argv) != 2:
        raise SystemExit("usage: python -m neuro_server.runtime.supervisor JOB_DIR [--ready-fd N]")
    job_dir = os.path.abspath(argv[1])
    if not os.path.isfile(os.path.join(job_dir, SPEC)):
        raise SystemExit(f"supervisor: no {SPEC} in {job_dir}")
    # a bad spec fails here, where the server sees the exit code
    supervisor = Supervisor(job_dir, ready_fd)
    # detach: the server reaps this parent at once; the child is nobody's to wait for
    if os.fork():
        os._exit(0)
    os.setsid()
    os.chdir(job_dir)
    sys.stdout = sys.stderr = _Diary()
    supervisor.run()


if __name__ == "__main__":
    main(sys.argv)
