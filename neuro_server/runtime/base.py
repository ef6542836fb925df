"""The contract between the server (scheduler, handlers) and a job runtime.

The server owns the job *records* (SQLite) and the status transitions; a runtime owns the job's
*processes* and their output.  A runtime must let jobs outlive the server: after a restart,
``inspect`` and ``wait`` work for jobs started by an earlier server process, and ``logs`` reads
everything the job printed meanwhile.

A runtime is a plug-in: one package under ``neuro_server/runtime/`` and one line in
registry.py.  It declares what it can do (``Capabilities``: the server never guesses from its
name or with ``hasattr``), what it can give jobs (``Capacity``), and implements ``Runtime``:
every method the server calls is declared here, async wherever a runtime may have to ask
something over the network (a cluster's REST API cannot answer ``inspect`` synchronously).
The runtime's input is ``JobSpec``, a plain frozen dataclass the scheduler builds from the job
model; nothing of the server's store or job model reaches a runtime.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

TTY_SIZE = (24, 80)  # rows, columns of a terminal until a client says its size


@dataclasses.dataclass(frozen=True)
class Mount:
    """A volume: ``path`` (relative, '' for the tree itself) beneath the directory ``root``
    (a user's storage tree, a disk's mount point), at ``dst`` in the job.

    Not a host path string on purpose: the owner's jobs may rename entries of the tree at any
    moment (swap a directory for a link out of it), so a runtime opens ``path`` beneath ``root``
    with neuro_server.pathsafe (no link followed) at the moment it mounts it, and mounts that
    open file, never the string.  ``root`` itself is the server's (jobs cannot replace it)."""

    root: str
    path: str
    dst: str
    read_only: bool = False

    @property
    def source(self) -> str:
        """The host path, for messages only."""
        return f"{self.root.rstrip('/')}/{self.path}" if self.path else self.root


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What to run.  ``argv`` is already resolved from entrypoint + command (never empty)."""

    job_id: str
    argv: Sequence[str]
    env: Mapping[str, str]
    working_dir: str | None
    cpu: float  # cores
    memory: int  # bytes
    tty: bool = False
    image: str = ""
    owner: str = ""
    # as the user gave them (a runtime with images uses the image's own when these are None)
    entrypoint: str | None = None
    command: str | None = None
    shm: bool = False
    gpus: int = 0
    gpu_ids: tuple[int, ...] = ()  # which GPUs (NVML indices), assigned by the scheduler
    privileged: bool = False  # only where the server allows it, on a runtime with containers
    # (path in the job's filesystem, content): secret files, read-only
    files: Sequence[tuple[str, bytes]] = ()
    # storage volumes and disks, pinned beneath their trees by the runtime (see Mount)
    mounts: Sequence[Mount] = ()
    # the job's name among its owner's jobs (NAME--OWNER), for runtimes whose jobs resolve names
    hostname: str = ""
    # who a runtime that runs jobs on the host runs it (and its execs) as: its owner's own uid
    # and gid (neuro_server/jobusers.py), and their home (HOME; its jobs/<job_id> is the
    # default working dir); None: as the server's user, with the runtime's own working dir
    uid: int | None = None
    gid: int | None = None
    home: str = ""
    preset: str = ""  # its preset's name (a cluster's runtime maps it to a partition)
    life_span: float | None = None  # seconds of run time (a cluster's time limit); None: none


def dns_label(text: str) -> str:
    """A DNS-safe form of a user or job name (lower-case letters, digits, dashes)."""
    import re

    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:63] or "x"


def job_hostname(name: str, owner: str) -> str:
    """The host name of a named job among its owner's jobs: ``NAME--OWNER``."""
    return f"{dns_label(name)}--{dns_label(owner)}"


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a runtime can do, declared (never guessed from its name, nor with ``hasattr``)."""

    runs_images: bool  # the job runs in its image; False: on the host (said plainly to users)
    needs_command: bool  # a job must name a command (there is no image default CMD)
    mounts: str = ""  # "" when volumes and secret files can be given to jobs, else why not
    privileged: bool = False  # privileged jobs are possible (the admin still has to allow them)
    # the runtime hands the job its GPUs itself (JobSpec.gpu_ids); False: the scheduler sets
    # CUDA_VISIBLE_DEVICES in the job's environment
    assigns_gpus: bool = False
    loopback_reachable: bool = False  # jobs reach a server on loopback (pass_config)
    reports_progress: bool = False  # start() reports its phases through the progress listener
    # jobs run on the host as JobSpec.uid/gid: the server gives each user a uid of their own
    # (jobusers.py), fences their ports and owns their files
    host_users: bool = False


@dataclasses.dataclass(frozen=True)
class NodeCapacity:
    """What one node (one machine) can give jobs."""

    name: str
    cpu: float  # cores
    memory: int  # bytes
    nvidia_gpu: int = 0


@dataclasses.dataclass(frozen=True)
class Capacity:
    """What a runtime can give jobs, in total and per node (this machine: one node)."""

    cpu: float  # cores
    memory: int  # bytes
    nvidia_gpu: int = 0
    nodes: tuple[NodeCapacity, ...] = ()

    @classmethod
    def one_node(cls, name: str, cpu: float, memory: int, nvidia_gpu: int = 0) -> Capacity:
        return cls(cpu, memory, nvidia_gpu, (NodeCapacity(name, cpu, memory, nvidia_gpu),))


#: a runtime's progress listener: (job id, reason, description), e.g. ("job-1", "Pulling",
#: "Pulling image X: ..."); the scheduler shows them as the pending job's reason
ProgressListener = Callable[[str, str, str], None]


@dataclasses.dataclass(frozen=True)
class RuntimeInfo:
    """How this runtime runs jobs, in words, for `config show` and job status."""

    name: str  # "process", "docker"
    limits: str  # how limits are enforced, e.g. "cgroup v1 (memory, cpu)" or "rlimit (memory only)"
    note: str = ""  # plain words for users, e.g. "the image is not used: jobs run on this host"
    volumes: str = ""  # how volumes reach jobs, in plain words, where the runtime says more
    # the pending reason while a job starts (the platform's word is for containers)
    start_reason: str = "ContainerCreating"


@dataclasses.dataclass(frozen=True)
class StartInfo:
    started_at: datetime
    limits: (
        str  # what was actually enforced for this job, e.g. "memory 1.0 GiB, cpu 0.5 (cgroup v1)"
    )
    # where other jobs reach it: the host's jobs at localhost; a container at its id where its
    # network resolves names, else at its IP
    address: str = "localhost"
    hostname: str = ""  # the name other jobs of its owner reach it by, where there is one


@dataclasses.dataclass(frozen=True)
class ExitInfo:
    exit_code: int  # 128+N when killed by signal N
    finished_at: datetime
    oom_killed: bool = False
    error: str = ""  # set when the command could not be started (e.g. not found: exit 127)
    # set when the runtime lost the job's supervisor and killed what was left: why, in words
    lost: str = ""


class State(str, enum.Enum):
    NOT_FOUND = "not_found"  # the runtime knows nothing of this job (never started, or lost)
    RUNNING = "running"
    EXITED = "exited"


@dataclasses.dataclass(frozen=True)
class JobState:
    state: State
    started_at: datetime | None = None
    exit: ExitInfo | None = None


class RuntimeError_(Exception):
    """A runtime could not do what was asked; ``reason`` is a status reason (e.g. ContainerCannotRun)."""

    def __init__(self, message: str, reason: str = "ContainerCannotRun") -> None:
        super().__init__(message)
        self.reason = reason


def tty_size(size: tuple[int, int] | None) -> tuple[int, int]:
    """The (rows, columns) to open a terminal at: ``size`` when given (RuntimeError_
    BadRequest when out of range), else TTY_SIZE."""
    if size is None:
        return TTY_SIZE
    rows, cols = size
    if not (0 < rows <= 0xFFFF and 0 < cols <= 0xFFFF):
        raise RuntimeError_(f"bad terminal size {rows}x{cols}", reason="BadRequest")
    return rows, cols


@dataclasses.dataclass(frozen=True)
class Telemetry:
    """One sample of what a job uses now."""

    timestamp: float  # unix time
    cpu: float  # cores in use, averaged since the previous sample
    memory: int  # bytes
    gpu_duty_cycle: int | None = None  # percent, for jobs with GPUs
    gpu_memory: int | None = None  # bytes


class PortReader(Protocol):
    """The reading half of a connection to a job's port (an asyncio StreamReader, or a relay)."""

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all, to the end, when ``n`` < 0); b"" at the end."""


class PortWriter(Protocol):
    """The writing half of a connection to a job's port (an asyncio StreamWriter, or a relay)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class StdioSession(Protocol):
    """A connection to the stdio of a job (attach) or of a command run beside it (exec).

    Output arrives as (1, data) for stdout and (2, data) for stderr; on a TTY everything is 1.
    """

    async def read(self) -> tuple[int, bytes] | None:
        """The next chunk of output, or None once there is no more (the process ended, or
        the session was closed)."""

    async def write(self, data: bytes) -> None:
        """Send bytes to the process's stdin (a no-op when stdin is not attached)."""

    async def close_stdin(self) -> None:
        """End of input: the process reads EOF (on a TTY: the EOF character)."""

    async def resize(self, height: int, width: int) -> None:
        """Resize the session's terminal (the process gets SIGWINCH); no-op without a TTY."""

    async def wait(self) -> int | None:
        """The exit code of an exec session once it ended; None for attach sessions."""

    async def close(self) -> None:
        """Detach: the job goes on. Closing an exec session whose command still runs kills it."""


