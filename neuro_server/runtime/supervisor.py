"""The per-job supervisor of the process runtime (like containerd's shim or podman's conmon).

    python -m neuro_server.runtime.supervisor JOB_DIR [--ready-fd N]

It detaches from the server (fork; the server reaps only the short-lived parent), owns the job's
process and pipes, appends the output to ``output.log``/``output.idx``, enforces limits (cgroups,
else rlimits), stops the job on SIGTERM (grace period from ``stop.json``), and records the exit
in ``exit.json`` before it exits.  Jobs thereby outlive the server.

Standard library only, and nothing heavy: it starts for every job.

Job directory layout (all JSON written atomically: tmp file, rename):
    spec.json        written by the server: argv, env, working_dir, cpu, memory, cgroup_parent...
    supervisor.json  {pid, starttime, boot_id, started_at} of this supervisor (pid reuse check)
    started.json     {pid, pgid, started_at, limits} once the job's process runs
    stop.json        {grace} written by the server before it sends SIGTERM here
    exit.json        {exit_code, oom_killed, finished_at, error, started_at, limits} (fsynced)
    output.log, output.idx   the job's output (see logfile.py)
    supervisor.log   this process's own stdout/stderr (tracebacks)
    work/            the job's working directory unless the spec names one
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import sys
import time

from . import cgroups
from .logfile import STDERR, STDOUT, LogWriter

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

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_GRACE = 10.0
DRAIN_TIMEOUT = 2.0  # after the job's end: how long a pipe may stay silent before we stop reading
PIPE_SIZE = 1 << 20
PR_SET_CHILD_SUBREAPER = 36


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
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
) -> int:
    """fork+exec the job in its own session, its cgroup joined before exec; returns its pid.

    ``stdio`` are the fds for the job's 0, 1, 2 (pipes now; a PTY's slave three times later,
    plus TIOCSCTTY after setsid).  A failure before exec comes back through a close-on-exec
    pipe as SpawnError.
    """
    if rlimit_data is not None:
        import resource
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
            os.setsid()
            if cgroup is not None:
                stage = "cgroup"
                cgroup.join(os.getpid())
            if rlimit_data is not None:
                stage = "rlimit"
                _soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
                limit = rlimit_data if hard == resource.RLIM_INFINITY else min(rlimit_data, hard)
                resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
            stage = "stdio"
            for target, fd in enumerate(stdio):
                os.dup2(fd, target)
            stage = "cwd"
            os.chdir(cwd)
            stage = "exec"
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
    return 127, f'cannot run "{argv0}": {e.stage}: {e.text}'


# -- the supervisor ------------------------------------------------------------------------------


class Supervisor:
    def __init__(self, job_dir: str, ready_fd: int = -1) -> None:
        self.dir = job_dir
        self.ready_fd = ready_fd  # written and closed once the job runs or could not start
        spec = read_json(self.path(SPEC))
        if spec is None:
            raise SystemExit(f"supervisor: no readable {SPEC} in {job_dir}")
        self.spec = spec
        self.signals: list[int] = []
        self.cgroup: cgroups.JobCgroup | None = None
        self.pid = 0  # the job's main process (and its process group)
        self.status: int | None = None
        self.kill_at: float | None = None
        self.started_at = ""
        self.limits = ""
        self.pipes: dict[int, int] = {}  # read end -> stream

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
        write_json(
            self.path(SUPERVISOR),
            {
                "pid": me,
                "starttime": stat[1] if stat else 0,
                "boot_id": boot_id(),
                "started_at": iso_now(),
            },
        )
        log = LogWriter(self.dir)
        try:
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
                    self.finish(error=f"the job's supervisor failed: {e!r}")
                else:
                    self.finish()
        finally:
            log.close()
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

    def start(self, log: LogWriter) -> bool:
        """Start the job; False when it could not start (exit.json is written then)."""
        spec = self.spec
        argv = [str(a) for a in spec["argv"]]
        env = {str(k): str(v) for k, v in (spec.get("env") or {}).items()}
        env.setdefault("PATH", DEFAULT_PATH)
        cwd = spec.get("working_dir") or self.path(WORK)
        if not spec.get("working_dir"):
            os.makedirs(cwd, exist_ok=True)
        memory, cpu = int(spec.get("memory") or 0), float(spec.get("cpu") or 0)
        root = spec.get("cgroup_root") or cgroups.ROOT
        parent = spec.get("cgroup_parent") or "neuro"
        mem_by = cpu_by = None
        try:
            self.cgroup, mem_by, cpu_by = cgroups.setup(parent, spec["job_id"], memory, cpu, root)
        except OSError as e:
            print(f"supervisor: no cgroup: {e}", file=sys.stderr)
        # stdin from /dev/null, stdout and stderr to pipes that we read (tty: a PTY, later)
        null = os.open(os.devnull, os.O_RDONLY)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.pipes.update({out_r: STDOUT, err_r: STDERR})
        for fd in self.pipes:
            _set_pipe_size(fd)
        while True:
            rlimit = memory if memory > 0 and mem_by is None else None
            mem_how = mem_by or ("rlimit (RLIMIT_DATA)" if rlimit else None)
            self.limits = cgroups.describe(mem_how, cpu_by, memory, cpu)
            self.started_at = iso_now()
            try:
                self.pid = spawn(argv, env, cwd, (null, out_w, err_w), self.cgroup, rlimit)
                break
            except SpawnError as e:
                if e.stage == "cgroup" and self.cgroup is not None:
                    # created but not joinable (e.g. a delegated v2 tree): run without it
                    print(f"supervisor: cannot join cgroup: {e.text}", file=sys.stderr)
                    self.cgroup.remove()
                    self.cgroup, mem_by, cpu_by = None, None, None
                    continue
                code, message = spawn_failure(e, argv[0], cwd)
                for fd in (null, out_w, err_w, *self.pipes):
                    os.close(fd)
                self.pipes.clear()
                log.write(f"neuro: {message}\n".encode(), STDERR)
                self.write_exit(code, error=message)
                return False
        for fd in (null, out_w, err_w):
            os.close(fd)
        if os.path.exists(self.path(STOP)):  # asked to stop while starting
            self.signals.append(signal.SIGTERM)
        write_json(
            self.path(STARTED),
            {
                "pid": self.pid,
                "pgid": self.pid,
                "started_at": self.started_at,
                "limits": self.limits,
            },
        )
        return True

    def supervise(self, log: LogWriter, wake_r: int) -> None:
        poller = select.poll()
        poller.register(wake_r, select.POLLIN)
        for fd in self.pipes:
            poller.register(fd, select.POLLIN)
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
                    drain_until = now + DRAIN_TIMEOUT
                if not self.pipes:
                    return
                if now >= drain_until:
                    print(
                        "supervisor: a process out of reach keeps the output open", file=sys.stderr
                    )
                    for fd in self.pipes:
                        os.close(fd)
                    self.pipes.clear()
                    return
            deadlines = [d for d in (self.kill_at, drain_until) if d is not None]
            # wake up now and then even without signals: a lost SIGCHLD must not hang us
            timeout = min([1.0] + [max(0.0, d - now) for d in deadlines])
            for fd, _ev in poller.poll(timeout * 1000):
                if fd == wake_r:
                    _drain(wake_r)
                    continue
                data = os.read(fd, PIPE_SIZE)
                if data:
                    log.write(data, self.pipes[fd])
                    if drain_until is not None:
                        drain_until = time.monotonic() + DRAIN_TIMEOUT
                else:
                    poller.unregister(fd)
                    os.close(fd)
                    del self.pipes[fd]

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
        orphans that came to us as their subreaper (they may have left the group)."""
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

    def finish(self, error: str = "") -> None:
        code = (
            128 + signal.SIGKILL if self.status is None else os.waitstatus_to_exitcode(self.status)
        )
        if code < 0:
            code = 128 - code
        oom = self.cgroup.oom_killed(code) if self.cgroup is not None else False
        self.write_exit(code, oom_killed=oom, error=error)

    def write_exit(self, code: int, *, oom_killed: bool = False, error: str = "") -> None:
        write_json(
            self.path(EXIT),
            {
                "exit_code": code,
                "oom_killed": oom_killed,
                "finished_at": iso_now(),
                "error": error,
                "started_at": self.started_at,
                "limits": self.limits,
            },
            durable=True,
        )


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
    supervisor.run()


if __name__ == "__main__":
    main(sys.argv)
