"""Read-only data models of the jobs API: frozen dataclasses and str-Enums."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from yarl import URL

from ._images import RemoteImage

_MIB = 2**20
_NO_URL = URL()
_ZERO = Decimal(0)


class JobStatus(str, enum.Enum):
    """State of a job; unknown values from the server parse as :attr:`UNKNOWN`.

    Example::

        JobStatus("running").is_running   # True
        JobStatus("weird") is JobStatus.UNKNOWN
    """

    PENDING = "pending"
    SUSPENDED = "suspended"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def _missing_(cls, value: object) -> JobStatus:
        return cls.UNKNOWN

    @classmethod
    def items(cls) -> set[JobStatus]:
        """All statuses except :attr:`UNKNOWN`."""
        return {s for s in cls if s is not cls.UNKNOWN}

    @classmethod
    def active_items(cls) -> set[JobStatus]:
        """Statuses that are not final: pending, suspended, running."""
        return {s for s in cls.items() if not s.is_finished}

    @classmethod
    def finished_items(cls) -> set[JobStatus]:
        """Final statuses: succeeded, cancelled, failed."""
        return {s for s in cls.items() if s.is_finished}

    @property
    def is_pending(self) -> bool:
        return self in (JobStatus.PENDING, JobStatus.SUSPENDED)

    @property
    def is_running(self) -> bool:
        return self is JobStatus.RUNNING

    @property
    def is_finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

    def __str__(self) -> str:
        return self.value


class JobRestartPolicy(str, enum.Enum):
    """What happens to a job whose container exits."""

    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"

    def __str__(self) -> str:
        return self.value


class JobPriority(str, enum.Enum):
    """Scheduling priority of a job."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Resources:
    """Resources requested by a container.

    Memory may be given either as ``memory_mb`` (the seed's name) or ``memory`` (bytes); the
    other one is derived.  ``gpu``/``gpu_model`` (seed names) mirror
    ``nvidia_gpu``/``nvidia_gpu_model``.

    Example::

        Resources(memory_mb=1024, cpu=0.5) == Resources(memory=2**30, cpu=0.5)
    """

    memory_mb: int = 0
    cpu: float = 0.0
    gpu: int | None = None
    gpu_model: str | None = None
    shm: bool = False
    tpu_type: str | None = None
    tpu_software_version: str | None = None
    memory: int = 0
    nvidia_gpu: int | None = None
    amd_gpu: int | None = None
    intel_gpu: int | None = None
    nvidia_gpu_model: str | None = None
    amd_gpu_model: str | None = None
    intel_gpu_model: str | None = None

    def __post_init__(self) -> None:
        if self.memory and self.memory_mb:
            if self.memory // _MIB != self.memory_mb:
                raise ValueError(
                    f"memory={self.memory} bytes contradicts memory_mb={self.memory_mb}"
                )
        elif self.memory_mb:
            object.__setattr__(self, "memory", self.memory_mb * _MIB)
        elif self.memory:
            object.__setattr__(self, "memory_mb", self.memory // _MIB)
        for alias, name in (("gpu", "nvidia_gpu"), ("gpu_model", "nvidia_gpu_model")):
            a, b = getattr(self, alias), getattr(self, name)
            if a is not None and b is not None and a != b:
                raise ValueError(f"{alias}={a!r} contradicts {name}={b!r}")
            value = a if a is not None else b
            object.__setattr__(self, alias, value)
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class HTTPPort:
    """HTTP server exposed by a job."""

    port: int
    requires_auth: bool = True


@dataclass(frozen=True)
class Volume:
    """Storage folder mounted into a container."""

    storage_uri: URL
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class SecretFile:
    """Secret mounted as a file into a container."""

    secret_uri: URL
    container_path: str


@dataclass(frozen=True)
class DiskVolume:
    """Disk mounted into a container."""

    disk_uri: URL
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class Container:
    """Image and environment of a job."""

    image: RemoteImage
    resources: Resources
    entrypoint: str | None = None
    command: str | None = None
    working_dir: str | None = None
    http: HTTPPort | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: Sequence[Volume] = ()
    secret_env: Mapping[str, URL] = field(default_factory=dict)
    secret_files: Sequence[SecretFile] = ()
    disk_volumes: Sequence[DiskVolume] = ()
    tty: bool = False


@dataclass(frozen=True)
class JobStatusItem:
    """One status transition of a job."""

    status: JobStatus
    transition_time: datetime
    reason: str = ""
    description: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class JobStatusHistory:
    """Status details of a job: times, exit code, transitions."""

    status: JobStatus
    reason: str
    description: str
    restarts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    transitions: Sequence[JobStatusItem] = ()
    run_time_seconds: float | None = None

    @property
    def changed_at(self) -> datetime | None:
        """When the job entered its current status (last transition, else best guess)."""
        if self.transitions:
            return self.transitions[-1].transition_time
        if self.status.is_finished:
            return self.finished_at
        if self.status.is_running:
            return self.started_at
        return self.created_at


@dataclass(frozen=True)
class LifeSpanSignal:
    """Our extension (as Slurm's ``--signal``): the job gets ``signal`` (a name like
    ``"SIGUSR1"``) once, ``seconds_before`` seconds of run time before its life span ends, to
    checkpoint; :meth:`Jobs.bump_life_span` re-arms it.  ``sent`` in a job's description."""

    signal: str
    seconds_before: float = 60.0
    sent: bool = False


@dataclass(frozen=True)
class JobRuntime:
    """How our server runs the job (our extension; ``None`` on the official platform).

    ``image_used`` is ``False`` when the job runs on the host without its image.
    """

    name: str
    image_used: bool
    limits: str
    note: str = ""


@dataclass(frozen=True)
class JobDescription:
    """A job as reported by the server."""

    id: str
    owner: str
    cluster_name: str
    status: JobStatus
    history: JobStatusHistory
    container: Container
    scheduler_enabled: bool = False
    pass_config: bool = False
    uri: URL = _NO_URL
    total_price_credits: Decimal = _ZERO
    price_credits_per_hour: Decimal = _ZERO
    project_name: str = ""
    org_name: str | None = None
    name: str | None = None
    tags: Sequence[str] = ()
    description: str | None = None
    preset_name: str | None = None
    http_url: URL = _NO_URL
    http_url_named: URL = _NO_URL
    ssh_server: URL = _NO_URL
    internal_hostname: str | None = None
    internal_hostname_named: str | None = None
    restart_policy: JobRestartPolicy = JobRestartPolicy.NEVER
    life_span: float | None = None
    schedule_timeout: float | None = None
    preemptible_node: bool = False
    privileged: bool = False
    priority: JobPriority = JobPriority.NORMAL
    energy_schedule_name: str | None = None
    namespace: str | None = None
    runtime: JobRuntime | None = None
    life_span_signal: LifeSpanSignal | None = None


@dataclass(frozen=True)
class JobTelemetry:
    """One telemetry sample of a running job.

    ``timestamp`` is epoch seconds, ``cpu`` is cores in use, ``memory`` and ``gpu_memory`` are
    MiB (the seed's "megabytes"); ``memory_bytes``/``gpu_memory_bytes`` are exact bytes (derived
    from the MiB value when an old server sends only that).
    """

    cpu: float
    memory: float
    timestamp: float
    gpu_duty_cycle: int | None = None
    gpu_memory: float | None = None
    memory_bytes: int | None = None
    gpu_memory_bytes: int | None = None


@dataclass(frozen=True)
class Message:
    """A chunk of a job's stdout (``fileno=1``) or stderr (``fileno=2``)."""

    fileno: int
    data: bytes


@dataclass(frozen=True)
class ExecInspect:
    """State of an exec session; ``exit_code`` is ``None`` while the command runs."""

    id: str
    job_id: str
    running: bool
    exit_code: int | None
    tty: bool
    entrypoint: str
    command: str
