"""A job request as a whole: ``parse_start`` takes the flat body of ``POST /jobs?from_preset``,
``parse_run`` the nested, deprecated body of ``POST /jobs`` (protocol.md 2.2 and 2.3)."""

from __future__ import annotations

import dataclasses
from typing import Any

from neuro_sdk._wire import UNCATCHABLE, signal_number
from neuro_sdk._wire import signal_name as _signal_name

from ..config import Preset, ServerConfig
from ..model import JobRequest, LifeSpanSignal, NewJob, Priority, Resources, RestartPolicy
from ..runtime.base import Capacity
from .container import container
from .fields import (
    MAX_LIFE_SPAN,
    MAX_TAGS,
    NAME_RE,
    THIRTY_DAYS,
    ValidationError,
    boolean,
    finite,
    fmt_bytes,
    integer,
    number,
    require_object,
    string,
)


@dataclasses.dataclass(frozen=True)
class _JobFields:
    """What both bodies say of the job beside its container and resources."""

    name: str | None
    tags: tuple[str, ...]
    life_span: float | None
    request: dict[str, Any]  # JobRequest's own fields (keyword arguments)


def check_job_name(name: str) -> None:
    """ValidationError unless ``name`` can be a job's name (a list filter too: the platform
    answers 400 to one that cannot, and only a valid, unknown name is "not found")."""
    if not 3 <= len(name) <= 40 or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"invalid job name {name!r}: use 3-40 characters, lower-case letters, digits and "
            "single dashes, starting with a letter (e.g. train-1)"
        )


