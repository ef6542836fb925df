"""The ``slurm`` runtime: one Slurm job per neuro job, on a team's cluster.

Slurm places the job, enforces its limits (its cgroups on the node), its time limit, and keeps
its state; the job itself runs under the process runtime's supervisor
(neuro_server/runtime/process/supervisor/), which the batch script (script.py) execs in the
foreground with the job dir of jobdir.py.  So the job's output (output.log by offset: follow,
since, timestamps, resume), attach with a TTY and resize, exec beside it, signals to its own
process group and its exit record are exactly the process runtime's; only the supervisor makes
no cgroups of its own (spec.json ``limits_by``).

The server reads the supervisor's files and talks to its unix control socket directly: on this
machine every node shares the disk.  A real cluster needs the jobs dir on a shared filesystem
that the login node (the server) and every node mount, and the control socket reachable
(exec/attach across nodes by ``srun --jobid=N --overlap`` is the later step).

    rt = SlurmRuntime(Path("/shared/neuro/jobs"), env={"SLURM_CONF": "/etc/slurm/slurm.conf"})

State: exit.json when the supervisor recorded the end; else squeue (pending with Slurm's
reason, through the progress listener; running); else (Slurm ended the job and the supervisor
could not say it: a node failure, a hard cancel, the time limit) sacct's state, recorded once
in exit.json with Slurm's words.  Every Slurm job of ours is named ``neuro-<id>`` and commented
``neuro:<id>``; squeue's and sacct's other jobs are never looked at.  A server started again
finds every job by its job dir (slurm.json holds the Slurm job id) and squeue: a job still
pending in Slurm is adopted by the next start, never submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path

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
    exit_record,
    iso_now,
    job_dir,
    log_size,
    make_slot,
    read_json,
    record_time,
    write_json,
    write_record,
)
from ..process import control, sessions, supervised
from ..process.spec import spec_record
from ..process.supervisors import remove_stale_socket, start_info
from . import states
from .capacity import Nodes, is_local
from .commands import Slurm, SlurmError, SlurmJob
from .ended import record_lost, why_not_started
from .local import connect, sample
from .script import HOST_ENV_PREFIXES, SCRIPT, batch_script, parse_sbatch, sbatch_argv, tail

NOTE = "the image is not used: the command runs on the cluster's nodes in their host environment"
LIMITS = "memory, cpu and GPUs enforced by Slurm (its cgroups on the node)"
SLURM = "slurm.json"  # {slurm_id, submitted_at}: the Slurm job of this neuro job
QUEUE_AGE = 0.5  # seconds a squeue answer serves every job's question
KILL_MARGIN = 5.0  # after the grace: Slurm cancels what is left
log = logging.getLogger(__name__)


class SlurmRuntime:
    name = "slurm"

    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        partitions: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        poll_interval: float = 0.05,
        output_limit: int = 0,
    ) -> None:
        """``env``: for the Slurm commands (SLURM_CONF...); ``partitions``: preset name ->
        its partition ("" or absent: Slurm's default); ``start_timeout``: how long a job
        Slurm runs may take until its supervisor runs it."""
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.slurm = Slurm(env)
        self.partitions = dict(partitions or {})
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        self.output_limit = max(0, output_limit)
        self.nodes = Nodes(self.slurm)
        self.nodes.load_now(self.slurm.env)
        self._listener: ProgressListener | None = None
        self._queue: dict[str, SlurmJob] = {}
        self._queue_at = 0.0  # time.time() of the squeue answer
        self._queue_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        from .. import mountns

        self.capabilities = Capabilities(
            runs_images=False,
            needs_command=True,
            mounts=mountns.why_unsupported() or "",
            privileged=False,
            assigns_gpus=True,  # Slurm gives the job its GPUs (GRES: CUDA_VISIBLE_DEVICES)
            loopback_reachable=bool(self.nodes.nodes)
            and all(is_local(n.address) for n in self.nodes.nodes.values()),
            reports_progress=True,
            host_users=True,
        )

    def job_dir(self, job_id: str) -> Path:
        return job_dir(self.root, job_id)

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(name=self.name, limits=LIMITS, note=NOTE, start_reason="Submitting")

    def capacity(self) -> Capacity:
        return self.nodes.capacity()

    def set_progress_listener(self, listener: ProgressListener | None) -> None:
        self._listener = listener

    async def close(self) -> None:
        """Jobs go on in Slurm; only the timers of stops under way end."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.nodes.close()

    # -- what Slurm knows --------------------------------------------------------------------

    async def queue(self, after: float = 0.0) -> dict[str, SlurmJob]:
        """Our jobs in squeue, from an answer given after ``after`` (time.time()) and at most
        QUEUE_AGE old: one squeue serves every job's question."""
        async with self._queue_lock:
            now = time.time()
            if self._queue_at <= after or now - self._queue_at > QUEUE_AGE:
                asked = time.time()
                self._queue = {j.job_id: j for j in await self.slurm.squeue()}
                self._queue_at = asked
            return self._queue

    async def _slurm_job(
        self, job_id: str, record: dict[str, object], *, fresh: bool = False
    ) -> SlurmJob | None:
        """The job's Slurm job as squeue has it now (None: Slurm no longer lists it);
        ``fresh``: from an answer asked for now (not one QUEUE_AGE old)."""
        submitted = time.time() if fresh else float(str(record.get("submitted_at") or 0))
        found = (await self.queue(after=submitted)).get(job_id)
        if found is None or found.slurm_id != record.get("slurm_id"):
            return None
        return found

    # -- start -------------------------------------------------------------------------------

    async def start(self, spec: JobSpec) -> StartInfo:
        d = self.job_dir(spec.job_id)
        record = read_json(str(d / SLURM))
        known = None if record is None else await self._slurm_job(spec.job_id, record, fresh=True)
        waits = known is not None and known.state in states.PENDING_STATES
        if known is not None and waits and not (d / STARTED).exists() and (d / SPEC).exists():
            slurm_id = known.slurm_id  # submitted by a server before this one: adopted
        elif (
            known is not None
            and (waits or known.state in states.RUNNING_STATES)
            and not (d / EXIT).exists()  # (else its batch step is ending: a new job it is)
        ):
            raise RuntimeError_(f"job {spec.job_id} is already running")
        else:
            slurm_id = await self._submit(spec, d)
        return await self._await_start(spec, d, slurm_id)

    async def _submit(self, spec: JobSpec, d: Path) -> int:
        self._prepare(spec, d)
        argv = sbatch_argv(
            spec, d, partition=self.partitions.get(spec.preset, ""), life_span=spec.life_span
        )
        try:
            slurm_id = parse_sbatch(await self.slurm.run(*argv))
        except (SlurmError, ValueError) as e:
            raise RuntimeError_(f"Slurm refused the job: {e}") from None
        # (after: only a squeue asked since then must list it)
        submitted_at = time.time()
        write_json(str(d / SLURM), {"slurm_id": slurm_id, "submitted_at": submitted_at})
        return slurm_id

    def _prepare(self, spec: JobSpec, d: Path) -> None:
        """The job dir: spec.json (for the supervisor), the batch script, the records' room."""
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)  # spec.json holds the environment, secret variables included
        for name in (SUPERVISOR, STARTED, STOP, EXIT, SLURM, control.CONTROL):  # earlier runs'
            (d / name).unlink(missing_ok=True)
        record = spec_record(
            spec,
            cgroup_parent="neuro",
            cgroup_root="",
            attach_max_lag=None,
            pids_limit=0,
            output_limit=self.output_limit,
        )
        record["limits_by"] = "Slurm"
        record["host_env_prefixes"] = list(HOST_ENV_PREFIXES)
        write_json(str(d / SPEC), record)
        (d / SCRIPT).write_text(batch_script(d))
        try:  # the room of its records, taken now: a full disk later cannot cost its exit code
            for name in (SUPERVISOR, STARTED, EXIT):
                make_slot(str(d / name))
        except OSError as e:
            raise RuntimeError_(f"cannot start the job: {e.strerror or e}") from e

    async def _await_start(self, spec: JobSpec, d: Path, slurm_id: int) -> StartInfo:
        """Return once the supervisor runs the job; report Slurm's pending reasons meanwhile."""
        record = read_json(str(d / SLURM)) or {"slurm_id": slurm_id}
        said = ""
        ran_since: float | None = None
        asked = 0.0
        while True:
            info = start_info(d)
            if info is not None:
                ended = read_json(str(d / EXIT))
                if ended is not None and ended.get("started") is False:  # its volumes
                    raise RuntimeError_(str(ended.get("error") or "the job could not start"))
                address = await self._address(spec.job_id, record)
                return dataclasses.replace(
                    info, address=address, hostname=address if spec.hostname else ""
                )
            now = time.monotonic()
            if now - asked >= 0.2:
                asked = now
                job = await self._slurm_job(spec.job_id, record)
                if job is None or job.state not in states.PENDING_STATES | states.RUNNING_STATES:
                    if start_info(d) is not None:
                        continue
                    raise RuntimeError_(await why_not_started(self.slurm, d, slurm_id, job))
                if job.state in states.PENDING_STATES:
                    if job.reason != said and self._listener is not None:
                        self._listener(
                            spec.job_id,
                            states.pending_reason(job.reason),
                            states.pending_words(job.reason),
                        )
                    said = job.reason
                elif ran_since is None:
                    ran_since = now
                elif now - ran_since > self.start_timeout:
                    await self.slurm.scancel(slurm_id)
                    raise RuntimeError_(
                        f"the job ran in Slurm but did not start within {self.start_timeout:g} s:"
                        f" {tail(d)}"
                    )
            await asyncio.sleep(self.poll_interval)

    async def _address(self, job_id: str, record: dict[str, object]) -> str:
        job = await self._slurm_job(job_id, record, fresh=True)
        return await self.nodes.address(job.node) if job is not None and job.node else "localhost"

    # -- control -----------------------------------------------------------------------------

    async def stop(self, job_id: str, *, grace: float) -> None:
        """SIGTERM to the batch step (the supervisor: it TERMs the job, SIGKILLs it after
        ``grace`` and records the end); Slurm cancels what is left KILL_MARGIN s later.  A
        job still pending in Slurm is cancelled at once."""
        d = self.job_dir(job_id)
        if not (d / SPEC).exists() or (d / EXIT).exists():
            return
        # a supervisor still to start finds stop.json once the job runs, and stops it then
        write_json(str(d / STOP), {"grace": grace, "requested_at": iso_now()})
        record = read_json(str(d / SLURM))
        if record is None:
            return
        slurm_id = int(str(record["slurm_id"]))
        job = await self._slurm_job(job_id, record, fresh=True)
        if job is None:
            return
        if (
            job.state in states.PENDING_STATES and not (d / STARTED).exists()
        ):  # nothing runs yet: it ends here (TERM's code)
            await self.slurm.scancel(slurm_id)
            if read_json(str(d / EXIT)) is None:
                now = iso_now()
                record = exit_record(128 + signal.SIGTERM, finished_at=now, started_at=now)
                write_record(str(d / EXIT), record, durable=True)
            return
        await self.slurm.scancel(slurm_id, "--batch", "--signal=TERM")
        task = asyncio.get_running_loop().create_task(self._cancel_later(d, slurm_id, grace))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_later(self, d: Path, slurm_id: int, grace: float) -> None:
        await asyncio.sleep(grace + KILL_MARGIN)
        if not (d / EXIT).exists():
            await self.slurm.scancel(slurm_id)

    async def signal(self, job_id: str, signum: int, *, group: bool = True) -> None:
        """Through the supervisor (to the job's process group, or its main process only);
        nothing happens when the job does not run."""
        if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < signal.NSIG:
            raise RuntimeError_(f"bad signal number {signum!r}", reason="BadRequest")
        d = self.job_dir(job_id)
        if not (d / control.CONTROL).exists():
            return
        kind = control.SIGNAL if group else control.SIGNAL_MAIN
        with contextlib.suppress(RuntimeError_):  # it ended meanwhile
            await sessions.request(str(d), job_id, kind, control.SIGNUM.pack(signum))

    async def suspend(self, job_id: str) -> None:
        """``scontrol suspend``: Slurm stops the job's processes (SIGSTOP), its CPUs free."""
        await self._scontrol(job_id, "suspend")

    async def resume(self, job_id: str) -> None:
        await self._scontrol(job_id, "resume")

    async def _scontrol(self, job_id: str, verb: str) -> None:
        record = read_json(str(self.job_dir(job_id) / SLURM))
        if record is None:
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        try:
            await self.slurm.run("scontrol", verb, str(record["slurm_id"]))
        except SlurmError as e:
            raise RuntimeError_(f"cannot {verb} job {job_id}: {e}") from None

    # -- state -------------------------------------------------------------------------------

    async def inspect(self, job_id: str) -> JobState:
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return JobState(State.NOT_FOUND)
        ended = read_json(str(d / EXIT))
        record = read_json(str(d / SLURM))
        if ended is None and record is not None:
            job = await self._slurm_job(job_id, record)
            started = read_json(str(d / STARTED))
            active = job is not None and job.state in states.PENDING_STATES | states.RUNNING_STATES
            if active and started is not None:  # (an answer a moment old may say pending)
                return JobState(State.RUNNING, started_at=record_time(started, "started_at"))
            if active:
                return JobState(State.NOT_FOUND)  # waits in Slurm (a start adopts it)
            ended = read_json(str(d / EXIT))  # it may have ended meanwhile
            if ended is None and started is not None:
                ended = await record_lost(self.slurm, d, int(str(record["slurm_id"])), job, started)
        if ended is None:
            return JobState(State.NOT_FOUND)
        return JobState(
            State.EXITED, started_at=record_time(ended, "started_at"), exit=exit_from_record(ended)
        )

    async def wait(self, job_id: str) -> ExitInfo:
        d = self.job_dir(job_id)
        asked = 0.0
        while True:
            ended = read_json(str(d / EXIT))
            if ended is not None:
                return exit_from_record(ended)
            if time.monotonic() - asked >= 1.0:
                asked = time.monotonic()
                st = await self.inspect(job_id)
                if st.exit is not None:
                    return st.exit
                if st.state is State.NOT_FOUND and not (d / SLURM).exists():
                    raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
            await asyncio.sleep(self.poll_interval)

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
            finished=lambda: (d / EXIT).exists(),
            poll=self.poll_interval,
        )

    async def log_size(self, job_id: str) -> int:
        try:
            return log_size(self.job_dir(job_id))
        except RuntimeError_:
            return 0

    async def cleanup(self, job_id: str) -> None:
        """Slurm releases the job's cgroups; here the stale control socket goes (the output,
        exit.json and slurm.json stay)."""
        d = self.job_dir(job_id)
        if (await self.inspect(job_id)).state is State.RUNNING:
            return
        (d / STOP).unlink(missing_ok=True)
        remove_stale_socket(d)

    # -- interactive (through the supervisor's control socket) --------------------------------

    async def _running(self, job_id: str) -> Path:
        d = self.job_dir(job_id)
        state = (await self.inspect(job_id)).state
        if state is State.NOT_FOUND and not (d / SPEC).exists():
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        if state is not State.RUNNING:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return d

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        d = await self._running(job_id)
        return await supervised.attach(
            d, job_id, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs
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
        """Run ``argv`` beside the job by its supervisor (in its Slurm step, its env and
        working dir), as the process runtime does."""
        d = await self._running(job_id)
        return await supervised.exec_beside(
            d, job_id, argv, tty=tty, stdin=stdin, env=env, size=size
        )

    async def resize(self, job_id: str, height: int, width: int) -> None:
        await supervised.resize(await self._running(job_id), job_id, height, width)

    async def connect_port(self, job_id: str, port: int) -> tuple[PortReader, PortWriter]:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuntimeError_(f"bad port {port!r}: ports are 1-65535", reason="BadRequest")
        d = await self._running(job_id)
        address = await self._address(job_id, read_json(str(d / SLURM)) or {})
        return await connect(d, job_id, address, port)

    async def stats(self, job_id: str) -> Telemetry | None:
        """CPU and memory of the job's processes (on this machine: the nodes' processes are
        its own; sstat is the later step for remote nodes)."""
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return None
        if (await self.inspect(job_id)).state is not State.RUNNING:
            return None
        return await sample(d)
