"""``--json`` output: pure converters from SDK objects to JSON values, and the documented fields
of every command's output (``SCHEMAS``, rendered into docs/cli.md with ``USER_DOC`` and checked
by the tests)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neuro_sdk import JobDescription, JobTelemetry

USER_DOC = """\
`ps`, `status`, `top`, `capacity`, `config show`, `secret ls`, `disk ls` and `storage ls`
print JSON with `--json`: times are
ISO-8601 UTC strings (null when unset), sizes are bytes, durations are seconds. `ps` streams
its array one job per line as the jobs arrive; `top --json` prints one array per refresh, one
per line (JSON Lines), and `top --no-stream --json` a single array. Fields may be added in
later versions; none is removed or changes type without a major version."""

# field -> (JSON type, meaning); a type ending in "?" may be null
JOB_FIELDS: dict[str, tuple[str, str]] = {
    "id": ("string", "job id"),
    "name": ("string?", "job name"),
    "owner": ("string", "user who started the job"),
    "cluster_name": ("string", "cluster"),
    "org_name": ("string?", "organization"),
    "project_name": ("string", "project"),
    "status": ("string", "pending, suspended, running, succeeded, failed or cancelled"),
    "reason": ("string", "why the job is in this status (e.g. Scheduling, OOMKilled)"),
    "status_description": ("string", "the reason in words"),
    "exit_code": ("integer?", "exit code of the job's command, once it ended"),
    "created_at": ("string", "ISO-8601 UTC"),
    "started_at": ("string?", "ISO-8601 UTC"),
    "finished_at": ("string?", "ISO-8601 UTC"),
    "image": ("string", "image reference"),
    "entrypoint": ("string?", "entrypoint override"),
    "command": ("string?", "command"),
    "working_dir": ("string?", "working directory"),
    "env": ("object", "environment variables"),
    "secret_env": ("object", "environment variables from secrets: VAR -> secret URI (no values)"),
    "secret_files": ("array", "secret files: objects with path and uri (no values)"),
    "volumes": ("array", "storage volumes: objects with path, uri and read_only"),
    "tty": ("boolean", "the job has a terminal"),
    "preset": ("string?", "resource preset"),
    "resources": ("object", "cpu (cores), memory (bytes), nvidia_gpu (count), shm (boolean)"),
    "tags": ("array", "tags"),
    "description": ("string?", "the job's description"),
    "life_span": ("number?", "seconds of run time before the job is stopped; null: no limit"),
    "life_span_signal": (
        "object?",
        (
            "signal (a name), seconds_before (its life span's end) "
            "and sent (boolean): its warning before its life span ends"
        ),
    ),
    "restart_policy": ("string", "never, on-failure or always"),
    "restarts": ("integer", "how many times the job was restarted"),
    "http_url": ("string?", "URL of the job's HTTP port"),
    "internal_hostname": ("string?", "host name of the job inside the cluster"),
    "internal_hostname_named": (
        "string?",
        (
            "the name its owner's other jobs reach it by "
            "(NAME--OWNER), where the runtime resolves names"
        ),
    ),
    "privileged": ("boolean", "privileged container"),
}
TRANSITION_FIELDS: dict[str, tuple[str, str]] = {
    "transitions": ("array", "status changes: objects with status, reason, description, time"),
}
TOP_FIELDS: dict[str, tuple[str, str]] = {
    "id": ("string", "job id"),
    "name": ("string?", "job name"),
    "status": ("string", "job status"),
    "timestamp": ("string", "ISO-8601 UTC time of the sample"),
    "cpu": ("number", "CPU cores in use"),
    "memory": ("integer", "memory in use, bytes"),
    "gpu_duty_cycle": ("integer?", "GPU utilisation, percent"),
    "gpu_memory": ("integer?", "GPU memory in use, bytes"),
}
CAPACITY_FIELDS: dict[str, tuple[str, str]] = {
    "<preset>": ("integer", "how many more jobs of this preset can start now"),
}
CONFIG_FIELDS: dict[str, tuple[str, str]] = {
    "user": ("string", "user name"),
    "url": ("string", "API URL"),
    "embedded": ("boolean", "the embedded local server serves this user"),
    "cluster_name": ("string?", "current cluster"),
    "runtime": (
        "object?",
        "name, reason, image_used, limits, users, ports of the server's runtime",
    ),
    "presets": (
        "array",
        (
            "objects with name, cpu, memory (bytes), nvidia_gpu, nvidia_gpu_model, "
            "available (how many more jobs fit now)"
        ),
    ),
}

SECRET_FIELDS: dict[str, tuple[str, str]] = {
    "key": ("string", "the secret's key"),
    "uri": ("string", "its URI, as jobs name it (secret://CLUSTER/ORG/PROJECT/KEY)"),
}
DISK_FIELDS: dict[str, tuple[str, str]] = {
    "id": ("string", "disk id"),
    "name": ("string?", "disk name"),
    "storage": ("integer", "size, bytes"),
    "used_bytes": ("integer", "bytes in use"),
    "created_at": ("string", "ISO-8601 UTC"),
    "last_usage": ("string?", "when a job last mounted it, ISO-8601 UTC"),
}
STORAGE_FIELDS: dict[str, tuple[str, str]] = {
    "name": ("string", "file or directory name"),
    "type": ("string", "file or directory"),
    "size": ("integer", "bytes (0 for a directory)"),
    "modified": ("string", "ISO-8601 UTC"),
}

# command -> (shape, fields)
SCHEMAS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "ps": ("array of objects", JOB_FIELDS),
    "status": ("object", {**JOB_FIELDS, **TRANSITION_FIELDS}),
    "top": ("array of objects (one array per line while streaming)", TOP_FIELDS),
    "capacity": ("object", CAPACITY_FIELDS),
    "config show": ("object", CONFIG_FIELDS),
    "secret ls": ("array of objects", SECRET_FIELDS),
    "disk ls": ("array of objects", DISK_FIELDS),
    "storage ls": ("array of objects", STORAGE_FIELDS),
}


def _time(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def _url(value: Any) -> str | None:
    text = str(value) if value is not None else ""
    return text or None


def _life_span_signal(job: JobDescription) -> dict[str, Any] | None:
    warn = getattr(job, "life_span_signal", None)
    if warn is None:
        return None
    return {"signal": warn.signal, "seconds_before": warn.seconds_before, "sent": warn.sent}


def job_dict(job: JobDescription, *, transitions: bool = False) -> dict[str, Any]:
    h = job.history
    c = job.container
    r = c.resources
    out: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "owner": job.owner,
        "cluster_name": job.cluster_name,
        "org_name": job.org_name,
        "project_name": job.project_name,
        "status": job.status.value,
        "reason": h.reason or "",
        "status_description": h.description or "",
        "exit_code": h.exit_code,
        "created_at": _time(h.created_at),
        "started_at": _time(h.started_at),
        "finished_at": _time(h.finished_at),
        "image": str(c.image),
        "entrypoint": c.entrypoint,
        "command": c.command,
        "working_dir": c.working_dir,
        "env": dict(c.env),
        "secret_env": {k: str(v) for k, v in (c.secret_env or {}).items()},
        "secret_files": [
            {"path": f.container_path, "uri": str(f.secret_uri)} for f in c.secret_files
        ],
        "volumes": [
            {"path": v.container_path, "uri": str(v.storage_uri), "read_only": bool(v.read_only)}
            for v in c.volumes
        ],
        "tty": bool(c.tty),
        "preset": job.preset_name,
        "resources": {
            "cpu": r.cpu,
            "memory": int(r.memory_mb) * 1024 * 1024,
            "nvidia_gpu": int(getattr(r, "nvidia_gpu", None) or 0),
            "shm": bool(r.shm),
        },
        "tags": list(job.tags),
        "description": job.description,
        "life_span": job.life_span,
        "life_span_signal": _life_span_signal(job),
        "restart_policy": _enum(job.restart_policy),
        "restarts": int(h.restarts or 0),
        "http_url": _url(job.http_url),
        "internal_hostname": job.internal_hostname,
        "internal_hostname_named": job.internal_hostname_named,
        "privileged": bool(job.privileged),
    }
    if transitions:
        out["transitions"] = [
            {
                "status": t.status.value,
                "reason": t.reason or "",
                "description": t.description or "",
                "time": _time(t.transition_time),
            }
            for t in h.transitions
        ]
    return out


def top_dict(job: JobDescription, t: JobTelemetry) -> dict[str, Any]:
    def mib_bytes(exact: int | None, mib: float | None) -> int | None:
        if exact is not None:
            return int(exact)
        return None if mib is None else int(mib * 1024 * 1024)

    return {
        "id": job.id,
        "name": job.name,
        "status": job.status.value,
        "timestamp": _time(datetime.fromtimestamp(t.timestamp, UTC)),
        "cpu": t.cpu,
        "memory": mib_bytes(t.memory_bytes, t.memory) or 0,
        "gpu_duty_cycle": t.gpu_duty_cycle,
        "gpu_memory": mib_bytes(t.gpu_memory_bytes, t.gpu_memory),
    }


def capacity_dict(cap: Mapping[str, int]) -> dict[str, int]:
    return {name: int(n) for name, n in cap.items()}


def dumps(value: Any, *, compact: bool = False) -> str:
    if compact:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False, indent=2)


def check(value: Any, fields: Mapping[str, tuple[str, str]]) -> list[str]:
    """What is wrong with one object against documented fields (for the tests): missing or
    undocumented keys, wrong types."""
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "object": dict,
        "array": list,
    }
    problems = []
    if not isinstance(value, dict):
        return [f"not an object: {value!r}"]
    if "<preset>" in fields:
        return [
            f"{k}: not an integer"
            for k, v in value.items()
            if not isinstance(v, int) or isinstance(v, bool)
        ]
    for key in fields.keys() - value.keys():
        problems.append(f"missing {key}")
    for key in value.keys() - fields.keys():
        problems.append(f"undocumented {key}")
    for key, (typ, _meaning) in fields.items():
        if key not in value:
            continue
        v = value[key]
        if v is None and typ.endswith("?"):
            continue
        want = types[typ.rstrip("?")]
        if (isinstance(v, bool) and typ.rstrip("?") in ("integer", "number")) or not isinstance(
            v, want
        ):
            problems.append(f"{key}: {v!r} is not {typ}")
    return problems
