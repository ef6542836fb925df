"""The one encoding of a ``JobRequest`` (model.py) in the store: JSON with a version ``v``.

    encode(request) -> '{"v": 2, "container": {...}, ...}'
    decode(text)    -> JobRequest   (any version this server has ever written)

Version 1 is the untyped spec dict of the servers before the model (no ``v``: flat container
keys, ``storage_volumes``, ``secret_env`` and ``secret_env_uris`` side by side); it is read as
it is, never rewritten.  Version 2 mirrors the model.  A change of the model that changes
the encoding adds a version here (a decoder for each one kept), not a migration of rows.
This is the only module that reads or writes a job's request by string key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .model import (
    Container,
    DiskVolume,
    HttpPort,
    JobRequest,
    LifeSpanSignal,
    Priority,
    Resources,
    RestartPolicy,
    SecretFile,
    SecretRef,
    StorageVolume,
)

VERSION = 2


class EncodingError(ValueError):
    """A stored request that no decoder reads (a newer server wrote it, or it is broken)."""


def encode(request: JobRequest) -> str:
    return json.dumps(to_json(request), separators=(",", ":"))


def decode(text: str) -> JobRequest:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise EncodingError("a job's request is not a JSON object")
    version = data.get("v", 1)
    if version == 1:
        return _from_v1(data)
    if version == 2:
        return from_json(data)
    raise EncodingError(
        f"a job's request of encoding version {version!r} (this server "
        f"reads 1 to {VERSION}): written by a newer server?"
    )


# -- version 2 ---------------------------------------------------------------------------------
def to_json(r: JobRequest) -> dict[str, Any]:
    c = r.container
    res = c.resources
    return {
        "v": VERSION,
        "container": {
            "image": c.image,
            "resources": {
                "cpu": res.cpu,
                "memory": res.memory,
                "shm": res.shm,
                "nvidia_gpu": res.nvidia_gpu,
                "nvidia_gpu_model": res.nvidia_gpu_model,
            },
            "argv": list(c.argv),
            "entrypoint": c.entrypoint,
            "command": c.command,
            "working_dir": c.working_dir,
            "env": dict(c.env),
            "secret_env": {var: _ref(s) for var, s in c.secret_env.items()},
            "tty": c.tty,
            "http": None
            if c.http is None
            else {
                "port": c.http.port,
                "requires_auth": c.http.requires_auth,
                "health_check_path": c.http.health_check_path,
            },
            "volumes": [
                {"uri": v.uri, "dst": v.dst, "read_only": v.read_only, "path": v.path}
                for v in c.volumes
            ],
            "disk_volumes": [
                {"ref": d.ref, "uri": d.uri, "dst": d.dst, "read_only": d.read_only, "id": d.id}
                for d in c.disk_volumes
            ],
            "secret_files": [{"path": f.path, "secret": _ref(f.secret)} for f in c.secret_files],
        },
        "cluster_name": r.cluster_name,
        "org_name": r.org_name,
        "project_name": r.project_name,
        "preset_name": r.preset_name,
        "description": r.description,
        "restart_policy": r.restart_policy.value,
        "priority": r.priority.value,
        "life_span_signal": None
        if r.life_span_signal is None
        else {
            "signal": r.life_span_signal.signal,
            "signum": r.life_span_signal.signum,
            "seconds_before": r.life_span_signal.seconds_before,
        },
        "privileged": r.privileged,
        "pass_config": r.pass_config,
        "scheduler_enabled": r.scheduler_enabled,
        "preemptible_node": r.preemptible_node,
        "schedule_timeout": r.schedule_timeout,
        "wait_for_jobs_quota": r.wait_for_jobs_quota,
        "energy_schedule_name": r.energy_schedule_name,
    }


def _ref(s: SecretRef) -> dict[str, str]:
    return {"key": s.key, "uri": s.uri}


def from_json(d: Mapping[str, Any]) -> JobRequest:
    c = d["container"]
    res = c["resources"]
    http = c.get("http")
    return JobRequest(
        container=Container(
            image=c["image"],
            resources=Resources(
                cpu=float(res["cpu"]),
                memory=int(res["memory"]),
                shm=bool(res.get("shm")),
                nvidia_gpu=int(res.get("nvidia_gpu") or 0),
                nvidia_gpu_model=res.get("nvidia_gpu_model"),
            ),
            argv=tuple(c.get("argv") or ()),
            entrypoint=c.get("entrypoint"),
            command=c.get("command"),
            working_dir=c.get("working_dir"),
            env=dict(c.get("env") or {}),
            secret_env={
                var: SecretRef(s["key"], s["uri"]) for var, s in (c.get("secret_env") or {}).items()
            },
            tty=bool(c.get("tty")),
            http=None
            if not http
            else HttpPort(
                int(http["port"]),
                bool(http.get("requires_auth")),
                http.get("health_check_path") or "/",
            ),
            volumes=tuple(
                StorageVolume(v["uri"], v["dst"], bool(v.get("read_only")), v.get("path"))
                for v in c.get("volumes") or ()
            ),
            disk_volumes=tuple(
                DiskVolume(v["ref"], v["uri"], v["dst"], bool(v.get("read_only")), v.get("id"))
                for v in c.get("disk_volumes") or ()
            ),
            secret_files=tuple(
                SecretFile(f["path"], SecretRef(f["secret"]["key"], f["secret"]["uri"]))
                for f in c.get("secret_files") or ()
            ),
        ),
        cluster_name=d["cluster_name"],
        org_name=d["org_name"],
        project_name=d["project_name"],
        preset_name=d.get("preset_name"),
        description=d.get("description"),
        restart_policy=RestartPolicy(d.get("restart_policy") or "never"),
        priority=Priority(d.get("priority") or "normal"),
        life_span_signal=_signal(d.get("life_span_signal")),
        privileged=bool(d.get("privileged")),
        pass_config=bool(d.get("pass_config")),
        scheduler_enabled=bool(d.get("scheduler_enabled")),
        preemptible_node=bool(d.get("preemptible_node")),
        schedule_timeout=d.get("schedule_timeout"),
        wait_for_jobs_quota=bool(d.get("wait_for_jobs_quota")),
        energy_schedule_name=d.get("energy_schedule_name"),
    )


def _signal(w: Mapping[str, Any] | None) -> LifeSpanSignal | None:
    if not w:
        return None
    return LifeSpanSignal(str(w["signal"]), int(w["signum"]), float(w["seconds_before"]))


# -- version 1: the spec dict of the servers before the model ------------------------------------
def _from_v1(s: Mapping[str, Any]) -> JobRequest:
    res = s.get("resources") or {}
    http = s.get("http")
    uris: Mapping[str, str] = s.get("secret_env_uris") or {}
    return JobRequest(
        container=Container(
            image=s.get("image") or "",
            resources=Resources(
                cpu=float(res.get("cpu", 0)),
                memory=int(res.get("memory", 0)),
                shm=bool(res.get("shm")),
                nvidia_gpu=int(res.get("nvidia_gpu") or 0),
                nvidia_gpu_model=res.get("nvidia_gpu_model"),
            ),
            argv=tuple(s.get("argv") or ()),
            entrypoint=s.get("entrypoint"),
            command=s.get("command"),
            working_dir=s.get("working_dir"),
            env=dict(s.get("env") or {}),
            secret_env={
                var: SecretRef(key, uris.get(var) or f"secret:{key}")
                for var, key in (s.get("secret_env") or {}).items()
            },
            tty=bool(s.get("tty")),
            http=None
            if not http
            else HttpPort(
                int(http["port"]),
                bool(http.get("requires_auth")),
                http.get("health_check_path") or "/",
            ),
            volumes=tuple(
                StorageVolume(v["uri"], v["dst"], bool(v.get("read_only")), v.get("path"))
                for v in s.get("storage_volumes") or ()
            ),
            disk_volumes=tuple(
                DiskVolume(v["ref"], v["uri"], v["dst"], bool(v.get("read_only")), v.get("id"))
                for v in s.get("disk_volumes") or ()
            ),
            secret_files=tuple(
                SecretFile(f["path"], SecretRef(f["key"], f.get("uri") or f"secret:{f['key']}"))
                for f in s.get("secret_files") or ()
            ),
        ),
        cluster_name=s.get("cluster_name") or "",
        org_name=s.get("org_name") or "",
        project_name=s.get("project_name") or "",
        preset_name=s.get("preset_name"),
        description=s.get("description"),
        restart_policy=RestartPolicy(s.get("restart_policy") or "never"),
        priority=Priority(s.get("priority") or "normal"),
        life_span_signal=_signal(s.get("life_span_signal")),
        privileged=bool(s.get("privileged")),
        pass_config=bool(s.get("pass_config")),
        scheduler_enabled=bool(s.get("scheduler_enabled")),
        preemptible_node=bool(s.get("preemptible_node")),
        schedule_timeout=s.get("schedule_timeout"),
        wait_for_jobs_quota=bool(s.get("wait_for_jobs_quota")),
        energy_schedule_name=s.get("energy_schedule_name"),
    )
