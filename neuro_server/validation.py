"""Validation of job requests at the edge: every client mistake becomes a clear 400.

``parse_start`` takes the flat body of ``POST /jobs?from_preset``; ``parse_run`` the nested,
deprecated body of ``POST /jobs`` (protocol.md 2.2 and 2.3).  Both return a ``NewJob`` whose
``spec`` is what the store keeps and the runtime runs.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import re
import shlex
import signal as signal_mod
from collections.abc import Callable
from typing import Any

from .config import Preset, ServerConfig

# \Z, not $: "$" also matches before a final newline ("train-1\n" would pass)
NAME_RE = re.compile(r"^[a-z](?:-?[a-z0-9])*\Z")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_TAGS = 16
MAX_STR = 64 * 1024
THIRTY_DAYS = 30 * 24 * 3600.0
MAX_LIFE_SPAN = 100 * 365 * 24 * 3600.0  # a century: more is a mistake (or infinity)


class ValidationError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class NewJob:
    name: str | None
    tags: tuple[str, ...]
    life_span: float | None
    spec: dict[str, Any]


def _str(body: dict[str, Any], key: str, *, required: bool = False, max_len: int = MAX_STR,
         prefix: str = "") -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise ValidationError(f"'{prefix}{key}' is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"'{prefix}{key}' must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(f"'{prefix}{key}' is too long (more than {max_len} characters)")
    return value


def _bool(body: dict[str, Any], key: str, prefix: str = "") -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(f"'{prefix}{key}' must be true or false")
    return value


def finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (a bool, NaN, infinity, an
    integer too large for a float: math.isfinite(10**400) itself raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _number(body: dict[str, Any], key: str, prefix: str = "") -> float | None:
    value = body.get(key)
    if value is None:
        return None
    number = finite(value)
    if number is None:
        raise ValidationError(f"'{prefix}{key}' must be a number")
    return number


def _int(body: dict[str, Any], key: str, prefix: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"'{prefix}{key}' must be an integer")
    return value


def split_command(value: str | None, what: str) -> list[str]:
    if not value:
        return []
    try:
        return shlex.split(value)
    except ValueError as e:
        raise ValidationError(f"'{what}' cannot be parsed: {e}") from None


def _env(body: dict[str, Any], prefix: str = "") -> dict[str, str]:
    env = body.get("env")
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise ValidationError(f"'{prefix}env' must be an object of strings")
    for k, v in env.items():
        if not ENV_NAME_RE.fullmatch(k):
            raise ValidationError(f"invalid environment variable name: {k!r}")
        if not isinstance(v, str):
            raise ValidationError(f"environment variable {k!r} must be a string")
        if "\0" in v:
            raise ValidationError(f"environment variable {k!r} has a NUL character: a "
                                  "process environment cannot hold one")
    return dict(env)


SECRET_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,252}")


def secret_key(uri: Any, cluster: str, where: str) -> str:
    """The key of a secret URI: ``secret:KEY`` or ``secret://CLUSTER/[[ORG/]PROJECT/]KEY``
    (PROJECT may be the owner's user name, as on the platform; whose it is, is for
    ``check_secret_owners`` to say)."""
    if not isinstance(uri, str) or not uri.startswith("secret:"):
        raise ValidationError(f"{where}: not a secret URI (secret:KEY): {uri!r}")
    rest = uri[len("secret:"):]
    if rest.startswith("//"):
        parts = rest[2:].split("/")
        if len(parts) < 2 or parts[0] != cluster:
            raise ValidationError(f"{where}: {uri!r} is not a secret of cluster {cluster!r}")
        if len(parts) > 4 or not all(parts[1:-1]):
            raise ValidationError(f"{where}: {uri!r} is not a secret URI "
                                  f"(secret://{cluster}/[ORG/]PROJECT/KEY)")
        key = parts[-1]
    else:
        key = rest
    if not SECRET_KEY_RE.fullmatch(key):
        raise ValidationError(f"{where}: invalid secret key {key!r}")
    return key


def check_secret_owners(spec: dict[str, Any], user: str, config: ServerConfig,
                        is_user: Callable[[str], bool]) -> None:
    """Refuse a job's secret URI that names someone else: a user's secrets are their own, so
    ``secret://CLUSTER/[ORG/]OWNER/KEY`` must name the caller, this server's project (every
    user's secrets live in it, each user seeing only theirs) or the job's own project, and
    not another user; else the job would silently get the caller's KEY instead of OWNER's."""
    job_project = spec.get("project_name") or config.project_name
    orgs = {config.org_name, spec.get("org_name") or config.org_name, "NO_ORG"}

    def mine(owner: str) -> bool:
        if owner in (user, config.project_name):
            return True
        return owner == job_project and not is_user(owner)  # (bob's job "in project alice")

    for uri in [*spec["secret_env_uris"].values(), *(f["uri"] for f in spec["secret_files"])]:
        # secret://CLUSTER/[ORG/]OWNER/KEY -> [ORG, OWNER]; secret:KEY, secret://CLUSTER/KEY -> []
        parts = uri.split("/")[3:-1] if uri.startswith("secret://") else []
        if not parts:
            continue
        if not mine(parts[-1]):
            whose = parts[-1]
        elif len(parts) == 2 and parts[0] not in orgs:
            whose = f"org {parts[0]}"
        else:
            continue
        raise ValidationError(f"{uri} belongs to {whose}: you can use only your own secrets "
                              f"(secret:KEY, or secret://{config.cluster_name}/{user}/KEY)")


def _container_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ValidationError(f"{where}: must be an absolute path")
    if any(part == ".." for part in value.split("/")) or value.rstrip("/") == "":
        raise ValidationError(f"{where}: {value!r} is not a file path (no '..', not '/')")
    return value


def _container_fields(body: dict[str, Any], prefix: str = "", *,
                      needs_command: bool = True, cluster: str = "") -> dict[str, Any]:
    image = _str(body, "image", required=True, max_len=1024, prefix=prefix)
    assert image is not None
    if not image.strip() or any(c.isspace() or c == "\0" for c in image):
        raise ValidationError(f"invalid image name: {image!r}")
    entrypoint = _str(body, "entrypoint", prefix=prefix)
    command = _str(body, "command", prefix=prefix)
    argv = split_command(entrypoint, "entrypoint") + split_command(command, "command")
    if any("\0" in arg for arg in argv):
        raise ValidationError("the command has a NUL character: no program can be given one")
    if not argv and needs_command:
        raise ValidationError(
            "no command to run: this server's process runtime does not use the image, "
            "so give a command (neuro run IMAGE -- CMD...)"
        )
    working_dir = _str(body, "working_dir", max_len=4096, prefix=prefix)
    if working_dir is not None and (not working_dir.startswith("/") or "\0" in working_dir):
        raise ValidationError(f"'working_dir' must be an absolute path, got {working_dir!r}")
    http = body.get("http")
    if http is not None:
        if not isinstance(http, dict):
            raise ValidationError("'http' must be an object")
        port = _int(http, "port", prefix="http.")
        if port is None or not 1 <= port <= 65535:
            raise ValidationError("'http.port' must be an integer between 1 and 65535")
        http = {"port": port, "requires_auth": _bool(http, "requires_auth", "http."),
                "health_check_path": _str(http, "health_check_path", prefix="http.") or "/"}
    raw_disks = body.get("disk_volumes") or []
    if not isinstance(raw_disks, list):
        raise ValidationError(f"'{prefix}disk_volumes' must be a list")
    disk_volumes: list[dict[str, Any]] = []
    for i, v in enumerate(raw_disks):
        if not isinstance(v, dict):
            raise ValidationError(f"'{prefix}disk_volumes[{i}]' must be an object")
        uri = v.get("src_disk_uri")
        if not isinstance(uri, str) or not uri.startswith("disk:"):
            raise ValidationError(f"disk_volumes[{i}]: not a disk URI (disk:NAME): {uri!r}")
        rest = uri[len("disk:"):]
        if rest.startswith("//"):
            parts = rest[2:].split("/")
            if parts[0] != cluster:
                raise ValidationError(f"disk_volumes[{i}]: {uri!r} is not on cluster {cluster!r}")
            rest = parts[-1]
        if not rest:
            raise ValidationError(f"disk_volumes[{i}]: {uri!r} names no disk")
        dst = _container_path(v.get("dst_path"), f"disk_volumes[{i}].dst_path")
        ro = v.get("read_only", False)
        if not isinstance(ro, bool):
            raise ValidationError(f"disk_volumes[{i}].read_only must be a boolean")
        disk_volumes.append({"ref": rest, "uri": uri, "dst": dst, "read_only": ro})
    raw_volumes = body.get("volumes") or []
    if not isinstance(raw_volumes, list):
        raise ValidationError(f"'{prefix}volumes' must be a list")
    storage_volumes: list[dict[str, Any]] = []
    for i, v in enumerate(raw_volumes):
        if not isinstance(v, dict):
            raise ValidationError(f"'{prefix}volumes[{i}]' must be an object")
        uri = v.get("src_storage_uri")
        if not isinstance(uri, str) or not uri.startswith("storage:"):
            raise ValidationError(f"volumes[{i}]: not a storage URI (storage:PATH): {uri!r}")
        dst = _container_path(v.get("dst_path"), f"volumes[{i}].dst_path")
        ro = v.get("read_only", False)
        if not isinstance(ro, bool):
            raise ValidationError(f"volumes[{i}].read_only must be a boolean")
        storage_volumes.append({"uri": uri, "dst": dst, "read_only": ro})
    secret_env_uris = body.get("secret_env") or {}
    if not isinstance(secret_env_uris, dict):
        raise ValidationError(f"'{prefix}secret_env' must be an object")
    secret_env: dict[str, str] = {}
    for var, uri in secret_env_uris.items():
        if not ENV_NAME_RE.fullmatch(var):
            raise ValidationError(f"invalid environment variable name: {var!r}")
        secret_env[var] = secret_key(uri, cluster, f"secret_env {var}")
    volumes = body.get("secret_volumes") or []
    if not isinstance(volumes, list):
        raise ValidationError(f"'{prefix}secret_volumes' must be a list")
    secret_files: list[dict[str, str]] = []
    for i, v in enumerate(volumes):
        if not isinstance(v, dict):
            raise ValidationError(f"'{prefix}secret_volumes[{i}]' must be an object")
        key = secret_key(v.get("src_secret_uri"), cluster, f"secret_volumes[{i}]")
        path = _container_path(v.get("dst_path"), f"secret_volumes[{i}].dst_path")
        secret_files.append({"key": key, "path": path, "uri": str(v["src_secret_uri"])})
    if len({f["path"] for f in secret_files}) != len(secret_files):
        raise ValidationError("two secret files at the same path")
    dsts = [posixpath.normpath(p) for p in (
        [v["dst"] for v in storage_volumes] + [f["path"] for f in secret_files]
        + [d["dst"] for d in disk_volumes])]
    if len(set(dsts)) != len(dsts):
        raise ValidationError("two volumes at the same path in the job")
    return {
        "image": image,
        "entrypoint": entrypoint,
        "command": command,
        "argv": argv,
        "working_dir": working_dir,
        "env": _env(body, prefix),
        "tty": _bool(body, "tty", prefix),
        "http": http,
        "secret_env": secret_env,  # VAR -> key (the values are looked up when the job starts)
        "secret_env_uris": {k: str(v) for k, v in secret_env_uris.items()},
        "secret_files": secret_files,
        "storage_volumes": storage_volumes,  # "path" (in the owner's tree) added on creation
        "disk_volumes": disk_volumes,  # "id" (the owner's disk) added on creation
    }


def _job_fields(body: dict[str, Any], config: ServerConfig) -> dict[str, Any]:
    name = _str(body, "name", max_len=40)
    if name is not None and (len(name) < 3 or not NAME_RE.fullmatch(name)):
        raise ValidationError(
            f"invalid job name {name!r}: use 3-40 characters, lower-case letters, digits and "
            "single dashes, starting with a letter (e.g. train-1)"
        )
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
    cluster = _str(body, "cluster_name", max_len=256)
    if cluster is not None and cluster != config.cluster_name:
        raise ValidationError(f"unknown cluster {cluster!r}: this server's cluster is {config.cluster_name!r}")
    minutes = _int(body, "max_run_time_minutes")
    seconds = _number(body, "max_run_time_seconds")
    life_span: float | None = None
    if minutes is not None:
        if minutes < 1:
            raise ValidationError("'max_run_time_minutes' must be at least 1")
        if minutes > MAX_LIFE_SPAN / 60:
            raise ValidationError(f"'max_run_time_minutes' must be at most {MAX_LIFE_SPAN / 60:.0f}"
                                  " (100 years)")
        life_span = minutes * 60.0
    if seconds is not None:
        if seconds <= 0:
            raise ValidationError("'max_run_time_seconds' must be positive")
        if seconds > MAX_LIFE_SPAN:
            raise ValidationError(f"'max_run_time_seconds' must be at most {MAX_LIFE_SPAN:.0f} "
                                  "(100 years)")
        life_span = seconds
    schedule_timeout = _number(body, "schedule_timeout")
    if schedule_timeout is not None and not 1 <= schedule_timeout < THIRTY_DAYS:
        raise ValidationError("'schedule_timeout' must be at least 1 second and under 30 days")
    restart = _str(body, "restart_policy", max_len=32) or "never"
    if restart not in ("never", "on-failure", "always"):
        raise ValidationError(f"invalid restart policy {restart!r}: never, on-failure or always")
    priority = _str(body, "priority", max_len=16) or "normal"
    if priority not in ("low", "normal", "high"):
        raise ValidationError(f"invalid priority {priority!r}: low, normal or high")
    privileged = _bool(body, "privileged")
    if privileged and not config.allow_privileged:
        raise ValidationError("privileged jobs are not allowed on this server (allow_privileged = true in its server.toml allows them)")
    description = _str(body, "description", max_len=4096)
    warn = _life_span_signal(body.get("life_span_signal"), life_span)
    return {
        "name": name,
        "tags": tuple(sorted(set(tags))),
        "life_span": life_span,
        "fields": {
            "description": description,
            "schedule_timeout": schedule_timeout,
            "restart_policy": restart,
            "priority": priority,
            "privileged": privileged,
            "life_span_signal": warn,
            "pass_config": _bool(body, "pass_config"),
            "wait_for_jobs_quota": _bool(body, "wait_for_jobs_quota"),
            "energy_schedule_name": _str(body, "energy_schedule_name", max_len=256),
            "cluster_name": config.cluster_name,
            "org_name": _str(body, "org_name", max_len=256) or config.org_name,
            "project_name": _str(body, "project_name", max_len=256) or config.project_name,
        },
    }


def signal_number(text: str) -> int | None:
    """'USR1', 'SIGUSR1', 'usr1' or '10' -> 10; None when it names no signal."""
    text = text.strip()
    if text.isdigit():
        num = int(text)
        return num if num != 0 and num in {int(s) for s in signal_mod.valid_signals()} else None
    name = text.upper()
    sig = getattr(signal_mod, name if name.startswith("SIG") else "SIG" + name, None)
    return int(sig) if isinstance(sig, signal_mod.Signals) else None


def _life_span_signal(value: Any, life_span: float | None) -> dict[str, Any] | None:
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
            f"invalid life_span_signal signal {raw!r}: a name like USR1, or a number")
    if num in (signal_mod.SIGKILL, signal_mod.SIGSTOP):
        raise ValidationError(f"life_span_signal cannot be {_signal_name(num)}: a job cannot "
                              "catch it")
    before = value.get("seconds_before", 60)
    if (number := finite(before)) is None or number <= 0:
        raise ValidationError(
            f"'life_span_signal.seconds_before' must be a positive number, got {before!r}")
    if life_span is None:
        raise ValidationError("life_span_signal needs a life span (max_run_time_minutes)")
    if before >= life_span:
        raise ValidationError(f"life_span_signal comes {before:g} s before the end of a "
                              f"{life_span:g} s life span: it must come within it")
    return {"signal": _signal_name(num), "signum": num, "seconds_before": float(before)}


def _signal_name(num: int) -> str:
    """SIGUSR1 for 10; the number itself for a real-time signal (no name of its own)."""
    try:
        return signal_mod.Signals(num).name
    except ValueError:
        return str(num)


def _preset_resources(p: Preset, shm: bool) -> dict[str, Any]:
    res: dict[str, Any] = {"cpu": p.cpu, "memory": p.memory, "shm": shm}
    if p.nvidia_gpu:
        res["nvidia_gpu"] = p.nvidia_gpu
        if p.nvidia_gpu_model:
            res["nvidia_gpu_model"] = p.nvidia_gpu_model
    return res


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError("the request body must be a JSON object")
    return body


def parse_start(body: Any, config: ServerConfig, *, needs_command: bool = True) -> NewJob:
    """``POST /jobs?from_preset``: flat body; resources come from the preset."""
    body = _require_object(body)
    preset_name = _str(body, "preset_name", max_len=256) or config.presets[0].name
    preset = config.preset(preset_name)
    if preset is None:
        names = ", ".join(p.name for p in config.presets)
        raise ValidationError(f"unknown preset {preset_name!r}; available presets: {names}")
    _preset_possible(preset, config)
    resources = body.get("resources") or {}
    if not isinstance(resources, dict):
        raise ValidationError("'resources' must be an object")
    extra = set(resources) - {"shm"}
    if extra:
        raise ValidationError(
            f"with a preset only 'shm' may be given in 'resources', not {', '.join(sorted(extra))}"
        )
    shm = _bool(resources, "shm", "resources.")
    job = _job_fields(body, config)
    spec = {
        **_container_fields(body, needs_command=needs_command, cluster=config.cluster_name),
        **job["fields"],
        "preset_name": preset.name,
        "resources": _preset_resources(preset, shm),
        "scheduler_enabled": preset.scheduler_enabled,
        "preemptible_node": preset.preemptible_node,
    }
    if body.get("energy_schedule_name") and not preset.scheduler_enabled:
        raise ValidationError("'energy_schedule_name' needs a preset with scheduler_enabled")
    return NewJob(job["name"], job["tags"], job["life_span"], spec)


def _preset_possible(preset: Preset, config: ServerConfig) -> None:
    """Refuse at once a preset that asks more than this server has at all (as Slurm's
    "Requested node configuration is not available"): its job would pend forever."""
    short = [what for what, asked, total in (
        (f"{preset.cpu:g} CPU", preset.cpu, config.cpu),
        (f"{_fmt_bytes(preset.memory)} of memory", preset.memory, config.memory),
        (f"{preset.nvidia_gpu} NVIDIA GPU", preset.nvidia_gpu, config.nvidia_gpu))
        if asked > total]
    if short:
        fits = [p.name for p in config.presets if p.cpu <= config.cpu and
                p.memory <= config.memory and p.nvidia_gpu <= config.nvidia_gpu]
        has = (f"{config.cpu:g} CPU, {_fmt_bytes(config.memory)} of memory and "
               + (f"{config.nvidia_gpu} NVIDIA GPU" if config.nvidia_gpu else "no GPU"))
        raise ValidationError(
            f"preset {preset.name} needs {' and '.join(short)}, but this server has {has} in "
            "all: no job of it can ever run here"
            + (f" (presets that can: {', '.join(fits)})" if fits else ""))


def _within_machine(cpu: float, memory: int, gpu: int, config: ServerConfig) -> None:
    """Refuse resources no job could ever get here (the scheduler's capacity is the
    server's CPU, memory and GPUs): such a job would wait as pending forever."""
    over = [what for what, asked, total in (
        (f"{cpu:g} CPU", cpu, config.cpu),
        (f"{_fmt_bytes(memory)} of memory", memory, config.memory),
        (f"{gpu if gpu < 10**6 else 'millions of'} NVIDIA GPU", gpu, config.nvidia_gpu))
        if asked > total]
    if over:
        raise ValidationError(
            f"the job asks for {' and '.join(over)}: more than this server can ever give a "
            f"job, which is at most {config.cpu:g} CPU, {_fmt_bytes(config.memory)} of memory "
            f"and {config.nvidia_gpu} NVIDIA GPU")


def _fmt_bytes(n: int) -> str:
    if n >= 1 << 60:
        return "more than an EiB"  # (n may be beyond what a float holds)
    return f"{n / (1 << 30):.4g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.4g} MiB"


def parse_run(body: Any, config: ServerConfig, *, needs_command: bool = True) -> NewJob:
    """Deprecated ``POST /jobs`` with a nested ``container`` and explicit resources."""
    body = _require_object(body)
    container = body.get("container")
    if not isinstance(container, dict):
        raise ValidationError("'container' is required and must be an object")
    res = container.get("resources")
    if not isinstance(res, dict):
        raise ValidationError("'container.resources' is required and must be an object")
    cpu = _number(res, "cpu", "container.resources.")
    if cpu is None or cpu < 0.1:
        raise ValidationError("'container.resources.cpu' must be a number >= 0.1")
    memory = _int(res, "memory", "container.resources.")
    if memory is None:
        memory_mb = _int(res, "memory_mb", "container.resources.")
        memory = None if memory_mb is None else memory_mb * 1024 * 1024
    if memory is None or memory < 16 * 1024 * 1024:
        raise ValidationError("'container.resources.memory' must be at least 16 MiB (in bytes)")
    gpu = _int(res, "nvidia_gpu", "container.resources.") or _int(res, "gpu", "container.resources.") or 0
    if gpu < 0:
        raise ValidationError("'container.resources.nvidia_gpu' must not be negative")
    _within_machine(cpu, memory, gpu, config)
    resources: dict[str, Any] = {"cpu": cpu, "memory": memory,
                                 "shm": _bool(res, "shm", "container.resources.")}
    if gpu:
        resources["nvidia_gpu"] = gpu
        model = _str(res, "nvidia_gpu_model", prefix="container.resources.") or _str(
            res, "gpu_model", prefix="container.resources.")
        if model:
            resources["nvidia_gpu_model"] = model
    job = _job_fields(body, config)
    spec = {
        **_container_fields(container, "container.", needs_command=needs_command,
                           cluster=config.cluster_name),
        **job["fields"],
        "preset_name": _str(body, "preset_name", max_len=256),
        "resources": resources,
        "scheduler_enabled": _bool(body, "scheduler_enabled"),
        "preemptible_node": False,
    }
    return NewJob(job["name"], job["tags"], job["life_span"], spec)
