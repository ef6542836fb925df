"""Pure conversions between the wire format (protocol 2.1-2.5, 4.1-4.3) and the models.

No I/O here: job JSON -> :class:`JobDescription`, parameters -> request bodies and queries,
telemetry and exec JSON -> models, and the channel framing of attach/exec streams.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from yarl import URL

from ._errors import ProtocolError
from ._images import RemoteImage
from ._models import (
    Container,
    DiskVolume,
    ExecInspect,
    HTTPPort,
    JobDescription,
    JobPriority,
    JobRestartPolicy,
    JobRuntime,
    JobStatus,
    JobStatusHistory,
    JobStatusItem,
    JobTelemetry,
    LifeSpanSignal,
    Message,
    Resources,
    SecretFile,
    Volume,
)
from ._wire import (
    OFFSET_END,
    Q_HEIGHT,
    Q_LOGS,
    Q_OFFSET,
    Q_RESUMABLE,
    Q_RESUME,
    Q_WIDTH,
    STATUS,
    STDERR,
    STDOUT,
    parse_offset,
    parse_status,
)

JSON = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# JSON -> models


def parse_datetime(value: str | None) -> datetime | None:
    """ISO-8601 -> tz-aware datetime (a naive value is taken as UTC); ``None`` passes."""
    if value is None or value == "":
        return None
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def format_datetime(value: datetime) -> str:
    """A datetime as ISO-8601 UTC with offset; a naive value is local time."""
    return value.astimezone(UTC).isoformat()


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as e:
        raise ValueError(f"invalid decimal {value!r}") from e


def resources_from_api(data: Mapping[str, Any]) -> Resources:
    tpu = data.get("tpu") or {}
    nvidia = data.get("nvidia_gpu", data.get("gpu"))
    nvidia_model = data.get("nvidia_gpu_model", data.get("gpu_model"))
    if "memory" in data:
        memory, memory_mb = int(data["memory"]), 0
    else:
        memory, memory_mb = 0, int(data["memory_mb"])
    return Resources(
        memory=memory,
        memory_mb=memory_mb,
        cpu=float(data["cpu"]),
        shm=bool(data.get("shm", False)),
        nvidia_gpu=_opt_int(nvidia),
        nvidia_gpu_model=nvidia_model,
        amd_gpu=_opt_int(data.get("amd_gpu")),
        amd_gpu_model=data.get("amd_gpu_model"),
        intel_gpu=_opt_int(data.get("intel_gpu")),
        intel_gpu_model=data.get("intel_gpu_model"),
        tpu_type=tpu.get("type"),
        tpu_software_version=tpu.get("software_version"),
    )


def image_from_api(
    ref: str,
    *,
    registry_host: str | None = None,
    cluster_name: str | None = None,
    org_name: str | None = None,
) -> RemoteImage:
    """Parse ``container.image``; never fails (an unparsable name is kept verbatim)."""
    try:
        return RemoteImage.parse(
            ref, registry=registry_host, cluster_name=cluster_name, org_name=org_name
        )
    except ValueError:
        return RemoteImage(name=ref)


def container_from_api(
    data: Mapping[str, Any],
    *,
    registry_host: str | None = None,
    cluster_name: str | None = None,
    org_name: str | None = None,
) -> Container:
    http = data.get("http")
    return Container(
        image=image_from_api(
            data["image"],
            registry_host=registry_host,
            cluster_name=cluster_name,
            org_name=org_name,
        ),
        resources=resources_from_api(data["resources"]),
        entrypoint=data.get("entrypoint"),
        command=data.get("command"),
        working_dir=data.get("working_dir"),
        http=(
            HTTPPort(port=int(http["port"]), requires_auth=bool(http.get("requires_auth", False)))
            if http
            else None
        ),
        env=dict(data.get("env") or {}),
        volumes=tuple(
            Volume(
                storage_uri=URL(v["src_storage_uri"]),
                container_path=v["dst_path"],
                read_only=bool(v.get("read_only", True)),
            )
            for v in data.get("volumes") or ()
        ),
        secret_env={k: URL(v) for k, v in (data.get("secret_env") or {}).items()},
        secret_files=tuple(
            SecretFile(secret_uri=URL(v["src_secret_uri"]), container_path=v["dst_path"])
            for v in data.get("secret_volumes") or ()
        ),
        disk_volumes=tuple(
            DiskVolume(
                disk_uri=URL(v["src_disk_uri"]),
                container_path=v["dst_path"],
                read_only=bool(v.get("read_only", True)),
            )
            for v in data.get("disk_volumes") or ()
        ),
        tty=bool(data.get("tty", False)),
    )


def _status_item(data: Mapping[str, Any]) -> JobStatusItem:
    transition_time = parse_datetime(data["transition_time"])
    assert transition_time is not None
    return JobStatusItem(
        status=JobStatus(data["status"]),
        transition_time=transition_time,
        reason=data.get("reason") or "",
        description=data.get("description") or "",
        exit_code=_opt_int(data.get("exit_code")),
    )


def history_from_api(
    data: Mapping[str, Any], transitions: Iterable[Mapping[str, Any]] = ()
) -> JobStatusHistory:
    run_time = data.get("run_time_seconds")
    return JobStatusHistory(
        status=JobStatus(data["status"]),
        reason=data.get("reason") or "",
        description=data.get("description") or "",
        restarts=int(data.get("restarts") or 0),
        created_at=parse_datetime(data.get("created_at")),
        started_at=parse_datetime(data.get("started_at")),
        finished_at=parse_datetime(data.get("finished_at")),
        exit_code=_opt_int(data.get("exit_code")),
        transitions=tuple(_status_item(t) for t in transitions),
        run_time_seconds=float(run_time) if run_time is not None else None,
    )


def _life_span(data: Mapping[str, Any]) -> float | None:
    if data.get("max_run_time_seconds") is not None:
        return float(data["max_run_time_seconds"])
    if data.get("max_run_time_minutes") is not None:
        return float(data["max_run_time_minutes"]) * 60
    return None


def _runtime(data: Any) -> JobRuntime | None:
    if not isinstance(data, Mapping):
        return None
    return JobRuntime(
        name=str(data.get("name", "")),
        image_used=bool(data.get("image_used", True)),
        limits=str(data.get("limits", "")),
        note=str(data.get("note", "")),
    )


def _life_span_signal(data: Any) -> LifeSpanSignal | None:
    if not isinstance(data, Mapping) or not data.get("signal"):
        return None
    return LifeSpanSignal(
        signal=str(data["signal"]),
        seconds_before=float(data.get("seconds_before") or 60.0),
        sent=bool(data.get("sent", False)),
    )


def _enum_or(enum_cls: Any, value: Any, default: Any) -> Any:
    try:
        return enum_cls(str(value).lower()) if value is not None else default
    except ValueError:
        return default


def _org(value: Any) -> str | None:
    if not value or value == "NO_ORG":
        return None
    return str(value)


def job_description_from_api(
    data: Mapping[str, Any], *, registry_host: str | None = None
) -> JobDescription:
    """Job JSON (protocol 2.4) -> :class:`JobDescription`.

    *registry_host* (the cluster's platform registry) lets ``container.image`` parse as a
    platform image.  Missing required keys or malformed values raise :class:`ProtocolError`.
    """
    try:
        return _job_description_from_api(data, registry_host)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, ProtocolError):
            raise
        job_id = data.get("id", "?") if isinstance(data, Mapping) else "?"
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ProtocolError(f"Invalid job description from the server ({job_id}): {detail}") from e


def _job_description_from_api(data: Mapping[str, Any], registry_host: str | None) -> JobDescription:
    owner = data["owner"]
    cluster_name = data["cluster_name"]
    org_name = _org(data.get("org_name"))
    http_url = data.get("http_url") or ""
    http_url_named = data.get("http_url_named") or ""
    if "scheduler_enabled" in data:
        scheduler_enabled = data["scheduler_enabled"]
    else:
        scheduler_enabled = data["is_preemptible"]
    return JobDescription(
        id=data["id"],
        owner=owner,
        cluster_name=cluster_name,
        status=JobStatus(data["status"]),
        history=history_from_api(data["history"], data.get("statuses") or ()),
        container=container_from_api(
            data["container"],
            registry_host=registry_host,
            cluster_name=cluster_name,
            org_name=org_name,
        ),
        scheduler_enabled=bool(scheduler_enabled),
        pass_config=bool(data["pass_config"]),
        uri=URL(data["uri"]),
        total_price_credits=_decimal(data["total_price_credits"]),
        price_credits_per_hour=_decimal(data["price_credits_per_hour"]),
        project_name=data.get("project_name") or owner,
        org_name=org_name,
        name=data.get("name"),
        tags=tuple(data.get("tags") or ()),
        description=data.get("description"),
        preset_name=data.get("preset_name"),
        http_url=URL(http_url_named or http_url),
        http_url_named=URL(http_url_named),
        ssh_server=URL(data.get("ssh_server") or ""),
        internal_hostname=data.get("internal_hostname"),
        internal_hostname_named=data.get("internal_hostname_named"),
        restart_policy=_enum_or(
            JobRestartPolicy, data.get("restart_policy"), JobRestartPolicy.NEVER
        ),
        life_span=_life_span(data),
        schedule_timeout=(
            float(data["schedule_timeout"]) if data.get("schedule_timeout") is not None else None
        ),
        preemptible_node=bool(
            data.get("preemptible_node", data.get("is_preemptible_node_required", False))
        ),
        privileged=bool(data.get("privileged", False)),
        priority=_enum_or(JobPriority, data.get("priority"), JobPriority.NORMAL),
        energy_schedule_name=data.get("energy_schedule_name"),
        namespace=data.get("namespace"),
        runtime=_runtime(data.get("runtime")),
        life_span_signal=_life_span_signal(data.get("life_span_signal")),
    )


# ---------------------------------------------------------------------------------------------
# models -> request bodies and queries


def life_span_fields(seconds: float) -> JSON:
    """``max_run_time_minutes`` (and our ``max_run_time_seconds`` for partial minutes)."""
    if not math.isfinite(seconds):
        raise ValueError(f"Invalid life span {seconds!r}")
    minutes = int(seconds // 60)
    if seconds == minutes * 60:
        return {"max_run_time_minutes": minutes}
    return {"max_run_time_minutes": max(1, minutes), "max_run_time_seconds": float(seconds)}


def bump_life_span_body(additional_seconds: float) -> JSON:
    if not math.isfinite(additional_seconds):
        raise ValueError(f"Invalid life span {additional_seconds!r}")
    minutes = int(additional_seconds // 60)
    body: JSON = {"additional_max_run_time_minutes": minutes}
    if additional_seconds != minutes * 60:
        body["additional_max_run_time_seconds"] = float(additional_seconds)
    return body


def http_to_api(http: HTTPPort) -> JSON:
    return {"port": http.port, "requires_auth": http.requires_auth}


def _container_fields(
    *,
    image_ref: str,
    entrypoint: str | None,
    command: str | None,
    working_dir: str | None,
    http: HTTPPort | None,
    env: Mapping[str, str] | None,
    volumes: Sequence[Volume],
    secret_env: Mapping[str, URL] | None,
    secret_files: Sequence[SecretFile],
    disk_volumes: Sequence[DiskVolume],
    tty: bool,
) -> JSON:
    body: JSON = {"image": image_ref}
    if entrypoint:
        body["entrypoint"] = entrypoint
    if command:
        body["command"] = command
    if working_dir:
        body["working_dir"] = working_dir
    if http is not None:
        body["http"] = http_to_api(http)
    if env:
        body["env"] = dict(env)
    if volumes:
        body["volumes"] = [
            {
                "src_storage_uri": str(v.storage_uri),
                "dst_path": v.container_path,
                "read_only": v.read_only,
            }
            for v in volumes
        ]
    if secret_env:
        body["secret_env"] = {k: str(v) for k, v in secret_env.items()}
    if secret_files:
        body["secret_volumes"] = [
            {"src_secret_uri": str(f.secret_uri), "dst_path": f.container_path}
            for f in secret_files
        ]
    if disk_volumes:
        body["disk_volumes"] = [
            {
                "src_disk_uri": str(d.disk_uri),
                "dst_path": d.container_path,
                "read_only": d.read_only,
            }
            for d in disk_volumes
        ]
    if tty:
        body["tty"] = True
    return body


def _job_fields(
    body: JSON,
    *,
    name: str | None,
    tags: Sequence[str],
    description: str | None,
    pass_config: bool,
    wait_for_jobs_quota: bool,
    schedule_timeout: float | None,
    life_span: float | None,
    cluster_name: str | None,
    org_name: str | None,
    project_name: str | None,
) -> None:
    body["pass_config"] = pass_config
    if cluster_name:
        body["cluster_name"] = cluster_name
    if org_name:
        body["org_name"] = org_name
    if project_name:
        body["project_name"] = project_name
    if name:
        body["name"] = name
    if tags:
        body["tags"] = list(tags)
    if description:
        body["description"] = description
    if schedule_timeout is not None:
        body["schedule_timeout"] = float(schedule_timeout)
    if life_span is not None:
        body.update(life_span_fields(life_span))
    if wait_for_jobs_quota:
        body["wait_for_jobs_quota"] = True


def start_request_body(
    *,
    image_ref: str,
    preset_name: str,
    entrypoint: str | None = None,
    command: str | None = None,
    working_dir: str | None = None,
    http: HTTPPort | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Sequence[Volume] = (),
    secret_env: Mapping[str, URL] | None = None,
    secret_files: Sequence[SecretFile] = (),
    disk_volumes: Sequence[DiskVolume] = (),
    tty: bool = False,
    shm: bool = False,
    name: str | None = None,
    tags: Sequence[str] = (),
    description: str | None = None,
    pass_config: bool = False,
    wait_for_jobs_quota: bool = False,
    schedule_timeout: float | None = None,
    restart_policy: JobRestartPolicy = JobRestartPolicy.NEVER,
    life_span: float | None = None,
    privileged: bool = False,
    cluster_name: str | None = None,
    org_name: str | None = None,
    project_name: str | None = None,
    life_span_signal: LifeSpanSignal | None = None,
) -> JSON:
    """The flat body of ``POST /jobs?from_preset`` (protocol 2.2; ``life_span_signal`` is our
    extension)."""
    body = _container_fields(
        image_ref=image_ref,
        entrypoint=entrypoint,
        command=command,
        working_dir=working_dir,
        http=http,
        env=env,
        volumes=volumes,
        secret_env=secret_env,
        secret_files=secret_files,
        disk_volumes=disk_volumes,
        tty=tty,
    )
    if shm:
        body["resources"] = {"shm": True}
    body["preset_name"] = preset_name
    _job_fields(
        body,
        name=name,
        tags=tags,
        description=description,
        pass_config=pass_config,
        wait_for_jobs_quota=wait_for_jobs_quota,
        schedule_timeout=schedule_timeout,
        life_span=life_span,
        cluster_name=cluster_name,
        org_name=org_name,
        project_name=project_name,
    )
    policy = JobRestartPolicy(restart_policy)
    if policy is not JobRestartPolicy.NEVER:
        body["restart_policy"] = policy.value
    if privileged:
        body["privileged"] = True
    if life_span_signal is not None:
        body["life_span_signal"] = {
            "signal": life_span_signal.signal,
            "seconds_before": float(life_span_signal.seconds_before),
        }
    return body


def resources_to_api(resources: Resources) -> JSON:
    body: JSON = {"memory": resources.memory, "cpu": resources.cpu, "shm": bool(resources.shm)}
    for kind in ("nvidia", "amd", "intel"):
        count = getattr(resources, f"{kind}_gpu")
        model = getattr(resources, f"{kind}_gpu_model")
        if count:
            body[f"{kind}_gpu"] = count
        if model:
            body[f"{kind}_gpu_model"] = model
    if resources.tpu_type:
        body["tpu"] = {
            "type": resources.tpu_type,
            "software_version": resources.tpu_software_version,
        }
    return body


def run_request_body(
    container: Container,
    *,
    image_ref: str,
    name: str | None = None,
    tags: Sequence[str] = (),
    description: str | None = None,
    scheduler_enabled: bool = False,
    pass_config: bool = False,
    wait_for_jobs_quota: bool = False,
    schedule_timeout: float | None = None,
    life_span: float | None = None,
    cluster_name: str | None = None,
    org_name: str | None = None,
    project_name: str | None = None,
) -> JSON:
    """The nested body of the deprecated ``POST /jobs`` (protocol 2.3)."""
    nested = _container_fields(
        image_ref=image_ref,
        entrypoint=container.entrypoint,
        command=container.command,
        working_dir=container.working_dir,
        http=container.http,
        env=container.env,
        volumes=container.volumes,
        secret_env=container.secret_env,
        secret_files=container.secret_files,
        disk_volumes=container.disk_volumes,
        tty=container.tty,
    )
    nested["resources"] = resources_to_api(container.resources)
    body: JSON = {"container": nested, "scheduler_enabled": scheduler_enabled}
    _job_fields(
        body,
        name=name,
        tags=tags,
        description=description,
        pass_config=pass_config,
        wait_for_jobs_quota=wait_for_jobs_quota,
        schedule_timeout=schedule_timeout,
        life_span=life_span,
        cluster_name=cluster_name,
        org_name=org_name,
        project_name=project_name,
    )
    return body


def list_query(
    *,
    statuses: Iterable[JobStatus] = (),
    name: str | None = None,
    tags: Sequence[str] = (),
    owners: Iterable[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    reverse: bool = False,
    limit: int | None = None,
    cluster_name: str | None = None,
    org_name: str | None = None,
    project_name: str | None = None,
) -> list[tuple[str, str]]:
    """Query parameters of ``GET /jobs`` (protocol 2.5), repeated keys kept in order."""
    query: list[tuple[str, str]] = []
    for status in statuses:
        query.append(("status", JobStatus(status).value))
    if name:
        query.append(("name", name))
    for owner in owners:
        query.append(("owner", owner))
    for tag in tags:
        query.append(("tag", tag))
    if since is not None:
        query.append(("since", format_datetime(since)))
    if until is not None:
        query.append(("until", format_datetime(until)))
    if reverse:
        query.append(("reverse", "1"))
    if limit is not None:
        query.append(("limit", str(int(limit))))
    if cluster_name:
        query.append(("cluster_name", cluster_name))
    if org_name:
        query.append(("org_name", org_name))
    if project_name:
        query.append(("project_name", project_name))
    return query


def monitor_query(
    *, since: datetime | None = None, timestamps: bool = False, separator: str | None = None
) -> list[tuple[str, str]]:
    """Query parameters of ``WS {MON}/{id}/log_ws`` (protocol 4.2)."""
    query: list[tuple[str, str]] = []
    if since is not None:
        query.append(("since", format_datetime(since)))
    if timestamps:
        query.append(("timestamps", "true"))
    if separator is not None:
        query.append(("separator", separator))
    return query


# ---------------------------------------------------------------------------------------------
# attach / exec / resize / signals / telemetry (protocol 2.1 legacy table, 4.1, 4.3)

_MIB = 2**20


def _flag(value: bool) -> str:
    return "1" if value else "0"


def attach_query(
    *,
    tty: bool = False,
    stdin: bool = False,
    stdout: bool = False,
    stderr: bool = False,
    logs: bool = False,
    offset: int | str | None = None,
) -> list[tuple[str, str]]:
    """Query of ``WS {MON}/{id}/attach``: ``tty,stdin,stdout,stderr`` as 0/1, then the
    extensions ``logs=1`` and ``offset=N|end``."""
    query = [
        ("tty", _flag(tty)),
        ("stdin", _flag(stdin)),
        ("stdout", _flag(stdout)),
        ("stderr", _flag(stderr)),
    ]
    if logs:
        query.append((Q_LOGS, "1"))
    if offset is not None:
        if offset != OFFSET_END and (isinstance(offset, bool) or not isinstance(offset, int)):
            raise ValueError(f"Invalid offset {offset!r}: a byte count or 'end'")
        if isinstance(offset, int) and offset < 0:
            raise ValueError(f"Invalid offset {offset!r}: a byte count or 'end'")
        query.append((Q_OFFSET, str(offset)))
    return query


def exec_command(cmd: str | Iterable[str]) -> str:
    """The command line sent to the server: ``shlex.join(cmd)``; a str is taken as it is.

    The server splits it with ``shlex`` (no shell).  An empty command raises ValueError.
    """
    text = cmd if isinstance(cmd, str) else shlex.join(cmd)
    if not text.strip():
        raise ValueError("The command to execute is empty")
    return text


def exec_query(
    cmd: str | Iterable[str],
    *,
    tty: bool = False,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    size: tuple[int, int] | None = None,
) -> list[tuple[str, str]]:
    """Query of the single-websocket ``WS {MON}/{id}/exec`` (protocol 4.1).  ``size``
    (rows, columns) of a TTY is our extension (``h``, ``w`` as ``exec_resize`` takes them)."""
    query = [
        ("cmd", exec_command(cmd)),
        ("tty", _flag(tty)),
        ("stdin", _flag(stdin)),
        ("stdout", _flag(stdout)),
        ("stderr", _flag(stderr)),
    ]
    if tty and size is not None:
        rows, cols = size
        for value in (rows, cols):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 10000:
                raise ValueError(f"Invalid terminal size {rows}x{cols}: 1-10000 each")
        query += [(Q_HEIGHT, str(rows)), (Q_WIDTH, str(cols))]
    return query


def exec_resume_query(*, resumable: bool, resume: str | None, offset: int) -> list[tuple[str, str]]:
    """Our extension of the exec query: start a resumable session, or resume one at a byte."""
    if resume is not None:
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"Invalid offset {offset!r}: a byte count")
        return [(Q_RESUME, resume), (Q_OFFSET, str(offset))]
    return [(Q_RESUMABLE, "1")] if resumable else []


def exec_create_body(cmd: str | Iterable[str], *, tty: bool = False) -> JSON:
    """Body of the legacy ``POST {MON}/{id}/exec_create``."""
    return {
        "command": exec_command(cmd),
        "stdin": True,
        "stdout": True,
        "stderr": True,
        "tty": bool(tty),
    }


def exec_id_from_api(data: Any) -> str:
    """``{"exec_id": "..."}`` -> the id; anything else raises :class:`ProtocolError`."""
    if not isinstance(data, Mapping) or not isinstance(data.get("exec_id"), str):
        raise ProtocolError('exec_create: expected {"exec_id": "..."}')
    return str(data["exec_id"])


def exec_inspect_from_api(data: Any) -> ExecInspect:
    """``{id, running, exit_code, job_id, tty, entrypoint, command}`` -> :class:`ExecInspect`."""
    try:
        if not isinstance(data, Mapping):
            raise TypeError("not a JSON object")
        return ExecInspect(
            id=str(data["id"]),
            job_id=str(data["job_id"]),
            running=bool(data["running"]),
            exit_code=_opt_int(data.get("exit_code")),
            tty=bool(data.get("tty", False)),
            entrypoint=str(data.get("entrypoint") or ""),
            command=str(data.get("command") or ""),
        )
    except (KeyError, TypeError, ValueError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ProtocolError(f"Invalid exec_inspect answer: {detail}") from e


def size_query(*, w: int, h: int) -> list[tuple[str, str]]:
    """Query of ``POST .../resize`` and ``.../exec_resize``: ``w`` then ``h``."""
    return [(Q_WIDTH, str(int(w))), (Q_HEIGHT, str(int(h)))]


def signal_query(signal: str | int) -> list[tuple[str, str]]:
    """Query of ``POST {MON}/{id}/kill``: a name (``"USR1"``, ``"SIGUSR1"``) as given, an int
    (or :class:`signal.Signals`) as its number."""
    if isinstance(signal, bool):
        raise TypeError(f"Invalid signal {signal!r}")
    if isinstance(signal, int):
        return [("signal", str(int(signal)))]
    if isinstance(signal, str):
        name = signal.strip()
        if not name:
            raise ValueError("The signal name is empty")
        return [("signal", name)]
    raise TypeError(f"Invalid signal {signal!r}: use a name or a number")


def telemetry_from_api(data: Any) -> JobTelemetry:
    """A ``top`` frame -> :class:`JobTelemetry`; ``*_bytes`` keys win over the MiB ones."""
    try:
        if not isinstance(data, Mapping):
            raise TypeError("not a JSON object")
        if data.get("memory_bytes") is not None:
            memory_bytes = int(data["memory_bytes"])
            memory = memory_bytes / _MIB
        else:
            memory = float(data["memory"])
            memory_bytes = round(memory * _MIB)
        gpu_memory: float | None = None
        gpu_memory_bytes: int | None = None
        if data.get("gpu_memory_bytes") is not None:
            gpu_memory_bytes = int(data["gpu_memory_bytes"])
            gpu_memory = gpu_memory_bytes / _MIB
        elif data.get("gpu_memory") is not None:
            gpu_memory = float(data["gpu_memory"])
            gpu_memory_bytes = round(gpu_memory * _MIB)
        return JobTelemetry(
            cpu=float(data["cpu"]),
            memory=memory,
            timestamp=float(data["timestamp"]),
            gpu_duty_cycle=_opt_int(data.get("gpu_duty_cycle")),
            gpu_memory=gpu_memory,
            memory_bytes=memory_bytes,
            gpu_memory_bytes=gpu_memory_bytes,
        )
    except (KeyError, TypeError, ValueError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ProtocolError(f"Invalid telemetry frame: {detail}") from e


def exit_code_from_frame(payload: bytes) -> int:
    """The payload of a ``0x03`` frame -> exit code; anything malformed -> 1."""
    code = parse_status(payload)
    return 1 if code is None else code


def exec_id_from_frame(payload: bytes) -> str | None:
    """The ``exec_id`` of a resumable exec's ``0x05`` frame (our extension), if any."""
    found = parse_offset(payload)
    return found[1] if found is not None else None


def offset_from_frame(payload: bytes) -> int:
    """The payload of a ``0x05`` frame (our extension) -> the output offset."""
    found = parse_offset(payload)
    if found is None:
        raise ProtocolError(f"Invalid offset frame: {payload[:200]!r}")
    return found[0]


def decode_output_frame(frame: bytes, *, legacy: bool = False) -> Message | int | None:
    """A binary frame from the server: :class:`Message` for stdout/stderr, an ``int`` exit code
    for a ``0x03`` frame (not in the legacy framing), ``None`` for a frame without payload
    (k8s announces each channel with one).  Another channel raises :class:`ProtocolError`."""
    if not frame:
        return None
    channel, payload = frame[0], bytes(frame[1:])
    if channel in (STDOUT, STDERR):
        return Message(channel, payload) if payload else None
    if channel == STATUS and not legacy:
        return exit_code_from_frame(payload)
    raise ProtocolError(f"Unexpected channel {channel} in the job's output stream")
