"""The ``process`` runtime: jobs run as local processes on this host (the image is not used).

Each job has a directory ``root/<job_id>/`` and its own supervisor process (supervisor.py), which
owns the job's process and output and records its exit; the server only reads those files and
signals the supervisor.  So jobs outlive the server: a new ``ProcessRuntime`` on the same root
inspects, waits for, stops and reads the logs of jobs that an earlier server process started.

    rt = ProcessRuntime(Path("/var/lib/neuro/jobs"))
    await rt.start(JobSpec("job-1", ["echo", "hi"], env={}, working_dir=None, cpu=0.5, memory=1 << 30))
    async for chunk in rt.logs("job-1"): ...
    exit_info = await rt.wait("job-1")

A spec with a ``uid`` (its owner's own: neuro_server/jobusers.py) runs as it, with its ``gid``
and no other group, and so does every command exec'd beside it; its HOME is the spec's
``home``, and its default working dir ``HOME/jobs/JOB_ID``, made by the job itself.

Interactive use goes through the supervisor's control socket (control.py), from any server
process, also one started after the job: ``attach`` (the job's output, and its TTY's input for
jobs started with ``tty``), ``resize``, ``signal``, and ``exec`` (a command run beside the job by
its supervisor: in its cgroup, with its env and working dir; the session here holds its pipes or
PTY).  ``connect_port`` connects on the host's loopback (jobs share the host network) to a
port one of the job's own processes listens on, never another's, and
``stats`` reads the job's cgroup (psutil without one) and NVML.

RuntimeError_ reasons raised here: NotFound (no such job), NotRunning (attach, exec, resize or
connect_port to a job that does not run), BadRequest (stdin for a job without a tty, a bad port
or size), PortNotListening, ContainerCannotRun (anything else).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import cgroups, control, stdio, telemetry
from .base import (
    ExitInfo,
    JobSpec,
    JobState,
    RuntimeError_,
    RuntimeInfo,
    StartInfo,
    State,
    StdioSession,
    Telemetry,
    exit_from_record,
    record_time,
    tty_size,
)
from .logfile import RESERVE_NAME, read_log
from .supervisor import (
    DEFAULT_PATH,
    EXIT,
    SPEC,
    STARTED,
    STOP,
    SUPERVISOR,
    SUPERVISOR_LOG,
    _kill_session,
    boot_id,
    iso_now,
    make_slot,
    proc_stat,
    read_json,
    supervisor_alive,
    write_json,
    write_record,
)

NOTE = "the image is not used: the command runs on this host as a local process"
LOST = "the job's supervisor was lost; its processes were killed"
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_CGROUP_PARENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # where neuro_server is importable
log = logging.getLogger(__name__)


# what a job of the process runtime inherits from the server's environment, as srun passes
# the submitter's (`-e` wins): the language and time zone for every job; where programs are,
# who the user is and their own tools (a virtualenv, conda) for the server's own user's jobs
# only (the embedded server has its user's environment; a job of a uid of its own has its own
# HOME and the standard PATH: the server's may name directories that uid cannot enter)
HOST_ENV = ("LANG", "LANGUAGE", "TZ")
OWN_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "VIRTUAL_ENV", "CONDA_PREFIX",
           "CONDA_DEFAULT_ENV", "LD_LIBRARY_PATH", "CUDA_HOME", "XDG_CACHE_HOME",
           "HF_HOME", "TORCH_HOME")


def job_environment(own_user: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a job gets from the server's environment (see HOST_ENV, OWN_ENV)."""
    environ = os.environ if environ is None else environ
    names = HOST_ENV + OWN_ENV if own_user else HOST_ENV
    return {k: v for k, v in environ.items()
            if k in names or k.startswith("LC_") or (own_user and k.startswith("NVIDIA_"))}


