"""Sample wire data for the SDK tests."""

from __future__ import annotations

import base64
import json
from typing import Any


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(claims: dict[str, Any]) -> str:
    """An unsigned-looking JWT; the SDK never verifies signatures."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64url(b'signature')}"


TOKEN = make_token({"identity": "alice"})


def server_config(
    monitoring_url: str, registry_url: str = "https://registry.example.com"
) -> dict[str, Any]:
    """A raw ``GET /config`` body with two clusters in the 26.x format."""
    return {
        "auth_url": "https://auth.example.com/authorize",
        "token_url": "https://auth.example.com/oauth/token",
        "logout_url": "https://auth.example.com/v2/logout",
        "client_id": "client",
        "audience": "https://api.example.com",
        "headless_callback_url": "https://example.com/oauth/show-code",
        "authorized": True,
        "clusters": [
            {
                "name": "default",
                "registry_url": registry_url,
                "storage_url": "https://storage.example.com",
                "users_url": "https://users.example.com",
                "monitoring_url": monitoring_url,
                "secrets_url": "https://secrets.example.com",
                "disks_url": "https://disks.example.com",
                "buckets_url": "https://buckets.example.com",
                "resource_pool_types": [],
                "resource_presets": [
                    {
                        "name": "cpu-small",
                        "credits_per_hour": "0.5",
                        "cpu": 1.0,
                        "memory": 2 * 2**30,
                        "memory_mb": 2048,
                        "scheduler_enabled": False,
                        "preemptible_node": False,
                    },
                    {
                        "name": "gpu-new",
                        "credits_per_hour": 10,
                        "cpu": 8,
                        "memory": 32 * 2**30,
                        "nvidia_gpu": {"count": 1, "model": "nvidia-tesla-a100", "memory": 2**34},
                        "scheduler_enabled": True,
                        "preemptible_node": True,
                    },
                    {
                        "name": "gpu-old",
                        "credits_per_hour": "3.25",
                        "cpu": 4,
                        "memory_mb": 16384,
                        "nvidia_gpu": 2,
                        "nvidia_gpu_model": "nvidia-tesla-k80",
                        "amd_gpu": 1,
                        "intel_gpu": 3,
                    },
                ],
                "orgs": ["acme", "other"],
            },
            {
                "name": "second",
                "registry_url": "https://registry2.example.com:5000",
                "storage_url": "https://storage2.example.com",
                "users_url": "https://users2.example.com",
                "monitoring_url": "https://mon2.example.com/api/v1/jobs",
                "secrets_url": "https://secrets2.example.com",
                "disks_url": "https://disks2.example.com",
                "buckets_url": "https://buckets2.example.com",
                "resource_pool_types": [],
                "resource_presets": [],
                "orgs": [],
            },
        ],
        "projects": [
            {"name": "zeta", "cluster_name": "default", "org_name": "acme", "role": "admin"},
            {"name": "beta", "cluster_name": "default", "org_name": "acme", "role": "writer"},
            {"name": "alpha", "cluster_name": "default", "org_name": "other", "role": "reader"},
            {"name": "aaa", "cluster_name": "second", "org_name": "acme", "role": "reader"},
        ],
        "orgs": [{"name": "acme"}, {"name": "other"}],
    }


def job_json(job_id: str = "job-1", **overrides: Any) -> dict[str, Any]:
    """A job as platform-api sends it (protocol 2.4)."""
    job: dict[str, Any] = {
        "id": job_id,
        "owner": "alice",
        "cluster_name": "default",
        "org_name": "acme",
        "project_name": "beta",
        "status": "running",
        "statuses": [
            {
                "status": "pending",
                "transition_time": "2024-01-02T03:04:05+00:00",
                "reason": "Creating",
                "description": None,
            },
            {
                "status": "running",
                "transition_time": "2024-01-02T03:04:10Z",
                "reason": None,
                "description": None,
            },
        ],
        "history": {
            "status": "running",
            "reason": None,
            "description": None,
            "created_at": "2024-01-02T03:04:05+00:00",
            "started_at": "2024-01-02T03:04:10Z",
            "restarts": 0,
            "run_time_seconds": 12.5,
        },
        "container": {
            "image": "ubuntu:22.04",
            "command": "sleep 1h",
            "env": {"A": "1"},
            "volumes": [],
            "resources": {"cpu": 1.0, "memory": 2 * 2**30, "memory_mb": 2048, "shm": True},
        },
        "scheduler_enabled": False,
        "preemptible_node": False,
        "pass_config": False,
        "uri": f"job://default/acme/beta/{job_id}",
        "total_price_credits": "1.2500",
        "price_credits_per_hour": "0.5000",
        "restart_policy": "never",
        "privileged": False,
        "priority": "normal",
    }
    job.update(overrides)
    return job
