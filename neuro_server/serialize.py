"""Job records -> the job JSON of protocol.md 2.4 (what the official client needs to not crash)."""

from __future__ import annotations

from typing import Any

from .config import Preset, ServerConfig
from .runtime.base import RuntimeInfo
from .store import JobRecord, Transition, ts


def job_json(job: JobRecord, transitions: list[Transition] | None, config: ServerConfig,
             runtime: RuntimeInfo, ingress: Any = None) -> dict[str, Any]:
    spec = job.spec
    res = spec["resources"]
    resources: dict[str, Any] = {
        "cpu": res["cpu"],
        "memory": res["memory"],
        "memory_mb": res["memory"] // (1024 * 1024),
        "shm": bool(res.get("shm")),
    }
    if res.get("nvidia_gpu"):
        resources["nvidia_gpu"] = res["nvidia_gpu"]
        if res.get("nvidia_gpu_model"):
            resources["nvidia_gpu_model"] = res["nvidia_gpu_model"]
    container: dict[str, Any] = {
        "image": spec["image"],
        "resources": resources,
        "env": spec["env"],
        "volumes": [{"src_storage_uri": v["uri"], "dst_path": v["dst"], "read_only": v["read_only"]}
                    for v in spec.get("storage_volumes") or ()],
    }
    for key in ("entrypoint", "command", "working_dir"):
        if spec.get(key):
            container[key] = spec[key]
    if spec.get("tty"):
        container["tty"] = True
    if spec.get("http"):
        container["http"] = spec["http"]
    if spec.get("secret_env_uris"):
        container["secret_env"] = dict(spec["secret_env_uris"])  # URIs only, never values
    if spec.get("disk_volumes"):
        container["disk_volumes"] = [{"src_disk_uri": f"disk://{config.cluster_name}/"
                                                      f"{spec['org_name']}/{spec['project_name']}/{d['id']}",
                                      "dst_path": d["dst"], "read_only": d["read_only"]}
                                     for d in spec["disk_volumes"]]
    if spec.get("secret_files"):
        container["secret_volumes"] = [{"src_secret_uri": f["uri"], "dst_path": f["path"]}
                                       for f in spec["secret_files"]]
    history: dict[str, Any] = {
        "status": job.status,
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
    org, project = spec["org_name"], spec["project_name"]
    out: dict[str, Any] = {
        "id": job.id,
        "owner": job.owner,
        "cluster_name": config.cluster_name,
        "org_name": org,
        "project_name": project,
        "namespace": "",
        "org_project_hash": "",
        "status": job.status,
        "history": history,
        "container": container,
        "scheduler_enabled": spec["scheduler_enabled"],
        "is_preemptible": spec["scheduler_enabled"],
        "preemptible_node": spec["preemptible_node"],
        "is_preemptible_node_required": spec["preemptible_node"],
        "pass_config": spec["pass_config"],
        "privileged": spec["privileged"],
        "uri": f"job://{config.cluster_name}/{org}/{project}/{job.id}",
        "total_price_credits": "0",
        "price_credits_per_hour": "0",
        "restart_policy": spec["restart_policy"],
        **({"internal_hostname": job.address} if job.address and job.status in ("running", "suspended")
           else {}),
        **({"internal_hostname_named": job.hostname}
           if job.hostname and job.status in ("running", "suspended") else {}),
        **({"http_url": ingress.url(job)} if ingress is not None and ingress.url(job) else {}),
        **({"http_url_named": ingress.named_url(job)}
           if ingress is not None and ingress.named_url(job) else {}),
        "priority": spec["priority"],
        "tags": list(job.tags),
        "materialized": True,
        "being_dropped": False,
        "logs_removed": False,
        "runtime": {
            "name": runtime.name,
            "image_used": runtime.image_used,
            "limits": job.limits or runtime.limits,
            "note": runtime.note,
        },
    }
    if job.name:
        out["name"] = job.name
    if spec.get("description"):
        out["description"] = spec["description"]
    if spec.get("preset_name"):
        out["preset_name"] = spec["preset_name"]
    if spec.get("schedule_timeout") is not None:
        out["schedule_timeout"] = spec["schedule_timeout"]
    if spec.get("energy_schedule_name"):
        out["energy_schedule_name"] = spec["energy_schedule_name"]
    if job.life_span is not None:
        out["max_run_time_minutes"] = max(1, int(job.life_span // 60))
        out["max_run_time_seconds"] = job.life_span
    if spec.get("life_span_signal"):
        warn = spec["life_span_signal"]
        out["life_span_signal"] = {"signal": warn["signal"], "seconds_before": warn["seconds_before"],
                                   "sent": job.warned_life_span == job.life_span}
    if transitions is not None:
        out["statuses"] = [
            {
                "status": t.status,
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


def server_config_json(config: ServerConfig, base_url: str, user: str | None,
                       runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """``GET /api/v1/config`` (protocol.md 3.2).  Without a token: only the auth part."""
    api = f"{base_url}/api/v1"
    out: dict[str, Any] = {
        "auth_url": f"{base_url}/oauth/authorize",
        "token_url": f"{base_url}/oauth/token",
        "logout_url": f"{base_url}/oauth/logout",
        "client_id": "neuro",
        "audience": base_url,
        "headless_callback_url": f"{base_url}/oauth/show-code",
        "callback_urls": ["http://127.0.0.1:54540", "http://127.0.0.1:54541", "http://127.0.0.1:54542"],
        "authorized": user is not None,
    }
    if user is None:
        return out
    c = config.cluster_name
    pool: dict[str, Any] = {
        "name": "local", "min_size": 1, "max_size": 1, "cpu": config.cpu,
        "memory": config.memory, "disk_size": 0, "is_preemptible": False,
    }
    if config.nvidia_gpu:
        pool["nvidia_gpu"] = {"count": config.nvidia_gpu, "model": "nvidia-gpu"}
    out["clusters"] = [{
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
    }]
    out["orgs"] = [{"name": config.org_name, "role": "admin"}]
    out["projects"] = [{
        "name": config.project_name, "cluster_name": c, "org_name": config.org_name,
        "role": "admin", "is_default": True,
    }]
    if runtime is not None:
        out["neuro_runtime"] = runtime  # our extension: which runtime serves the jobs, and why
    return out
