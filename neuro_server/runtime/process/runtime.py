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
import dataclasses
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import cgroups, telemetry
from ..base import (
    Capabilities,
    Capacity,
    ExitInfo,
    JobSpec,
    JobState,
    PortReader,
    PortWriter,
    ProgressListener,
    RuntimeError_,
    RuntimeInfo,
    StartInfo,
    State,
    StdioSession,
    Telemetry,
)
from ..jobdir import (
    EXIT,
    SPEC,
    STARTED,
    STOP,
    SUPERVISOR,
    exit_from_record,
    iso_now,
    job_dir,
    log_size,
    make_slot,
    read_json,
    record_time,
    write_json,
)
from ..logfile import RESERVE_NAME
from . import control, sessions, supervised, usage
from .ports import job_listener
from .procfs import supervisor_alive
from .spec import spec_record
from .supervisors import (
    bury,
    kill_and_remove,
    launch,
    open_pidfd,
    readable,
    remove_stale_socket,
    signal_supervisor,
)
from .usage import job_cgroup

NOTE = "the image is not used: the command runs on this host as a local process"
_CGROUP_PARENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
log = logging.getLogger(__name__)


class ProcessRuntime:
    name = "process"

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
        capacity: Capacity | None = None,
    ) -> None:
        """``nvml``: a module with pynvml's API for GPU telemetry (tests pass a fake); None
        imports pynvml when first needed (absent, or no driver: no GPU figures); False: none.
        ``stats_interval``: how long the first ``stats`` of a job measures its CPU use.
        ``attach_max_lag``: bytes of live output an attached client may fall behind before
        the supervisor drops it (default supervisor.MAX_LAG; output.log has everything).
        ``pids_limit``: processes and threads per job (its cgroup's pids.max; 0: no limit).
        ``output_limit``: bytes of output kept per job (0: no limit; the job goes on).
        ``capacity``: what jobs may use here (the server config's [resources]; None: all of
        this machine)."""
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
        self._capacity = capacity
        from .. import mountns

        self.capabilities = Capabilities(
            runs_images=False,
            needs_command=True,
            mounts=mountns.why_unsupported() or "",
            privileged=False,
            assigns_gpus=False,
            loopback_reachable=True,
            reports_progress=False,
            host_users=True,
        )

    def job_dir(self, job_id: str) -> Path:
        return job_dir(self.root, job_id)

    def info(self) -> RuntimeInfo:
        version, controllers = cgroups.probe(self.cgroup_root)
        by = f"cgroup {version}"
        limits = cgroups.describe(
            by if "memory" in controllers else "rlimit (RLIMIT_DATA)",
            by if "cpu" in controllers else None,
            pids=0 if self.pids_limit else None,
            pids_by=cgroups.pids_writable(self.cgroup_root),
        )
        return RuntimeInfo(name=self.name, limits=limits, note=NOTE, start_reason="Starting")

    def capacity(self) -> Capacity:
        if self._capacity is None:
            self._capacity = telemetry.machine_capacity()
        return self._capacity

    def set_progress_listener(self, listener: ProgressListener | None) -> None:
        """Starts here have no phases worth telling (no image to pull)."""

    async def close(self) -> None:
        """Nothing to release: jobs are their supervisors' (they go on)."""

    # -- start -------------------------------------------------------------------------------

    async def start(self, spec: JobSpec) -> StartInfo:
        d = self.job_dir(spec.job_id)
        if self._state(spec.job_id).state is State.RUNNING:
            raise RuntimeError_(f"job {spec.job_id} is already running")
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)  # spec.json holds the environment, secret variables included
        for name in (SUPERVISOR, STARTED, STOP, EXIT, control.CONTROL):  # an earlier run's
            (d / name).unlink(missing_ok=True)
        write_json(
            str(d / SPEC),
            spec_record(
                spec,
                cgroup_parent=self.cgroup_parent,
                cgroup_root=self.cgroup_root,
                attach_max_lag=self.attach_max_lag,
                pids_limit=self.pids_limit,
                output_limit=self.output_limit,
            ),
        )
        try:  # the room of its records, taken now: a full disk later cannot cost its exit code
            for name in (SUPERVISOR, STARTED, EXIT):
                make_slot(str(d / name))
        except OSError as e:
            raise RuntimeError_(f"cannot start the job: {e.strerror or e}") from e
        started = await launch(d, self.start_timeout)
        # jobs share the host's network: every one is reached at localhost, named or not
        return dataclasses.replace(started, hostname="localhost" if spec.hostname else "")

    # -- control -----------------------------------------------------------------------------

    async def stop(self, job_id: str, *, grace: float) -> None:
        d = self.job_dir(job_id)
        if not (d / SPEC).exists() or (d / EXIT).exists():
            return
        # a supervisor still starting finds stop.json once the job runs, and stops it then
        write_json(str(d / STOP), {"grace": grace, "requested_at": iso_now()})
        sup = read_json(str(d / SUPERVISOR))
        if sup is not None:
            signal_supervisor(sup, signal.SIGTERM)

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
                await sessions.request(str(d), job_id, kind, control.SIGNUM.pack(signum))
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

    async def inspect(self, job_id: str) -> JobState:
        return self._state(job_id)

    def _state(self, job_id: str) -> JobState:
        """inspect, from the job's files (no waiting: for synchronous callers here too)."""
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
            State.EXITED,
            started_at=record_time(exit_record, "started_at"),
            exit=exit_from_record(exit_record),
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
            pidfd = open_pidfd(sup)
            if pidfd is None and not supervisor_alive(sup):
                exit_record = read_json(str(d / EXIT))
                if exit_record is not None:
                    return exit_from_record(exit_record)
                return await bury(d, job_id, self._cgroup(d, job_id))
            if pidfd is None:  # no pidfd on this kernel: poll
                await asyncio.sleep(self.poll_interval * 2)
                continue
            try:
                await readable(pidfd, timeout=1.0)
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
        return supervised.job_logs(
            d,
            since=since,
            timestamps=timestamps,
            follow=follow,
            finished=lambda: self._finished(d),
            poll=self.poll_interval,
        )

    async def log_size(self, job_id: str) -> int:
        """Bytes in output.log so far (0 when none): an offset for ``attach`` with ``logs``."""
        try:
            return log_size(self.job_dir(job_id))
        except RuntimeError_:
            return 0

    async def cleanup(self, job_id: str) -> None:
        """Remove the job's cgroups (killing what a lost supervisor left in them); the output
        and exit.json stay.  Nothing happens while the job runs."""
        d = self.job_dir(job_id)
        if self._state(job_id).state is State.RUNNING:
            return
        if not (d / EXIT).exists() and (d / SUPERVISOR).exists():  # its supervisor was lost
            await bury(d, job_id, self._cgroup(d, job_id))
        cg = self._cgroup(d, job_id)
        if cg is not None:
            await asyncio.to_thread(kill_and_remove, cg)
        (d / STOP).unlink(missing_ok=True)
        (d / RESERVE_NAME).unlink(missing_ok=True)  # (a killed supervisor's)
        remove_stale_socket(d)
        self._cpu_samples.pop(job_id, None)

    # -- interactive -------------------------------------------------------------------------

    def _running(self, job_id: str) -> Path:
        d = self.job_dir(job_id)
        state = self._state(job_id).state
        if state is State.NOT_FOUND and not (d / SPEC).exists():
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        if state is not State.RUNNING:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return d

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        return await supervised.attach(
            self._running(job_id), job_id, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs
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
        return await supervised.exec_beside(
            self._running(job_id), job_id, argv, tty=tty, stdin=stdin, env=env, size=size
        )

    async def resize(self, job_id: str, height: int, width: int) -> None:
        """Resize the job's TTY (its foreground process group gets SIGWINCH); a no-op for a
        job without one."""
        await supervised.resize(self._running(job_id), job_id, height, width)

    async def connect_port(self, job_id: str, port: int) -> tuple[PortReader, PortWriter]:
        """A TCP connection to ``port`` where one of the job's own processes listens (jobs
        share the host's network: a port only something else listens on, another user's job
        or a host service, is refused as not listening).  The listener is found by its socket
        (/proc/net/tcp, tcp6) among the job's processes' descriptors, and connected to at the
        address it is bound to (loopback for a wildcard)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuntimeError_(f"bad port {port!r}: ports are 1-65535", reason="BadRequest")
        d = self._running(job_id)
        sup = read_json(str(d / SUPERVISOR)) or {}
        try:
            sup_pid: int | None = int(sup["pid"])
        except (KeyError, TypeError, ValueError):
            sup_pid = None
        host = await asyncio.to_thread(job_listener, port, self._cgroup(d, job_id), sup_pid)
        if host is None:
            raise RuntimeError_(
                f"nothing listens on port {port} in job {job_id} (no process "
                "of the job listens there)",
                reason="PortNotListening",
            )
        try:
            return await asyncio.open_connection(host, port)
        except OSError as e:  # it stopped listening meanwhile
            raise RuntimeError_(
                f"nothing listens on port {port} in job {job_id} ({e})", reason="PortNotListening"
            ) from None

    async def stats(self, job_id: str) -> Telemetry | None:
        """CPU cores used since the previous call (the first call measures over
        ``stats_interval``), memory without page cache, and GPU use where the job has GPUs."""
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return None
        if self._state(job_id).state is not State.RUNNING:
            self._cpu_samples.pop(job_id, None)
            return None
        sup = read_json(str(d / SUPERVISOR)) or {}
        run = (sup.get("pid"), sup.get("starttime"))  # a restarted job starts afresh
        sample = await asyncio.to_thread(
            usage.sample, d, job_id, sup, self.cgroup_parent, self.cgroup_root
        )
        if sample is None:
            return None
        now, cpu_ns, memory, pids = sample
        previous = self._cpu_samples.get(job_id)
        if previous is None or previous[0] != run:
            await asyncio.sleep(self.stats_interval)
            first = (now, cpu_ns)
            sample = await asyncio.to_thread(
                usage.sample, d, job_id, sup, self.cgroup_parent, self.cgroup_root
            )
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

    # -- helpers -----------------------------------------------------------------------------

    def _cgroup(self, d: Path, job_id: str) -> cgroups.JobCgroup | None:
        return job_cgroup(d, job_id, self.cgroup_parent, self.cgroup_root)

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