class Runtime(Protocol):
    """A job runtime, as the server (scheduler, handlers, ingress) uses it."""

    name: str  # as registry.py knows it: "process", "docker"
    capabilities: Capabilities

    def info(self) -> RuntimeInfo:
        """How it runs jobs, in words (for `config show` and job status); cheap."""

    def capacity(self) -> Capacity:
        """What it can give jobs now (may be cached; a cluster's refreshes itself)."""

    def set_progress_listener(self, listener: ProgressListener | None) -> None:
        """Who hears what a start is doing (only called on a runtime that reports progress;
        a runtime that does not keeps no listener)."""

    async def close(self) -> None:
        """Stop following jobs (they go on) and release connections; the server is ending."""

    async def start(self, spec: JobSpec) -> StartInfo:
        """Start the job; returns once its process runs (or raise RuntimeError_)."""

    async def stop(self, job_id: str, *, grace: float) -> None:
        """Ask the job to stop: SIGTERM, then SIGKILL after ``grace`` seconds. Returns at once."""

    async def signal(self, job_id: str, signum: int, *, group: bool = True) -> None:
        """Send a signal to the job's processes; with ``group`` false to its main process
        only, where the runtime can tell them apart (its children, e.g. data loader workers,
        are spared a signal they may not handle)."""

    async def suspend(self, job_id: str) -> None:
        """Freeze the job's processes (they keep their memory, use no CPU)."""

    async def resume(self, job_id: str) -> None:
        """Let frozen processes go on."""

    async def inspect(self, job_id: str) -> JobState:
        """What the runtime knows now (used to reconcile after a restart, and by handlers
        waiting for a job to run or end); quick, but it may ask an engine or a cluster."""

    async def wait(self, job_id: str) -> ExitInfo:
        """Return when the job has exited and its output is fully written."""

    def logs(
        self,
        job_id: str,
        *,
        since: datetime | None = None,
        timestamps: bool = False,
        follow: bool = True,
    ) -> AsyncIterator[bytes]:
        """The job's output from the start (or ``since``); with ``follow`` it goes on while the
        job runs and ends once the job has exited and everything was read."""

    async def log_size(self, job_id: str) -> int:
        """How many bytes of output the job has produced so far (0 if none or unknown)."""

    async def cleanup(self, job_id: str) -> None:
        """Release what the finished job held (cgroups...); its output stays readable."""

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        """Connect to the running job's own stdio.  Several sessions may be attached at once;
        each gets all output from the moment it attached (with ``logs``, the output so far
        first).  stdin is only there for jobs started with ``tty`` (raise RuntimeError_
        otherwise when ``stdin`` is asked).  Raise RuntimeError_ if the job is not running."""

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
        """Run ``argv`` beside the running job: same environment, working dir, limits and
        namespaces; with ``tty``, on a terminal of ``size`` (rows, columns; default
        TTY_SIZE) from its first instruction.  Raise RuntimeError_ if the job is not
        running or argv cannot start."""

    async def resize(self, job_id: str, height: int, width: int) -> None:
        """Resize the TTY of a job started with ``tty``."""

    async def connect_port(self, job_id: str, port: int) -> tuple[PortReader, PortWriter]:
        """Open a TCP connection to ``port`` where the job listens.  Raise RuntimeError_
        (PortNotListening) when nothing listens there."""

    async def stats(self, job_id: str) -> Telemetry | None:
        """What the job uses now; None when it is not running."""