def _job_fields(body: dict[str, Any], config: ServerConfig) -> _JobFields:
    name = string(body, "name", max_len=40)
    if name is not None:
        check_job_name(name)
    tags = body.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValidationError("'tags' must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"too many tags: at most {MAX_TAGS}")
    for t in tags:
        if not 1 <= len(t) <= 256 or any(c.isspace() for c in t):
            raise ValidationError(f"invalid tag {t!r}: 1-256 characters without spaces")
    cluster = string(body, "cluster_name", max_len=256)
    if cluster is not None and cluster != config.cluster_name:
        raise ValidationError(
            f"unknown cluster {cluster!r}: this server's cluster is {config.cluster_name!r}"
        )
    life_span = _life_span(body)
    schedule_timeout = number(body, "schedule_timeout")
    if schedule_timeout is not None and not 1 <= schedule_timeout < THIRTY_DAYS:
        raise ValidationError("'schedule_timeout' must be at least 1 second and under 30 days")
    restart = string(body, "restart_policy", max_len=32) or "never"
    if restart not in tuple(RestartPolicy):
        raise ValidationError(f"invalid restart policy {restart!r}: never, on-failure or always")
    priority = string(body, "priority", max_len=16) or "normal"
    if priority not in tuple(Priority):
        raise ValidationError(f"invalid priority {priority!r}: low, normal or high")
    privileged = boolean(body, "privileged")
    if privileged and not config.allow_privileged:
        raise ValidationError(
            "privileged jobs are not allowed on this server (allow_privileged = true in its server.toml allows them)"
        )
    description = string(body, "description", max_len=4096)
    warn = _life_span_signal(body.get("life_span_signal"), life_span)
    return _JobFields(
        name,
        tuple(sorted(set(tags))),
        life_span,
        {
            "description": description,
            "schedule_timeout": schedule_timeout,
            "restart_policy": RestartPolicy(restart),
            "priority": Priority(priority),
            "privileged": privileged,
            "life_span_signal": warn,
            "pass_config": boolean(body, "pass_config"),
            "wait_for_jobs_quota": boolean(body, "wait_for_jobs_quota"),
            "energy_schedule_name": string(body, "energy_schedule_name", max_len=256),
            "cluster_name": config.cluster_name,
            "org_name": string(body, "org_name", max_len=256) or config.org_name,
            "project_name": string(body, "project_name", max_len=256) or config.project_name,
        },
    )


def _life_span(body: dict[str, Any]) -> float | None:
    minutes = integer(body, "max_run_time_minutes")
    seconds = number(body, "max_run_time_seconds")
    life_span: float | None = None
    if minutes is not None:
        if minutes < 1:
            raise ValidationError("'max_run_time_minutes' must be at least 1")
        if minutes > MAX_LIFE_SPAN / 60:
            raise ValidationError(
                f"'max_run_time_minutes' must be at most {MAX_LIFE_SPAN / 60:.0f} (100 years)"
            )
        life_span = minutes * 60.0
    if seconds is not None:
        if seconds <= 0:
            raise ValidationError("'max_run_time_seconds' must be positive")
        if seconds > MAX_LIFE_SPAN:
            raise ValidationError(
                f"'max_run_time_seconds' must be at most {MAX_LIFE_SPAN:.0f} (100 years)"
            )
        life_span = seconds
    return life_span


def _life_span_signal(value: Any, life_span: float | None) -> LifeSpanSignal | None:
    """Our extension ``{"signal": "USR1", "seconds_before": 300}``: the job gets the signal
    that long before its life span ends (as Slurm's --signal), to checkpoint."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("'life_span_signal' must be an object: {signal, seconds_before}")
    raw = value.get("signal")
    ok = isinstance(raw, (str, int)) and not isinstance(raw, bool)
    num = signal_number(str(raw)) if ok else None
    if num is None:
        raise ValidationError(
            f"invalid life_span_signal signal {raw!r}: a name like USR1, or a number"
        )
    if num in UNCATCHABLE:
        raise ValidationError(
            f"life_span_signal cannot be {_signal_name(num)}: a job cannot catch it"
        )
    before = value.get("seconds_before", 60)
    if (seconds := finite(before)) is None or seconds <= 0:
        raise ValidationError(
            f"'life_span_signal.seconds_before' must be a positive number, got {before!r}"
        )
    if life_span is None:
        raise ValidationError("life_span_signal needs a life span (max_run_time_minutes)")
    if before >= life_span:
        raise ValidationError(
            f"life_span_signal comes {before:g} s before the end of a "
            f"{life_span:g} s life span: it must come within it"
        )
    return LifeSpanSignal(signal=_signal_name(num), signum=num, seconds_before=float(before))


def _preset_resources(p: Preset, shm: bool) -> Resources:
    return Resources(
        cpu=p.cpu,
        memory=p.memory,
        shm=shm,
        nvidia_gpu=p.nvidia_gpu,
        nvidia_gpu_model=p.nvidia_gpu_model if p.nvidia_gpu else None,
    )


def parse_start(
    body: Any, config: ServerConfig, *, capacity: Capacity, needs_command: bool = True
) -> NewJob:
    """``POST /jobs?from_preset``: flat body; resources come from the preset.  ``capacity``:
    what the runtime can give jobs at all (a preset beyond it is refused at once)."""
    body = require_object(body)
    preset_name = string(body, "preset_name", max_len=256) or config.presets[0].name
    preset = config.preset(preset_name)
    if preset is None:
        names = ", ".join(p.name for p in config.presets)
        raise ValidationError(f"unknown preset {preset_name!r}; available presets: {names}")
    _preset_possible(preset, config, capacity)
    resources = body.get("resources") or {}
    if not isinstance(resources, dict):
        raise ValidationError("'resources' must be an object")
    extra = set(resources) - {"shm"}
    if extra:
        raise ValidationError(
            f"with a preset only 'shm' may be given in 'resources', not {', '.join(sorted(extra))}"
        )
    shm = boolean(resources, "shm", "resources.")
    job = _job_fields(body, config)
    spec = JobRequest(
        container=container(
            body,
            _preset_resources(preset, shm),
            needs_command=needs_command,
            cluster=config.cluster_name,
        ),
        **job.request,
        preset_name=preset.name,
        scheduler_enabled=preset.scheduler_enabled,
        preemptible_node=preset.preemptible_node,
    )
    if body.get("energy_schedule_name") and not preset.scheduler_enabled:
        raise ValidationError("'energy_schedule_name' needs a preset with scheduler_enabled")
    return NewJob(job.name, job.tags, job.life_span, spec)


def _preset_possible(preset: Preset, config: ServerConfig, capacity: Capacity) -> None:
    """Refuse at once a preset that asks more than this server has at all (as Slurm's
    "Requested node configuration is not available"): its job would pend forever."""
    c = capacity
    short = [
        what
        for what, asked, total in (
            (f"{preset.cpu:g} CPU", preset.cpu, c.cpu),
            (f"{fmt_bytes(preset.memory)} of memory", preset.memory, c.memory),
            (f"{preset.nvidia_gpu} NVIDIA GPU", preset.nvidia_gpu, c.nvidia_gpu),
        )
        if asked > total
    ]
    if short:
        fits = [
            p.name
            for p in config.presets
            if p.cpu <= c.cpu and p.memory <= c.memory and p.nvidia_gpu <= c.nvidia_gpu
        ]
        has = f"{c.cpu:g} CPU, {fmt_bytes(c.memory)} of memory and " + (
            f"{c.nvidia_gpu} NVIDIA GPU" if c.nvidia_gpu else "no GPU"
        )
        raise ValidationError(
            f"preset {preset.name} needs {' and '.join(short)}, but this server has {has} in "
            "all: no job of it can ever run here"
            + (f" (presets that can: {', '.join(fits)})" if fits else "")
        )


def _within_machine(cpu: float, memory: int, gpu: int, c: Capacity) -> None:
    """Refuse resources no job could ever get here (the scheduler's capacity is the
    runtime's CPU, memory and GPUs): such a job would wait as pending forever."""
    over = [
        what
        for what, asked, total in (
            (f"{cpu:g} CPU", cpu, c.cpu),
            (f"{fmt_bytes(memory)} of memory", memory, c.memory),
            (f"{gpu if gpu < 10**6 else 'millions of'} NVIDIA GPU", gpu, c.nvidia_gpu),
        )
        if asked > total
    ]
    if over:
        raise ValidationError(
            f"the job asks for {' and '.join(over)}: more than this server can ever give a "
            f"job, which is at most {c.cpu:g} CPU, {fmt_bytes(c.memory)} of memory "
            f"and {c.nvidia_gpu} NVIDIA GPU"
        )


def parse_run(
    body: Any, config: ServerConfig, *, capacity: Capacity, needs_command: bool = True
) -> NewJob:
    """Deprecated ``POST /jobs`` with a nested ``container`` and explicit resources."""
    body = require_object(body)
    raw = body.get("container")
    if not isinstance(raw, dict):
        raise ValidationError("'container' is required and must be an object")
    res = raw.get("resources")
    if not isinstance(res, dict):
        raise ValidationError("'container.resources' is required and must be an object")
    p = "container.resources."
    cpu = number(res, "cpu", p)
    if cpu is None or cpu < 0.1:
        raise ValidationError("'container.resources.cpu' must be a number >= 0.1")
    memory = integer(res, "memory", p)
    if memory is None:
        memory_mb = integer(res, "memory_mb", p)
        memory = None if memory_mb is None else memory_mb * 1024 * 1024
    if memory is None or memory < 16 * 1024 * 1024:
        raise ValidationError("'container.resources.memory' must be at least 16 MiB (in bytes)")
    gpu = integer(res, "nvidia_gpu", p) or integer(res, "gpu", p) or 0
    if gpu < 0:
        raise ValidationError("'container.resources.nvidia_gpu' must not be negative")
    _within_machine(cpu, memory, gpu, capacity)
    shm = boolean(res, "shm", p)
    model = None
    if gpu:
        model = string(res, "nvidia_gpu_model", prefix=p) or string(res, "gpu_model", prefix=p)
    resources = Resources(
        cpu=cpu, memory=memory, shm=shm, nvidia_gpu=gpu, nvidia_gpu_model=model or None
    )
    job = _job_fields(body, config)
    spec = JobRequest(
        container=container(
            raw, resources, "container.", needs_command=needs_command, cluster=config.cluster_name
        ),
        **job.request,
        preset_name=string(body, "preset_name", max_len=256),
        scheduler_enabled=boolean(body, "scheduler_enabled"),
        preemptible_node=False,
    )
    return NewJob(job.name, job.tags, job.life_span, spec)
