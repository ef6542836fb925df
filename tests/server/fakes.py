"""A fake runtime for scheduler and handler tests: every method of the Runtime interface
(neuro_server/runtime/base.py), in memory, no process at all.  A test decides what its jobs
do: ``emit`` output, ``finish`` them with an exit code; what the server asked is recorded.

    fake = FakeRuntime()                        # or FakeRuntime(capabilities=..., capacity=...)
    app = make_app(config, store, fake)
    ... POST a job ...
    await fake.started("job-...")               # the scheduler started it
    fake.emit(job_id, b"hello\\n"); fake.finish(job_id, 3)

Exec sessions run nothing: their output is ``exec_output`` and their exit ``exec_code``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

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

#: what the process runtime declares, without its mounts (tests set their own)
HOST_LIKE = Capabilities(runs_images=False, needs_command=True, loopback_reachable=True)


@dataclasses.dataclass
class FakeJob:
    spec: JobSpec
    started_at: datetime
    output: list[tuple[int, bytes, float]] = dataclasses.field(default_factory=list)
    exit: ExitInfo | None = None
    suspended: bool = False
    signals: list[int] = dataclasses.field(default_factory=list)
    stopped: float | None = None  # the grace of a stop asked
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class FakeRuntime:
    name = "fake"

    def __init__(
        self,
        *,
        capabilities: Capabilities = HOST_LIKE,
        capacity: Capacity | None = None,
        fail_start: RuntimeError_ | None = None,
        exit_on_stop: int | None = 143,
    ) -> None:
        """``fail_start``: raised by every start; ``exit_on_stop``: the exit code a stopped job
        ends with at once (None: it ends only when the test finishes it)."""
        self.capabilities = capabilities
        self._capacity = capacity or Capacity.one_node("fake", 8.0, 16 << 30)
        self.fail_start = fail_start
        self.exit_on_stop = exit_on_stop
        self.jobs: dict[str, FakeJob] = {}
        self.listener: ProgressListener | None = None
        self.calls: list[tuple[str, str]] = []  # (method, job id)
        self.exec_output: list[tuple[int, bytes]] = []
        self.exec_code = 0
        self.closed = False
        self._started = asyncio.Event()

    # -- what tests do -----------------------------------------------------------------------

    def emit(self, job_id: str, data: bytes, stream: int = 1) -> None:
        job = self.jobs[job_id]
        job.output.append((stream, data, time.time()))
        job.notify()

    def finish(
        self, job_id: str, code: int = 0, *, oom_killed: bool = False, error: str = ""
    ) -> None:
        job = self.jobs[job_id]
        if job.exit is None:
            job.exit = ExitInfo(code, datetime.now(UTC), oom_killed=oom_killed, error=error)
            job.notify()

    async def started(self, job_id: str, timeout: float = 10.0) -> FakeJob:
        """The job, once the server started it."""

        async def go() -> FakeJob:
            while job_id not in self.jobs:
                self._started.clear()
                await self._started.wait()
            return self.jobs[job_id]

        return await asyncio.wait_for(go(), timeout)

    def report(self, job_id: str, reason: str, description: str) -> None:
        """Tell the progress listener what a start does (a runtime that pulls images)."""
        if self.listener is not None:
            self.listener(job_id, reason, description)

    # -- the Runtime interface -------------------------------------------------------------

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(
            name=self.name, limits="none (a fake)", note="a fake runtime", start_reason="Starting"
        )

    def capacity(self) -> Capacity:
        return self._capacity

    def set_progress_listener(self, listener: ProgressListener | None) -> None:
        self.listener = listener

    async def close(self) -> None:
        self.closed = True

    def _job(self, job_id: str) -> FakeJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        return job

    def _running(self, job_id: str) -> FakeJob:
        job = self._job(job_id)
        if job.exit is not None:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return job

    async def start(self, spec: JobSpec) -> StartInfo:
        self.calls.append(("start", spec.job_id))
        if self.fail_start is not None:
            raise self.fail_start
        old = self.jobs.get(spec.job_id)
        if old is not None and old.exit is None:
            raise RuntimeError_(f"job {spec.job_id} is already running")
        job = self.jobs[spec.job_id] = FakeJob(spec, datetime.now(UTC))
        if old is not None:
            job.output = old.output  # a restarted job appends to its log
        self._started.set()
        return StartInfo(started_at=job.started_at, limits="none (a fake)")

    async def stop(self, job_id: str, *, grace: float) -> None:
        self.calls.append(("stop", job_id))
        job = self.jobs.get(job_id)
        if job is not None and job.exit is None:
            job.stopped = grace
            if self.exit_on_stop is not None:
                self.finish(job_id, self.exit_on_stop)

    async def signal(self, job_id: str, signum: int, *, group: bool = True) -> None:
        self.calls.append(("signal", job_id))
        if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < 65:
            raise RuntimeError_(f"bad signal number {signum!r}", reason="BadRequest")
        job = self.jobs.get(job_id)
        if job is not None and job.exit is None:
            job.signals.append(signum)

    async def suspend(self, job_id: str) -> None:
        self.calls.append(("suspend", job_id))
        self._running(job_id).suspended = True

    async def resume(self, job_id: str) -> None:
        self.calls.append(("resume", job_id))
        job = self.jobs.get(job_id)
        if job is not None:
            job.suspended = False

    async def inspect(self, job_id: str) -> JobState:
        job = self.jobs.get(job_id)
        if job is None:
            return JobState(State.NOT_FOUND)
        if job.exit is None:
            return JobState(State.RUNNING, job.started_at)
        return JobState(State.EXITED, job.started_at, job.exit)

    async def wait(self, job_id: str) -> ExitInfo:
        job = self._job(job_id)
        while job.exit is None:
            await job.changed.wait()
            job = self.jobs[job_id]
        return job.exit

    async def _chunks(
        self, job_id: str, since: datetime | None, timestamps: bool, follow: bool
    ) -> AsyncIterator[bytes]:
        sent = 0
        t0 = None if since is None else since.replace(tzinfo=since.tzinfo or UTC).timestamp()
        while True:
            job = self.jobs.get(job_id)
            output = job.output if job is not None else []
            for _stream, data, when in output[sent:]:
                if t0 is None or when >= t0:
                    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                    yield (stamp.encode() + b" " + data) if timestamps else data
            sent = len(output)
            if not follow or (job is not None and job.exit is not None):
                return
            if job is None:
                await asyncio.sleep(0.02)
            else:
                await job.changed.wait()

    def logs(
        self,
        job_id: str,
        *,
        since: datetime | None = None,
        timestamps: bool = False,
        follow: bool = True,
    ) -> AsyncIterator[bytes]:
        return self._chunks(job_id, since, timestamps, follow)

    async def log_size(self, job_id: str) -> int:
        job = self.jobs.get(job_id)
        return sum(len(d) for _s, d, _w in job.output) if job is not None else 0

    async def cleanup(self, job_id: str) -> None:
        self.calls.append(("cleanup", job_id))

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        job = self._running(job_id)
        if stdin and not job.spec.tty:
            raise RuntimeError_(
                f"job {job_id} was not started with a tty: its stdin cannot be attached",
                reason="BadRequest",
            )
        streams = {s for s, on in ((1, stdout), (2, stderr)) if on}
        return FakeSession(self, job_id, streams, 0 if logs else len(job.output))

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
        self._running(job_id)
        self.calls.append(("exec", job_id))
        return FakeExec(list(self.exec_output), self.exec_code)

    async def resize(self, job_id: str, height: int, width: int) -> None:
        self._running(job_id)
        self.calls.append(("resize", job_id))

    async def connect_port(self, job_id: str, port: int) -> tuple[PortReader, PortWriter]:
        self._running(job_id)
        raise RuntimeError_(
            f"nothing listens on port {port} in job {job_id} (a fake)", reason="PortNotListening"
        )

    async def stats(self, job_id: str) -> Telemetry | None:
        job = self.jobs.get(job_id)
        if job is None or job.exit is not None:
            return None
        return Telemetry(timestamp=time.time(), cpu=0.25, memory=64 << 20)


class FakeSession:
    """An attach session: the job's output from where it attached, until the job ends."""

    def __init__(self, rt: FakeRuntime, job_id: str, streams: set[int], start: int) -> None:
        self._rt, self._job_id, self._streams, self._next = rt, job_id, streams, start
        self._closed = False
        self.exit_code: int | None = None

    async def read(self) -> tuple[int, bytes] | None:
        while not self._closed:
            job = self._rt.jobs[self._job_id]
            while self._next < len(job.output):
                stream, data, _when = job.output[self._next]
                self._next += 1
                if stream in self._streams:
                    return stream, data
            if job.exit is not None:
                self.exit_code = job.exit.exit_code
                return None
            await job.changed.wait()
        return None

    async def write(self, data: bytes) -> None:
        pass

    async def close_stdin(self) -> None:
        pass

    async def resize(self, height: int, width: int) -> None:
        pass

    async def wait(self) -> int | None:
        return None

    async def close(self) -> None:
        self._closed = True


class FakeExec:
    """An exec session: fixed output, then its exit code."""

    def __init__(self, output: list[tuple[int, bytes]], code: int) -> None:
        self._output, self._code = output, code

    async def read(self) -> tuple[int, bytes] | None:
        return self._output.pop(0) if self._output else None

    async def write(self, data: bytes) -> None:
        pass

    async def close_stdin(self) -> None:
        pass

    async def resize(self, height: int, width: int) -> None:
        pass

    async def wait(self) -> int | None:
        return self._code

    async def close(self) -> None:
        pass
