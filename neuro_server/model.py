"""The server's job model: what a user asked for (``JobRequest``) and a job's record.

Validation (validation/) builds a ``JobRequest`` from a request body; the store keeps it in
one versioned encoding (encoding.py) and returns it in every ``JobRecord``; the scheduler,
the handlers and the JSON of protocol.md (serialize.py) read its typed fields.  Nothing else
reads a job's request by string key.

    JobRequest
      container: Container         image, argv, env, working dir, tty, http, resources
        resources: Resources       cpu, memory, shm, NVIDIA GPUs
        http: HttpPort | None
        volumes: StorageVolume...  storage:PATH at a path in the job
        disk_volumes: DiskVolume...
        secret_env: {VAR: SecretRef}, secret_files: SecretFile...
      restart_policy: RestartPolicy, priority: Priority
      life_span_signal: LifeSpanSignal | None
      preset, scheduling flags, privileged, pass_config, cluster/org/project

A job's name, tags and life span are kept beside its request (the store's columns: a name is
looked up, tags are searched, a life span is extended), in ``NewJob`` and ``JobRecord``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import UTC, datetime


class JobStatus(enum.StrEnum):
    """A job's status (a str: it compares with, and is written as, its value)."""

    PENDING = "pending"
    SUSPENDED = "suspended"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED


ACTIVE = (JobStatus.PENDING, JobStatus.SUSPENDED, JobStatus.RUNNING)
# the reason of a running job between two runs (its restart policy): as on the platform, a
# job restarts in place, its status stays running and it keeps its resources
RESTARTING = "Restarting"
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class RestartPolicy(enum.StrEnum):
    """What happens when the job's command exits (never after a kill or its life span)."""

    NEVER = "never"
    ON_FAILURE = "on-failure"  # a non-zero exit or OOM
    ALWAYS = "always"


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


@dataclasses.dataclass(frozen=True)
class Resources:
    cpu: float  # cores
    memory: int  # bytes
    shm: bool = False
    nvidia_gpu: int = 0
    nvidia_gpu_model: str | None = None


@dataclasses.dataclass(frozen=True)
class HttpPort:
    """The job's HTTP port, served by the ingress at the job's host name."""

    port: int
    requires_auth: bool = False
    health_check_path: str = "/"


@dataclasses.dataclass(frozen=True)
class StorageVolume:
    """``storage:PATH`` of the owner's tree at ``dst`` in the job."""

    uri: str
    dst: str
    read_only: bool = False
    path: str | None = None  # in the owner's tree, cleaned: set when the job is accepted


@dataclasses.dataclass(frozen=True)
class DiskVolume:
    """One of the owner's disks (``disk:NAME_OR_ID``) at ``dst`` in the job."""

    ref: str  # the disk's name or id, as the URI gave it
    uri: str
    dst: str
    read_only: bool = False
    id: str | None = None  # the disk's id: set when the job is accepted


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """One of the owner's secrets: its key, and the URI the user named it by."""

    key: str
    uri: str


@dataclasses.dataclass(frozen=True)
class SecretFile:
    """A secret's value as a read-only file at ``path`` in the job."""

    path: str
    secret: SecretRef


@dataclasses.dataclass(frozen=True)
class LifeSpanSignal:
    """Our extension: the job's own process gets ``signum`` once, ``seconds_before`` seconds
    of run time before its life span ends (as Slurm's --signal), to checkpoint."""

    signal: str  # SIGUSR1; the number itself for a real-time signal
    signum: int
    seconds_before: float


@dataclasses.dataclass(frozen=True)
class Container:
    image: str
    resources: Resources
    argv: tuple[str, ...] = ()  # entrypoint + command, split (empty: the image's own)
    entrypoint: str | None = None  # as the user gave them
    command: str | None = None
    working_dir: str | None = None
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # VAR -> the secret whose value it gets (looked up when the job starts)
    secret_env: Mapping[str, SecretRef] = dataclasses.field(default_factory=dict)
    tty: bool = False
    http: HttpPort | None = None
    volumes: tuple[StorageVolume, ...] = ()
    disk_volumes: tuple[DiskVolume, ...] = ()
    secret_files: tuple[SecretFile, ...] = ()

    @property
    def has_mounts(self) -> bool:
        return bool(self.volumes or self.disk_volumes or self.secret_files)

    def secret_keys(self) -> set[str]:
        """The keys of every secret the job uses."""
        return {
            *(s.key for s in self.secret_env.values()),
            *(f.secret.key for f in self.secret_files),
        }


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """What the user asked for, validated (validation/), as the store keeps it."""

    container: Container
    cluster_name: str
    org_name: str
    project_name: str
    preset_name: str | None = None
    description: str | None = None
    restart_policy: RestartPolicy = RestartPolicy.NEVER
    priority: Priority = Priority.NORMAL
    life_span_signal: LifeSpanSignal | None = None
    privileged: bool = False
    pass_config: bool = False  # the job gets NEURO_PASSED_CONFIG: it acts as its owner
    # scheduling: presets with scheduler_enabled are preemptible (suspended for others)
    scheduler_enabled: bool = False
    preemptible_node: bool = False
    schedule_timeout: float | None = None  # seconds it may pend before it fails
    wait_for_jobs_quota: bool = False  # over max_running_jobs: queue instead of refusing
    energy_schedule_name: str | None = None

    @property
    def resources(self) -> Resources:
        return self.container.resources


@dataclasses.dataclass(frozen=True)
class NewJob:
    """A validated request to create a job."""

    name: str | None
    tags: tuple[str, ...]
    life_span: float | None  # seconds of run time; None: no limit
    spec: JobRequest


def now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class Transition:
    status: JobStatus
    reason: str
    description: str
    exit_code: int | None
    time: datetime


@dataclasses.dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    name: str | None
    status: JobStatus
    reason: str
    description: str
    exit_code: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    restarts: int
    life_span: float | None  # seconds of run time; None = no limit (extended by a bump)
    kill_reason: str | None
    limits: str
    spec: JobRequest  # the validated request
    tags: tuple[str, ...]
    devices: tuple[int, ...] = ()  # the GPUs assigned to it (NVML indices)
    address: str = ""  # where other jobs reach it while it runs
    hostname: str = ""  # ... and by which name (NAME--OWNER), where the runtime resolves names
    run_seconds: float = 0.0  # run time of the segments that ended (not pending, suspended)
    running_since: datetime | None = None  # start of the current segment
    warned_life_span: float | None = None  # the life span its warning signal was sent for

    def life_span_warning_due(self, at: datetime | None = None) -> float | None:
        """Seconds until its life-span signal is due (<= 0: now); None when it has none, or
        was sent for this life span (a bump re-arms it)."""
        warn = self.spec.life_span_signal
        if warn is None or self.life_span is None or self.warned_life_span == self.life_span:
            return None
        return self.life_span - warn.seconds_before - self.run_time(at)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def restarting(self) -> bool:
        """It waits out a restart's backoff: running (with its resources), with no run."""
        return self.status == JobStatus.RUNNING and self.reason == RESTARTING

    def run_time(self, at: datetime | None = None) -> float:
        """Seconds it has run: not while pending or suspended (the life span counts this, as
        the platform does).  A restart's backoff counts: the job stays running, holding its
        resources, as a restarted pod does."""
        if self.running_since is None:
            return self.run_seconds
        end = self.finished_at or at or now()
        return self.run_seconds + max(0.0, (end - self.running_since).total_seconds())