class ProcessRuntime:
    def __init__(
        self,
        root: Path,
        *,
        cgroup_parent: str = "neuro",
        cgroup_root: str = cgroups.ROOT,
        start_timeout: float = 30.0,
        poll_interval: float = 0.05,
        nvml: Any = None,
        stats_interval: float = 0.25,
        attach_max_lag: int | None = None,
        pids_limit: int = cgroups.DEFAULT_PIDS,
        output_limit: int = 0,
    ) -> None:
        """``nvml``: a module with pynvml's API for GPU telemetry (tests pass a fake); None
        imports pynvml when first needed (absent, or no driver: no GPU figures); False: none.
        ``stats_interval``: how long the first ``stats`` of a job measures its CPU use.
        ``attach_max_lag``: bytes of live output an attached client may fall behind before
        the supervisor drops it (default supervisor.MAX_LAG; output.log has everything).
        ``pids_limit``: processes and threads per job (its cgroup's pids.max; 0: no limit).
        ``output_limit``: bytes of output kept per job (0: no limit; the job goes on)."""
        if not _CGROUP_PARENT.fullmatch(cgroup_parent):
            raise ValueError(f"bad cgroup parent {cgroup_parent!r}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cgroup_parent = cgroup_parent
        self.cgroup_root = cgroup_root
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        self.stats_interval = stats_interval
        self.attach_max_lag = attach_max_lag
        self.pids_limit = max(0, pids_limit)
        self.output_limit = max(0, output_limit)
        self.gpus = telemetry.Nvml(nvml)
        self._cpu_samples: dict[str, tuple[Any, float, int]] = {}  # job -> (run, time, cpu ns)
        self._no_mounts: str | None = None  # why jobs cannot have volumes here, once known

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise RuntimeError_(f"bad job id {job_id!r}", reason="NotFound")
        return self.root / job_id

    def info(self) -> RuntimeInfo:
        version, controllers = cgroups.probe(self.cgroup_root)
        by = f"cgroup {version}"
        limits = cgroups.describe(
            by if "memory" in controllers else "rlimit (RLIMIT_DATA)",
            by if "cpu" in controllers else None,
            pids=0 if self.pids_limit else None,
            pids_by=cgroups.pids_writable(self.cgroup_root),
        )
        if self._no_mounts is None:
            from . import mountns

            self._no_mounts = mountns.why_unsupported() or ""
        return RuntimeInfo(name="process", image_used=False, limits=limits, note=NOTE,
                           no_mounts=self._no_mounts, start_reason="Starting")

    # -- start -------------------------------------------------------------------------------

    async def start(self, spec: JobSpec) -> StartInfo:
        d = self.job_dir(spec.job_id)
        if self.inspect(spec.job_id).state is State.RUNNING:
            raise RuntimeError_(f"job {spec.job_id} is already running")
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)  # spec.json holds the environment, secret variables included
        for name in (SUPERVISOR, STARTED, STOP, EXIT, control.CONTROL):  # an earlier run's
            (d / name).unlink(missing_ok=True)
        write_json(
            str(d / SPEC),
            {
                "job_id": spec.job_id,
                "argv": list(spec.argv),
                "env": {**job_environment(spec.uid is None), **spec.env},
                "working_dir": spec.working_dir,
                "cpu": spec.cpu,
                "memory": spec.memory,
                "tty": spec.tty,
                "image": spec.image,
                "owner": spec.owner,
                # who the job and its execs run as (None: the server's user), and its home
                "uid": spec.uid,
                "gid": spec.gid,
                "home": spec.home,
                "cgroup_parent": self.cgroup_parent,
                "cgroup_root": self.cgroup_root,
                "attach_max_lag": self.attach_max_lag,
                "pids_limit": self.pids_limit,
                "output_limit": self.output_limit,
                # volumes and secret files, placed in the job's own mount namespace
                # (each a tree's root and a path beneath it: the supervisor opens the path
                # beneath the root itself, no link followed, when it mounts it)
                "mounts": [dataclasses.asdict(m) for m in spec.mounts],
                "files": [[dst, base64.b64encode(data).decode()] for dst, data in spec.files],
                "created_at": iso_now(),
            },
        )
        try:  # the room of its records, taken now: a full disk later cannot cost its exit code
            for name in (SUPERVISOR, STARTED, EXIT):
                make_slot(str(d / name))
        except OSError as e:
            raise RuntimeError_(f"cannot start the job: {e.strerror or e}") from e
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "PYTHONPATH": _PACKAGE_PARENT}
        ready_r, ready_w = os.pipe()  # the supervisor writes it once the job runs (or cannot)
        argv = [
            sys.executable,
            "-S",
            "-m",
            "neuro_server.runtime.supervisor",
            str(d),
            "--ready-fd",
            str(ready_w),
        ]
        try:  # blocking, but brief: an open and a vfork+exec
            with open(d / SUPERVISOR_LOG, "ab") as log:  # noqa: ASYNC230
                proc = subprocess.Popen(  # noqa: ASYNC220
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=d,
                    pass_fds=(ready_w,),
                )
        except OSError as e:
            os.close(ready_r)
            raise RuntimeError_(f"cannot start the job's supervisor: {e}") from e
        finally:
            os.close(ready_w)
        try:
            if not await _readable(ready_r, self.start_timeout):
                sup = read_json(str(d / SUPERVISOR))
                if sup is not None:
                    _signal_supervisor(sup, signal.SIGKILL)
                raise RuntimeError_(
                    f"the job did not start within {self.start_timeout:g} s: {_tail(d)}"
                )
            started = _start_info(d)
            if started is None:  # the pipe closed unwritten: the supervisor died
                rc = await _reap(proc)
                raise RuntimeError_(f"the job's supervisor failed (exit {rc}): {_tail(d)}")
            await _reap(proc)
            record = read_json(str(d / EXIT))
            if record is not None and record.get("started") is False:  # its volumes
                raise RuntimeError_(str(record.get("error") or "the job could not start"))
            # jobs share the host's network: every one is reached at localhost, named or not
            return dataclasses.replace(started, hostname="localhost" if spec.hostname else "")
        finally:
            os.close(ready_r)
            if proc.poll() is None:  # only when the supervisor hung before it detached
                proc.kill()
                proc.wait()

    # -- control -----------------------------------------------------------------------------

    async def stop(self, job_id: str, *, grace: float) -> None:
        d = self.job_dir(job_id)
        if not (d / SPEC).exists() or (d / EXIT).exists():
            return
        # a supervisor still starting finds stop.json once the job runs, and stops it then
        write_json(str(d / STOP), {"grace": grace, "requested_at": iso_now()})
        sup = read_json(str(d / SUPERVISOR))
        if sup is not None:
            _signal_supervisor(sup, signal.SIGTERM)

    async def suspend(self, job_id: str) -> None:
        """SIGSTOP to the job's process group: frozen, memory kept, no CPU."""
        await self.signal(job_id, signal.SIGSTOP)

    async def resume(self, job_id: str) -> None:
        await self.signal(job_id, signal.SIGCONT)

    async def signal(self, job_id: str, signum: int, *, group: bool = True) -> None:
        """Signal the job's process group, or with ``group`` false its own process only
        (through its supervisor, which knows its child is alive); nothing happens when the job
        does not run."""
        d = self.job_dir(job_id)
        if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < signal.NSIG:
            raise RuntimeError_(f"bad signal number {signum!r}", reason="BadRequest")
        if (d / control.CONTROL).exists():
            kind = control.SIGNAL if group else control.SIGNAL_MAIN
            try:
                await stdio.request(str(d), job_id, kind, control.SIGNUM.pack(signum))
                return
            except RuntimeError_:
                pass  # it ended meanwhile, or no socket: below, by the files
        started = read_json(str(d / STARTED))
        sup = read_json(str(d / SUPERVISOR))
        if started is None or sup is None or (d / EXIT).exists() or not supervisor_alive(sup):
            return
        try:  # its process leads its group: the group's id is its pid
            if group:
                os.killpg(int(started["pgid"]), signum)
            else:
                os.kill(int(started["pgid"]), signum)
        except ProcessLookupError:
            pass

    # -- state -------------------------------------------------------------------------------

    def inspect(self, job_id: str) -> JobState:
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return JobState(State.NOT_FOUND)
        exit_record = read_json(str(d / EXIT))
        if exit_record is None:
            sup = read_json(str(d / SUPERVISOR))
            if sup is not None and supervisor_alive(sup):
                started = read_json(str(d / STARTED))
                return JobState(State.RUNNING, started_at=record_time(started, "started_at"))
            exit_record = read_json(str(d / EXIT))  # it may have finished meanwhile
            if exit_record is None:
                return JobState(State.NOT_FOUND)
        return JobState(
            State.EXITED, started_at=record_time(exit_record, "started_at"), exit=exit_from_record(exit_record)
        )

    async def wait(self, job_id: str) -> ExitInfo:
        d = self.job_dir(job_id)
        while True:
            exit_record = read_json(str(d / EXIT))
            if exit_record is not None:
                return exit_from_record(exit_record)
            sup = read_json(str(d / SUPERVISOR))
            if sup is None:
                if not self._starting(d):
                    raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
                await asyncio.sleep(self.poll_interval)
                continue
            pidfd = _open_pidfd(sup)
            if pidfd is None and not supervisor_alive(sup):
                exit_record = read_json(str(d / EXIT))
                if exit_record is not None:
                    return exit_from_record(exit_record)
                return await self._bury(job_id)
            if pidfd is None:  # no pidfd on this kernel: poll
                await asyncio.sleep(self.poll_interval * 2)
                continue
            try:
                await _readable(pidfd, timeout=1.0)
            finally:
                os.close(pidfd)

    def logs(
        self,
        job_id: str,
        *,
        since: datetime | None = None,
        timestamps: bool = False,
        follow: bool = True,
    ) -> AsyncIterator[bytes]:
        d = self.job_dir(job_id)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return read_log(
            str(d),
            since=None if since is None else since.timestamp(),
            timestamps=timestamps,
            follow=follow,
            finished=lambda: self._finished(d),
            poll=self.poll_interval,
        )

    def log_size(self, job_id: str) -> int:
        """Bytes in output.log so far (0 when none): an offset for ``attach`` with ``logs``."""
        try:
            return (self.job_dir(job_id) / "output.log").stat().st_size
        except (OSError, RuntimeError_):
            return 0

    async def cleanup(self, job_id: str) -> None:
        """Remove the job's cgroups (killing what a lost supervisor left in them); the output
        and exit.json stay.  Nothing happens while the job runs."""
        d = self.job_dir(job_id)
        if self.inspect(job_id).state is State.RUNNING:
            return
        if not (d / EXIT).exists() and (d / SUPERVISOR).exists():  # its supervisor was lost
            await self._bury(job_id)
        spec = read_json(str(d / SPEC)) or {}
        parent = spec.get("cgroup_parent") or self.cgroup_parent
        root = spec.get("cgroup_root") or self.cgroup_root
        cg = cgroups.JobCgroup.find(parent, job_id, root)
        if cg is not None:
            await asyncio.to_thread(_kill_and_remove, cg)
        (d / STOP).unlink(missing_ok=True)
        (d / RESERVE_NAME).unlink(missing_ok=True)  # (a killed supervisor's)
        _remove_stale_socket(d)
        self._cpu_samples.pop(job_id, None)

    async def _bury(self, job_id: str) -> ExitInfo:
        """The job's supervisor is gone and left no exit record (SIGKILLed, OOM-killed): kill
        what it left of the job (its cgroup, else its session as started.json has it), and
        record that end in exit.json (in its slot: on a full disk too), so that every later
        look (status, a restarted server) sees the same.  OSError when it cannot be recorded
        yet (no slot, no space): the caller tries again."""
        d = self.job_dir(job_id)
        spec = read_json(str(d / SPEC)) or {}
        started = read_json(str(d / STARTED))
        sup = read_json(str(d / SUPERVISOR))
        if sup is not None and supervisor_alive(sup):
            raise RuntimeError_(f"job {job_id} still has its supervisor")
        cg = cgroups.JobCgroup.find(spec.get("cgroup_parent") or self.cgroup_parent, job_id,
                                    spec.get("cgroup_root") or self.cgroup_root)
        await asyncio.to_thread(_kill_lost, cg, started, sup)
        if (record := read_json(str(d / EXIT))) is None:
            record = {
                "started": True,
                "exit_code": 128 + signal.SIGKILL,
                "oom_killed": False,
                "finished_at": iso_now(),
                "error": "",
                "lost": LOST,
                "started_at": (started or {}).get("started_at", ""),
                "limits": (started or {}).get("limits", ""),
            }
            write_record(str(d / EXIT), record, durable=True)
            log.warning("job %s: %s", job_id, LOST)
        _remove_stale_socket(d)
        return exit_from_record(record)

    # -- interactive -------------------------------------------------------------------------

    def _running(self, job_id: str) -> Path:
        d = self.job_dir(job_id)
        state = self.inspect(job_id).state
        if state is State.NOT_FOUND and not (d / SPEC).exists():
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        if state is not State.RUNNING:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return d

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        d = self._running(job_id)
        if stdin and not (read_json(str(d / SPEC)) or {}).get("tty"):
            raise RuntimeError_(
                f"job {job_id} was not started with a tty: its stdin cannot be attached",
                reason="BadRequest",
            )
        return await stdio.AttachSession.open(
            str(d), job_id, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs
        )

    async def exec(
        self,
        job_id: str,
        argv: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        env: Mapping[str, str] | None = None,
        size: tuple[int, int] | None = None,
    ) -> StdioSession:
        """Run ``argv`` beside the job (on a TTY of ``size``).  A command that cannot start
        still gives a session: its stderr says why and ``wait()`` gives 127 (not found) or 126
        (not executable), as a shell would."""
        d = self._running(job_id)
        return await stdio.ExecSession.open(str(d), job_id, argv, tty=tty, stdin=stdin, env=env,
                                            size=tty_size(size))

    async def resize(self, job_id: str, height: int, width: int) -> None:
        """Resize the job's TTY (its foreground process group gets SIGWINCH); a no-op for a
        job without one."""
        d = self._running(job_id)
        size = stdio._winsize(height, width)
        await stdio.request(str(d), job_id, control.RESIZE, size)

    async def connect_port(self, job_id: str, port: int) -> tuple[Any, Any]:
        """A TCP connection to ``port`` where one of the job's own processes listens (jobs
        share the host's network: a port only something else listens on, another user's job
        or a host service, is refused as not listening).  The listener is found by its socket
        (/proc/net/tcp, tcp6) among the job's processes' descriptors, and connected to at the
        address it is bound to (loopback for a wildcard)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuntimeError_(f"bad port {port!r}: ports are 1-65535", reason="BadRequest")
        d = self._running(job_id)
        host = await asyncio.to_thread(self._listener, d, job_id, port)
        if host is None:
            raise RuntimeError_(f"nothing listens on port {port} in job {job_id} (no process "
                                "of the job listens there)", reason="PortNotListening")
        try:
            return await asyncio.open_connection(host, port)
        except OSError as e:  # it stopped listening meanwhile
            raise RuntimeError_(f"nothing listens on port {port} in job {job_id} ({e})",
                                reason="PortNotListening") from None

    def _listener(self, d: Path, job_id: str, port: int) -> str | None:
        """The address to reach the job's own listener on TCP ``port`` at; None when no
        process of the job listens there."""
        listening = listeners(port)
        if not listening:
            return None
        sup = read_json(str(d / SUPERVISOR)) or {}
        spec = read_json(str(d / SPEC)) or {}
        pids: set[int] = set()
        cg = cgroups.JobCgroup.find(spec.get("cgroup_parent") or self.cgroup_parent, job_id,
                                    spec.get("cgroup_root") or self.cgroup_root)
        if cg is not None:
            pids |= cg.pids()
        try:
            pids |= telemetry.tree_pids(int(sup["pid"]))
            pids.discard(int(sup["pid"]))  # (the supervisor is not the job)
        except (KeyError, TypeError, ValueError):
            pass
        for pid in pids:
            for inode in socket_inodes(pid) & listening.keys():
                # (Linux lets no other socket listen on a port a wildcard listens on)
                bound = listening[inode]
                return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bound, bound)
        return None

    async def stats(self, job_id: str) -> Telemetry | None:
        """CPU cores used since the previous call (the first call measures over
        ``stats_interval``), memory without page cache, and GPU use where the job has GPUs."""
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return None
        if self.inspect(job_id).state is not State.RUNNING:
            self._cpu_samples.pop(job_id, None)
            return None
        sup = read_json(str(d / SUPERVISOR)) or {}
        run = (sup.get("pid"), sup.get("starttime"))  # a restarted job starts afresh
        sample = await asyncio.to_thread(self._sample, d, job_id, sup)
        if sample is None:
            return None
        now, cpu_ns, memory, pids = sample
        previous = self._cpu_samples.get(job_id)
        if previous is None or previous[0] != run:
            await asyncio.sleep(self.stats_interval)
            first = (now, cpu_ns)
            sample = await asyncio.to_thread(self._sample, d, job_id, sup)
            if sample is None:
                return None
            now, cpu_ns, memory, pids = sample
        else:
            first = previous[1:]
        self._cpu_samples[job_id] = (run, now, cpu_ns)
        elapsed = now - first[0]
        cpu = max(0.0, (cpu_ns - first[1]) / 1e9 / elapsed) if elapsed > 0 else 0.0
        duty, gpu_memory = await asyncio.to_thread(self.gpus.usage, pids)
        return Telemetry(
            timestamp=time.time(),
            cpu=cpu,
            memory=memory,
            gpu_duty_cycle=duty,
            gpu_memory=gpu_memory,
        )

    def _sample(
        self, d: Path, job_id: str, sup: dict[str, Any]
    ) -> tuple[float, int, int, set[int]] | None:
        """(monotonic time, CPU ns, memory bytes, the job's pids) now; None when it is gone."""
        if not supervisor_alive(sup):
            return None
        spec = read_json(str(d / SPEC)) or {}
        cg = cgroups.JobCgroup.find(
            spec.get("cgroup_parent") or self.cgroup_parent,
            job_id,
            spec.get("cgroup_root") or self.cgroup_root,
        )
        cpu_ns = memory = None
        pids: set[int] = set()
        if cg is not None:
            # the cgroup lists the job's processes: no walk over the host's process table
            pids = cg.pids()
            if pids:
                cpu_ns, memory = telemetry.cgroup_usage(cg)
        if not pids:
            pids = telemetry.tree_pids(int(sup["pid"]))
        if cpu_ns is None or memory is None:
            tree_cpu, tree_memory = telemetry.tree_usage(pids)
            cpu_ns = tree_cpu if cpu_ns is None else cpu_ns
            memory = tree_memory if memory is None else memory
        return time.monotonic(), cpu_ns, memory, pids

    # -- helpers -----------------------------------------------------------------------------

    def _starting(self, d: Path) -> bool:
        """A start is under way: spec.json written, the supervisor not yet recorded."""
        try:
            age = time.time() - (d / SPEC).stat().st_mtime
        except OSError:
            return False
        return age < self.start_timeout and not (d / SUPERVISOR).exists()

    def _finished(self, d: Path) -> bool:
        """For logs: no more output will come (exited, or the supervisor is gone)."""
        if (d / EXIT).exists():
            return True
        if not d.is_dir():
            return False  # logs waits for a job that is about to start
        sup = read_json(str(d / SUPERVISOR))
        if sup is None:
            return not self._starting(d)
        return not supervisor_alive(sup)


def listeners(port: int) -> dict[int, str]:
    """Sockets listening on TCP ``port`` on this host (its network namespace): their inode
    -> the address they are bound to (0.0.0.0, :: for any)."""
    found: dict[int, str] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st ... inode (10th); st 0A: LISTEN
            if len(fields) < 10 or fields[3] != "0A":
                continue
            address, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port or not fields[9].isdigit():
                continue
            found[int(fields[9])] = _address(address)
    return found


def _address(hex_address: str) -> str:
    """/proc/net/tcp's form of an address (32-bit words in host order) as text."""
    import ipaddress

    raw = bytes.fromhex(hex_address)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)) \
        if sys.byteorder == "little" else raw
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` holds open (none when it is gone)."""
    out: set[int] = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _remove_stale_socket(d: Path) -> None:
    """A control socket left by a supervisor that was killed (only ours: in the job dir or the
    short-path directory)."""
    path = stdio.control_path(str(d))
    if path is None:
        return
    p = Path(path)
    if p.parent in (d, Path(f"/tmp/neuro-{os.getuid()}")) and p.suffix == ".sock":
        p.unlink(missing_ok=True)
    (d / control.CONTROL).unlink(missing_ok=True)


def _kill_and_remove(cg: cgroups.JobCgroup) -> None:
    cg.kill()
    cg.remove()


def _kill_lost(
    cg: cgroups.JobCgroup | None, started: dict[str, Any] | None, sup: dict[str, Any] | None
) -> None:
    """SIGKILL what a lost supervisor left: the job's cgroup (frozen first, then removed),
    and its session (members that left the cgroup's reach, or all of them where there is no
    cgroup), unless its leader's pid now belongs to another process."""
    if cg is not None:
        _kill_and_remove(cg)
    try:
        sid = int((started or {}).get("pgid") or 0)
        starttime = int((started or {}).get("starttime") or 0)
    except (TypeError, ValueError):
        return
    if sid <= 0 or sup is None or sup.get("boot_id") != boot_id():
        return
    stat = proc_stat(sid)
    if stat is None or stat[0] in "ZXx" or (starttime and stat[1] == starttime):
        _kill_session(sid)


def _start_info(d: Path) -> StartInfo | None:
    """Once the job runs (started.json) or could not run (exit.json)."""
    for name in (STARTED, EXIT):
        record = read_json(str(d / name))
        if record is not None:
            started_at = record_time(record, "started_at") or record_time(record, "finished_at")
            return StartInfo(
                started_at=started_at or datetime.now(UTC),
                limits=str(record.get("limits", "")),
            )
    return None


def _tail(d: Path, size: int = 2000) -> str:
    try:
        with open(d / SUPERVISOR_LOG, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            text = f.read().decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "(supervisor.log is empty)"


def _open_pidfd(sup: dict[str, Any]) -> int | None:
    """A pidfd of the live supervisor (checked after opening, so it is not a reused pid)."""
    try:
        fd = os.pidfd_open(int(sup["pid"]))
    except (AttributeError, OSError, KeyError, TypeError, ValueError):
        return None
    if supervisor_alive(sup):
        return fd
    os.close(fd)
    return None


def _signal_supervisor(sup: dict[str, Any], signum: int) -> None:
    fd = _open_pidfd(sup)
    try:
        if fd is not None:
            signal.pidfd_send_signal(fd, signum)
        elif supervisor_alive(sup):
            os.kill(int(sup["pid"]), signum)
    except ProcessLookupError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


async def _readable(fd: int, timeout: float) -> bool:
    """Wait until ``fd`` is readable (data, EOF, or an exited pidfd's process); False on timeout."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_ready)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


async def _reap(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """Reap the supervisor's first process, which exits as soon as it has forked."""
    deadline = time.monotonic() + timeout
    while (rc := proc.poll()) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    return rc
