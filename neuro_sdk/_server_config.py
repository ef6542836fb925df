"""Parsing of ``GET {API}/config``: clusters, presets, projects, orgs (protocol 3.2, 3.4).

Pure functions, no I/O.  The parser is lenient about keys our SDK does not use (OAuth URLs,
storage/registry URLs) and accepts both preset GPU formats: a plain int with a separate
``*_gpu_model`` key (<= 25.10) and an object ``{"count", "model"?, "memory"?}`` (26.x).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from yarl import URL

from ._errors import ProtocolError

_MIB = 2**20
_NO_URL = URL()


@dataclass(frozen=True)
class Preset:
    """A named set of resources a job can be started with."""

    name: str
    credits_per_hour: Decimal
    cpu: float
    memory: int
    nvidia_gpu: int | None = None
    nvidia_gpu_model: str | None = None
    amd_gpu: int | None = None
    intel_gpu: int | None = None
    scheduler_enabled: bool = False
    preemptible_node: bool = False
    amd_gpu_model: str | None = None
    intel_gpu_model: str | None = None
    tpu_type: str | None = None
    tpu_software_version: str | None = None
    resource_pool_names: Sequence[str] = ()

    @property
    def memory_mb(self) -> int:
        return self.memory // _MIB


@dataclass(frozen=True)
class Cluster:
    """A cluster from ``/config`` with its service URLs and presets (in server order)."""

    name: str
    monitoring_url: URL
    presets: Mapping[str, Preset] = field(default_factory=dict)
    orgs: Sequence[str] = ()
    registry_url: URL = _NO_URL
    storage_url: URL = _NO_URL
    users_url: URL = _NO_URL
    secrets_url: URL = _NO_URL
    disks_url: URL = _NO_URL
    buckets_url: URL = _NO_URL

    @property
    def registry_host(self) -> str | None:
        """``host[:port]`` of the platform registry, as used in Docker references."""
        if not self.registry_url.host:
            return None
        if self.registry_url.explicit_port:
            return f"{self.registry_url.host}:{self.registry_url.port}"
        return self.registry_url.host


@dataclass(frozen=True)
class Project:
    """A project the user belongs to."""

    name: str
    cluster_name: str
    org_name: str | None = None
    role: str = ""


@dataclass(frozen=True)
class ServerConfig:
    """Parsed ``GET /config``; ``clusters`` keeps the server's order."""

    clusters: Mapping[str, Cluster] = field(default_factory=dict)
    projects: Sequence[Project] = ()
    orgs: Sequence[str] = ()
    authorized: bool = False
    admin_url: URL | None = None
    # our server's extension: {"name", "image_used", "limits", "note", "reason"}
    runtime: Mapping[str, Any] | None = None

    def default_cluster_name(self) -> str | None:
        """The first cluster, or ``None`` when there is none."""
        return next(iter(self.clusters), None)

    def default_org_name(self, cluster_name: str | None) -> str | None:
        """The first org of *cluster_name*, or ``None``."""
        cluster = self.clusters.get(cluster_name or "")
        if cluster is None or not cluster.orgs:
            return None
        return cluster.orgs[0]

    def default_project_name(self, cluster_name: str | None, org_name: str | None) -> str | None:
        """Alphabetically first project of *cluster_name* and *org_name*, or ``None``."""
        names = sorted(
            p.name
            for p in self.projects
            if p.cluster_name == cluster_name and (p.org_name or None) == (org_name or None)
        )
        return names[0] if names else None


def _gpu(raw: Mapping[str, Any], kind: str) -> tuple[int | None, str | None]:
    value = raw.get(f"{kind}_gpu")
    model = raw.get(f"{kind}_gpu_model")
    if isinstance(value, Mapping):
        count = value.get("count")
        model = value.get("model", model)
        return (int(count) if count is not None else None), model
    if value is None:
        return None, model
    return int(value), model


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as e:
        raise ProtocolError(f"Invalid decimal value {value!r}") from e


def parse_preset(raw: Mapping[str, Any]) -> Preset:
    memory = int(raw["memory"]) if "memory" in raw else int(raw["memory_mb"]) * _MIB
    nvidia, nvidia_model = _gpu(raw, "nvidia")
    if nvidia is None and raw.get("gpu") is not None:  # <= 24.4 names
        nvidia, nvidia_model = int(raw["gpu"]), raw.get("gpu_model")
    amd, amd_model = _gpu(raw, "amd")
    intel, intel_model = _gpu(raw, "intel")
    tpu = raw.get("tpu") or {}
    return Preset(
        name=raw["name"],
        credits_per_hour=_decimal(raw.get("credits_per_hour", "0")),
        cpu=float(raw["cpu"]),
        memory=memory,
        nvidia_gpu=nvidia,
        nvidia_gpu_model=nvidia_model,
        amd_gpu=amd,
        intel_gpu=intel,
        scheduler_enabled=bool(raw.get("scheduler_enabled", raw.get("is_preemptible", False))),
        preemptible_node=bool(
            raw.get("preemptible_node", raw.get("is_preemptible_node_required", False))
        ),
        amd_gpu_model=amd_model,
        intel_gpu_model=intel_model,
        tpu_type=tpu.get("type"),
        tpu_software_version=tpu.get("software_version"),
        resource_pool_names=tuple(raw.get("resource_pool_names", ())),
    )


def _url(raw: Mapping[str, Any], key: str) -> URL:
    value = raw.get(key)
    return URL(value) if value else URL()


def parse_cluster(raw: Mapping[str, Any]) -> Cluster:
    presets = [parse_preset(p) for p in raw.get("resource_presets", ())]
    return Cluster(
        name=raw["name"],
        monitoring_url=_url(raw, "monitoring_url"),
        presets={p.name: p for p in presets},
        orgs=tuple(o for o in raw.get("orgs", ()) if o is not None),
        registry_url=_url(raw, "registry_url"),
        storage_url=_url(raw, "storage_url"),
        users_url=_url(raw, "users_url"),
        secrets_url=_url(raw, "secrets_url"),
        disks_url=_url(raw, "disks_url"),
        buckets_url=_url(raw, "buckets_url"),
    )


def parse_server_config(raw: Mapping[str, Any]) -> ServerConfig:
    """Parse the JSON of ``GET /config``; raises :class:`ProtocolError` when malformed."""
    try:
        clusters = [parse_cluster(c) for c in raw.get("clusters", ())]
        projects = tuple(
            Project(
                name=p["name"],
                cluster_name=p["cluster_name"],
                org_name=(p.get("org_name") or None) if p.get("org_name") != "NO_ORG" else None,
                role=p.get("role", ""),
            )
            for p in raw.get("projects", ())
        )
        orgs: list[str] = []
        for o in raw.get("orgs", ()):
            name = o.get("name") if isinstance(o, Mapping) else o
            if isinstance(name, str):
                orgs.append(name)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProtocolError):
            raise
        raise ProtocolError(f"Invalid server config: {e!r}") from e
    return ServerConfig(
        clusters={c.name: c for c in clusters},
        projects=projects,
        orgs=tuple(orgs),
        authorized=bool(raw.get("authorized", False)),
        admin_url=URL(raw["admin_url"]) if raw.get("admin_url") else None,
        runtime=raw["neuro_runtime"] if isinstance(raw.get("neuro_runtime"), Mapping) else None,
    )
