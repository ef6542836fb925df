"""A toy third runtime, for the tests only: jobs run as plain subprocesses of the server (no
supervisor, no limits, no terminals, no volumes), their output written to the job directory
by the server itself.  It shows what adding a runtime takes: this package, and one line
registering it (tests/server/runtime_contract/conftest.py) -- and it runs through the runtime
contract suite, where its capabilities allow.

Its jobs do not outlive the server (they are its children, killed by ``close``): the
contract's restart tests skip it for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuro_server.runtime.base import (
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
from neuro_server.runtime.jobdir import (
    EXIT,
    SPEC,
    STARTED,
    STOP,
    exit_from_record,
    exit_record,
    iso_now,
    job_dir,
    log_size,
    read_json,
    write_json,
)
from neuro_server.runtime.logfile import LogWriter, read_log

from .sessions import ExecSession, LogSession

NO_TTY = "the toy runtime has no terminals"


class _Job:
    def __init__(self, proc: asyncio.subprocess.Process, env: dict[str, str], cwd: str) -> None:
        self.proc = proc
        self.env, self.cwd = env, cwd
        self.done: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self.killer: asyncio.TimerHandle | None = None
        self.cpu: tuple[float, float] | None = None  # (monotonic time, CPU seconds)
        self.execs: list[ExecSession] = []  # what runs beside it: it ends with the job


class ToyRuntime:
    name = "toy"
    capabilities = Capabilities(
        runs_images=False,
        needs_command=True,
        mounts="the toy runtime gives jobs no volumes",
        loopback_reachable=True,
    )

    def __init__(
        self,
        root: Path,
        *,
        capacity: Capacity | None = None,
        poll_interval: float = 0.05,
        stats_interval: float = 0.25,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._capacity = capacity or Capacity.one_node("toy", 4.0, 8 << 30)
        self.poll_interval = poll_interval
        self.stats_interval = stats_interval
        self._jobs: dict[str, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.name,
            limits="none (the toy runtime enforces no limits)",
            note="a toy: jobs run as plain subprocesses of the server",
            start_reason="Starting",
        )

    def capacity(self) -> Capacity:
        return self._capacity

    def set_progress_listener(self, listener: ProgressListener | None) -> None:
        pass

    async def close(self) -> None:
        """Stop following jobs (they are killed: the toy's jobs do not outlive it)."""
        for job in self._jobs.values():
            self._killpg(job, signal.SIGKILL)
            for session in job.execs:
                await session.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, spec: JobSpec) -> StartInfo:
        d = job_dir(self.root, spec.job_id)
        if (await self.inspect(spec.job_id)).state is State.RUNNING:
            raise RuntimeError_(f"job {spec.job_id} is already running")
        d.mkdir(parents=True, exist_ok=True)
        for name in (STARTED, STOP, EXIT):
            (d / name).unlink(missing_ok=True)
        write_json(str(d / SPEC), {"job_id": spec.job_id, "argv": list(spec.argv)})
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **spec.env}
        cwd = spec.working_dir or str(d / "work")
        os.makedirs(cwd, exist_ok=True)
        writer = LogWriter(str(d))
        started_at = iso_now()
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=env,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            error = f'cannot run "{spec.argv[0]}": {e.strerror or e}'
            writer.write(f"neuro: {error}\n".encode(), 2)
            writer.close()
            write_json(
                str(d / EXIT),
                exit_record(127, finished_at=iso_now(), started_at=started_at, error=error),
            )
            return StartInfo(started_at=datetime.now(UTC), limits="none")
        job = self._jobs[spec.job_id] = _Job(proc, env, cwd)
        write_json(str(d / STARTED), {"started_at": started_at, "pid": proc.pid})
        self._spawn(self._follow(spec.job_id, d, job, writer, started_at))
        if (d / STOP).exists():
            await self.stop(
                spec.job_id, grace=float((read_json(str(d / STOP)) or {}).get("grace", 0))
            )
        return StartInfo(started_at=datetime.fromisoformat(started_at), limits="none")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(
        self, job_id: str, d: Path, job: _Job, writer: LogWriter, started_at: str
    ) -> None:
        async def pump(stream: asyncio.StreamReader | None, number: int) -> None:
            while stream is not None and (data := await stream.read(1 << 16)):
                writer.write(data, number)

        await asyncio.gather(pump(job.proc.stdout, 1), pump(job.proc.stderr, 2))
        code = await job.proc.wait()
        for session in job.execs:
            session.kill()
        writer.close()
        if job.killer is not None:
            job.killer.cancel()
        code = 128 - code if code < 0 else code
        record = exit_record(code, finished_at=iso_now(), started_at=started_at)
        write_json(str(d / EXIT), record)
        job.done.set_result(exit_from_record(record))

    async def stop(self, job_id: str, *, grace: float) -> None:
        d = job_dir(self.root, job_id)
        if not (d / SPEC).exists() or (d / EXIT).exists():
            return
        write_json(str(d / STOP), {"grace": grace, "requested_at": iso_now()})
        job = self._jobs.get(job_id)
        if job is None or job.done.done():
            return
        self._killpg(job, signal.SIGTERM)
        if job.killer is None:
            job.killer = asyncio.get_running_loop().call_later(
                max(0.0, grace), self._killpg, job, signal.SIGKILL
            )

    @staticmethod
    def _killpg(job: _Job, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.proc.pid, signum)

    async def signal(self, job_id: str, signum: int, *, group: bool = True) -> None:
        job_dir(self.root, job_id)
        if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < signal.NSIG:
            raise RuntimeError_(f"bad signal number {signum!r}", reason="BadRequest")
        job = self._jobs.get(job_id)
        if job is None or job.done.done():
            return
        if group:
            self._killpg(job, signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(job.proc.pid, signum)

    async def suspend(self, job_id: str) -> None:
        await self.signal(job_id, signal.SIGSTOP)

    async def resume(self, job_id: str) -> None:
        await self.signal(job_id, signal.SIGCONT)

    async def inspect(self, job_id: str) -> JobState:
        try:
            d = job_dir(self.root, job_id)
        except RuntimeError_:
            return JobState(State.NOT_FOUND)
        job = self._jobs.get(job_id)
        if job is not None and not job.done.done():
            started = read_json(str(d / STARTED)) or {}
            return JobState(State.RUNNING, datetime.fromisoformat(started["started_at"]))
        record = read_json(str(d / EXIT))
        if record is None:
            return JobState(State.NOT_FOUND)
        ex = exit_from_record(record)
        return JobState(State.EXITED, datetime.fromisoformat(record["started_at"]), ex)

    async def wait(self, job_id: str) -> ExitInfo:
        d = job_dir(self.root, job_id)
        job = self._jobs.get(job_id)
        if job is not None:
            return await asyncio.shield(job.done)
        record = read_json(str(d / EXIT))
        if record is None:
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        return exit_from_record(record)

    def _finished(self, job_id: str, d: Path) -> bool:
        job = self._jobs.get(job_id)
        return (
            job.done.done()
            if job is not None
            else (d / EXIT).exists() or (not (d / SPEC).exists() and d.is_dir())
        )

    def logs(
        self,
        job_id: str,
        *,
        since: datetime | None = None,
        timestamps: bool = False,
        follow: bool = True,
    ) -> AsyncIterator[bytes]:
        d = job_dir(self.root, job_id)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return read_log(
            str(d),
            since=None if since is None else since.timestamp(),
            timestamps=timestamps,
            follow=follow,
            finished=lambda: self._finished(job_id, d),
            poll=self.poll_interval,
        )

    async def log_size(self, job_id: str) -> int:
        try:
            return log_size(job_dir(self.root, job_id))
        except RuntimeError_:
            return 0

    async def cleanup(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.done.done():
            del self._jobs[job_id]

    # -- interactive -----------------------------------------------------------------------

    def _running(self, job_id: str) -> tuple[Path, _Job]:
        d = job_dir(self.root, job_id)
        job = self._jobs.get(job_id)
        if job is None and not (d / SPEC).exists():
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        if job is None or job.done.done():
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return d, job

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        d, job = self._running(job_id)
        if stdin:
            raise RuntimeError_(
                f"job {job_id} was not started with a tty: its stdin cannot be attached ({NO_TTY})",
                reason="BadRequest",
            )
        return LogSession(
            str(d), job.done, stdout=stdout, stderr=stderr, logs=logs, poll=self.poll_interval
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
        _d, job = self._running(job_id)
        if tty:
            raise RuntimeError_(NO_TTY, reason="BadRequest")
        session = await ExecSession.open(
            argv, env={**job.env, **(env or {})}, cwd=job.cwd, stdin=stdin
        )
        job.execs.append(session)
        return session

    async def resize(self, job_id: str, height: int, width: int) -> None:
        self._running(job_id)  # (no terminals: nothing to resize)

    async def connect_port(self, job_id: str, port: int) -> tuple[PortReader, PortWriter]:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuntimeError_(f"bad port {port!r}: ports are 1-65535", reason="BadRequest")
        self._running(job_id)
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            raise RuntimeError_(
                f"nothing listens on port {port} in job {job_id} ({e})", reason="PortNotListening"
            ) from None

    async def stats(self, job_id: str) -> Telemetry | None:
        job = self._jobs.get(job_id)
        if job is None or job.done.done():
            return None
        sample = _sample(job.proc.pid)
        if sample is None:
            return None
        if job.cpu is None:
            job.cpu = (time.monotonic(), sample[0])
            await asyncio.sleep(self.stats_interval)
            sample = _sample(job.proc.pid)
            if sample is None:
                return None
        now, (t0, cpu0) = time.monotonic(), job.cpu
        job.cpu = (now, sample[0])
        cpu = max(0.0, (sample[0] - cpu0) / (now - t0)) if now > t0 else 0.0
        return Telemetry(timestamp=time.time(), cpu=cpu, memory=sample[1])


def _sample(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of the process tree of ``pid``; None once it is gone."""
    import psutil  # type: ignore[import-untyped]

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu, rss = 0.0, 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            cpu += t.user + t.system + t.children_user + t.children_system
            rss += p.memory_info().rss
    return cpu, rss
