"""The per-job supervisor of the process runtime (like containerd's shim or podman's conmon).

    python -m neuro_server.runtime.process.supervisor JOB_DIR [--ready-fd N]

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

Its files in the job's directory, beside the records of jobdir.py (spec.json, supervisor.json,
started.json {pid, starttime, pgid, started_at, limits}, stop.json, exit.json, their slots):
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

import contextlib
import os
import select
import signal
import socket
import sys
import time

from ... import cgroups
from ...jobdir import (
    EXIT,
    SPEC,
    STARTED,
    STOP,
    SUPERVISOR,
    exit_record,
    iso_now,
    read_json,
    write_record,
)
from ...logfile import IDX_NAME, LOG_NAME, STDERR, LogWriter
from .. import control
from ..control import json_frame
from ..procfs import boot_id, children, killpg, proc_stat
from .output import MAX_LAG, drain
from .requests import Requests, exit_code
from .spawn import DEFAULT_PATH, SpawnError, set_subreaper, spawn, spawn_failure

TYPE_CHECKING = False  # typing itself costs milliseconds at every job start
if TYPE_CHECKING:
    from typing import Any

    from .clients import Client

    Record = dict[str, Any]

SUPERVISOR_LOG = "supervisor.log"
WORK = "work"
VIEW = "view"  # an empty directory where a job's own view of the files is built (mountns.py)
DEFAULT_GRACE = 10.0
DRAIN_TIMEOUT = 2.0  # after the job's end: how long a pipe may stay silent before we stop reading
FLUSH_TIMEOUT = 2.0  # after the job's end: how long attached clients get to take the rest


class Supervisor(Requests):
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
        set_subreaper()
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
                        with contextlib.suppress(ChildProcessError):
                            self.status = os.waitpid(self.pid, 0)[1]
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
            with contextlib.suppress(OSError):  # the server is gone: it will read the files
                os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)
            self.ready_fd = -1

    # -- the job -----------------------------------------------------------------------------

    def start(self, log: LogWriter) -> bool:
        """Start the job; False when it could not start (exit.json is written then)."""
        spec = self.spec
        argv = [str(a) for a in spec["argv"]]
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        env.setdefault("PATH", DEFAULT_PATH)
        for prefix in spec.get("host_env_prefixes") or ():  # e.g. Slurm's SLURM_*, for srun
            env.update({k: v for k, v in os.environ.items() if k.startswith(str(prefix))})
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
        # who enforces the limits when not we (Slurm's cgroups): no cgroup nor rlimit of ours
        mem_by = cpu_by = str(spec.get("limits_by") or "") or None
        try:
            if mem_by is None:
                self.cgroup, mem_by, cpu_by = cgroups.setup(
                    parent, spec["job_id"], memory, cpu, root, pids=pids
                )
        except OSError as e:
            print(f"supervisor: no cgroup: {e}", file=sys.stderr)
        stdio, child_ends = self.open_stdio()
        view = None
        if self.view:  # volumes and secret files: placed in a mount namespace of the job's own
            import base64

            from ...base import Mount

            view = (
                [
                    Mount(str(m["root"]), str(m["path"]), str(m["dst"]), bool(m["read_only"]))
                    for m in spec.get("mounts") or ()
                ],
                [(str(dst), base64.b64decode(data)) for dst, data in spec.get("files") or ()],
                self.path(VIEW),
                os.geteuid() != 0,
                self.creds,
            )
        while True:
            self.rlimit = memory if memory > 0 and mem_by is None else None
            mem_how = mem_by or ("rlimit (RLIMIT_DATA)" if self.rlimit else None)
            pids_by = (
                f"cgroup {self.cgroup.version}"
                if self.cgroup is not None and self.cgroup.pids_limit
                else None
            )
            self.limits = cgroups.describe(
                mem_how, cpu_by, memory, cpu, pids=pids or None, pids_by=pids_by
            )
            self.started_at = iso_now()
            try:
                self.pid = spawn(
                    argv,
                    env,
                    cwd,
                    stdio,
                    self.cgroup,
                    self.rlimit,
                    tty=self.tty,
                    view=view,
                    creds=self.creds,
                    make_cwd=make_cwd,
                )
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
            from ... import mountns

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
                    drain(wake_r)
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
                    drain(wake_r)
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
                killpg(self.pid, signum)

    def kill_all(self, signum: int) -> None:
        killpg(self.pid, signum)
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
            orphans = children(os.getpid())
            if not orphans:
                break
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
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
                    c.out += json_frame(control.EXIT, {"exit_code": exit_code(status)})
                    c.ending = True
                    self.pump(c)

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

    def write_exit(
        self, code: int, *, oom_killed: bool = False, error: str = "", started: bool = True
    ) -> None:
        """``started``: False when the job could not be set up at all (its volumes), which
        the server reports as a failure to start rather than as the job's exit."""
        record = exit_record(
            code,
            finished_at=iso_now(),
            started_at=self.started_at,
            oom_killed=oom_killed,
            error=error[:1000],  # (within its slot)
            limits=self.limits,
            started=started,
        )
        write_record(self.path(EXIT), record, durable=True)


def _creds(spec: Record) -> tuple[int, int] | None:
    """The (uid, gid) of spec.json's ``uid`` and ``gid``; None when it has none (or not
    numbers): the job runs as this process's user."""
    uid, gid = spec.get("uid"), spec.get("gid")
    if type(uid) is not int or uid < 0:
        return None
    return uid, gid if type(gid) is int and gid >= 0 else uid
