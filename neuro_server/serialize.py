"""Job records -> the job JSON of protocol.md 2.4 (what the official client needs to not crash)."""

from __future__ import annotations

from typing import Any

from .config import Preset, ServerConfig
from .model import JobRecord, JobStatus, Transition
from .runtime.base import Capacity, Runtime
from .store import ts

_REACHABLE = (JobStatus.RUNNING, JobStatus.SUSPENDED)  # states with an address


def job_json(
    job: JobRecord,
    transitions: list[Transition] | None,
    config: ServerConfig,
    runtime: Runtime,
    ingress: Any = None,
) -> dict[str, Any]:
    spec = job.spec
    c = spec.container
    info = runtime.info()
    res = c.resources
    resources: dict[str, Any] = {
        "cpu": res.cpu,
        "memory": res.memory,
        "memory_mb": res.memory // (1024 * 1024),
        "shm": res.shm,
    }
    if res.nvidia_gpu:
        resources["nvidia_gpu"] = res.nvidia_gpu
        if res.nvidia_gpu_model:
            resources["nvidia_gpu_model"] = res.nvidia_gpu_model
    container: dict[str, Any] = {
        "image": c.image,
        "resources": resources,
        "env": dict(c.env),
        "volumes": [
            {"src_storage_uri": v.uri, "dst_path": v.dst, "read_only": v.read_only}
            for v in c.volumes
        ],
    }
    for key, value in (
        ("entrypoint", c.entrypoint),
        ("command", c.command),
        ("working_dir", c.working_dir),
    ):
        if value:
            container[key] = value
    if c.tty:
        container["tty"] = True
    if c.http is not None:
        container["http"] = {
            "port": c.http.port,
            "requires_auth": c.http.requires_auth,
            "health_check_path": c.http.health_check_path,
        }
    if c.secret_env:
        container["secret_env"] = {var: s.uri for var, s in c.secret_env.items()}  # never values
    if c.disk_volumes:
        container["disk_volumes"] = [
            {
                "src_disk_uri": f"disk://{config.cluster_name}/"
                f"{spec.org_name}/{spec.project_name}/{d.id}",
                "dst_path": d.dst,
                "read_only": d.read_only,
            }
            for d in c.disk_volumes
        ]
    if c.secret_files:
        container["secret_volumes"] = [
            {"src_secret_uri": f.secret.uri, "dst_path": f.path} for f in c.secret_files
        ]
    history: dict[str, Any] = {
        "status": job.status.value,
        "reason": job.reason,
        "description": job.description,
        "created_at": ts(job.created_at),
        "restarts": job.restarts,
        "run_time_seconds": job.run_time(),
    }
    if job.started_at:
        history["started_at"] = ts(job.started_at)
    if job.finished_at:
        history["finished_at"] = ts(job.finished_at)
    if job.exit_code is not None:
        history["exit_code"] = job.exit_code
    org, project = spec.org_name, spec.project_name
    out: dict[str, Any] = {
        "id": job.id,
        "owner": job.owner,
        "cluster_name": config.cluster_name,
        "org_name": org,
        "project_name": project,
        "namespace": "",
        "org_project_hash": "",
        "status": job.status.value,
        "history": history,
        "container": container,
        "scheduler_enabled": spec.scheduler_enabled,
        "is_preemptible": spec.scheduler_enabled,
        "preemptible_node": spec.preemptible_node,
        "is_preemptible_node_required": spec.preemptible_node,
        "pass_config": spec.pass_config,
        "privileged": spec.privileged,
        "uri": f"job://{config.cluster_name}/{org}/{project}/{job.id}",
        "total_price_credits": "0",
        "price_credits_per_hour": "0",
        "restart_policy": spec.restart_policy.value,
        **({"internal_hostname": job.address} if job.address and job.status in _REACHABLE else {}),
        **(
            {"internal_hostname_named": job.hostname}
            if job.hostname and job.status in _REACHABLE
            else {}
        ),
        **({"http_url": ingress.url(job)} if ingress is not None and ingress.url(job) else {}),
        **(
            {"http_url_named": ingress.named_url(job)}
            if ingress is not None and ingress.named_url(job)
            else {}
        ),
        "priority": spec.priority.value,
        "tags": list(job.tags),
        "materialized": True,
        "being_dropped": False,
        "logs_removed": False,
        "runtime": {
            "name": runtime.name,
            "image_used": runtime.capabilities.runs_images,
            "limits": job.limits or info.limits,
            "note": info.note,
        },
    }
    if job.name:
        out["name"] = job.name
    if spec.description:
        out["description"] = spec.description
    if spec.preset_name:
        out["preset_name"] = spec.preset_name
    if spec.schedule_timeout is not None:
        out["schedule_timeout"] = spec.schedule_timeout
    if spec.energy_schedule_name:
        out["energy_schedule_name"] = spec.energy_schedule_name
    if job.life_span is not None:
        out["max_run_time_minutes"] = max(1, int(job.life_span // 60))
        out["max_run_time_seconds"] = job.life_span
    if (warn := spec.life_span_signal) is not None:
        out["life_span_signal"] = {
            "signal": warn.signal,
            "seconds_before": warn.seconds_before,
            "sent": job.warned_life_span == job.life_span,
        }
    if transitions is not None:
        out["statuses"] = [
            {
                "status": t.status.value,
                "transition_time": ts(t.time),
                "reason": t.reason,
                "description": t.description,
                **({"exit_code": t.exit_code} if t.exit_code is not None else {}),
            }
            for t in transitions
        ]
    return out


def preset_json(p: Preset) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "credits_per_hour": p.credits_per_hour,
        "cpu": p.cpu,
        "memory": p.memory,
        "memory_mb": p.memory // (1024 * 1024),
        "scheduler_enabled": p.scheduler_enabled,
        "preemptible_node": p.preemptible_node,
        "is_preemptible": p.scheduler_enabled,
        "is_preemptible_node_required": p.preemptible_node,
        "resource_pool_names": ["local"],
        "available_resource_pool_names": ["local"],
    }
    if p.nvidia_gpu:
        gpu: dict[str, Any] = {"count": p.nvidia_gpu}
        if p.nvidia_gpu_model:
            gpu["model"] = p.nvidia_gpu_model
        out["nvidia_gpu"] = gpu
    return out


def server_config_json(
    config: ServerConfig,
    base_url: str,
    user: str | None,
    runtime: dict[str, Any] | None = None,
    capacity: Capacity | None = None,
) -> dict[str, Any]:
    """``GET /api/v1/config`` (protocol.md 3.2).  Without a token: only the auth part.
    ``capacity``: what the runtime can give jobs (the resource pool), with a token."""
    api = f"{base_url}/api/v1"
    out: dict[str, Any] = {
        "auth_url": f"{base_url}/oauth/authorize",
        "token_url": f"{base_url}/oauth/token",
        "logout_url": f"{base_url}/oauth/logout",
        "client_id": "neuro",
        "audience": base_url,
        "headless_callback_url": f"{base_url}/oauth/show-code",
        "callback_urls": [
            "http://127.0.0.1:54540",
            "http://127.0.0.1:54541",
            "http://127.0.0.1:54542",
        ],
        "authorized": user is not None,
    }
    if user is None:
        return out
    c = config.cluster_name
    assert capacity is not None, "the config of a user names the resource pool"
    pool: dict[str, Any] = {
        "name": "local",
        "min_size": 1,
        "max_size": 1,
        "cpu": capacity.cpu,
        "memory": capacity.memory,
        "disk_size": 0,
        "is_preemptible": False,
    }
    if capacity.nvidia_gpu:
        pool["nvidia_gpu"] = {"count": capacity.nvidia_gpu, "model": "nvidia-gpu"}
    out["clusters"] = [
        {
            "name": c,
            "registry_url": f"{base_url}/registry",
            "storage_url": f"{api}/storage",
            "users_url": f"{api}/users",
            "monitoring_url": f"{api}/jobs",
            "secrets_url": f"{api}/secrets",
            "disks_url": f"{api}/disk",
            "buckets_url": f"{api}/buckets",
            "resource_pool_types": [pool],
            "resource_presets": [preset_json(p) for p in config.presets],
            "orgs": [config.org_name],
            "timezone": "UTC",
            "energy_schedules": [],
            "storage_volumes": [],
            "apps": {"apps_hostname_templates": []},
        }
    ]
    out["orgs"] = [{"name": config.org_name, "role": "admin"}]
    out["projects"] = [
        {
            "name": config.project_name,
            "cluster_name": c,
            "org_name": config.org_name,
            "role": "admin",
            "is_default": True,
        }
    ]
    if runtime is not None:
        out["neuro_runtime"] = runtime  # our extension: which runtime serves the jobs, and why
    return out
