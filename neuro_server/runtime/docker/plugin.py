"""The docker runtime's entry in the registry (registry.py): it serves where a Docker Engine API
answers (the config's docker_host, else ``DOCKER_HOST``, else a standard Docker or Podman
socket), and reads the config's docker_host, port_connect, network, pids_limit and
[resources]."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import Found, RuntimePlugin, Unavailable, capacity_from_config

if TYPE_CHECKING:
    from ...config import ServerConfig
    from ..base import Runtime


def standard_sockets() -> tuple[str, ...]:
    uid = os.getuid()
    return (
        "/var/run/docker.sock",
        "/run/podman/podman.sock",
        f"/run/user/{uid}/podman/podman.sock",
        f"/run/user/{uid}/docker.sock",
    )


async def answers(url: str, timeout: float = 1.5) -> bool:
    """Does a Docker Engine API answer /_ping at ``url`` (unix:///path or tcp://host:port)?"""
    import aiohttp

    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not Path(path).exists():  # noqa: ASYNC240 - one stat, while probing
            return False
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=path)
        base = "http://engine"
    else:
        connector = aiohttp.TCPConnector()
        base = url.replace("tcp://", "http://", 1)
    try:
        async with (
            aiohttp.ClientSession(connector=connector) as s,
            s.get(f"{base}/_ping", timeout=aiohttp.ClientTimeout(total=timeout)) as r,
        ):
            return r.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def probe(config: ServerConfig, asked: bool, passed_over: Sequence[str]) -> Found:
    env_host = os.environ.get("DOCKER_HOST")
    candidates: list[tuple[str, str]] = []
    if config.docker_host:
        candidates.append((config.docker_host, "set in the server config"))
    if env_host:
        candidates.append((env_host, "DOCKER_HOST names it"))
    candidates += [(f"unix://{p}", f"found its socket {p}") for p in standard_sockets()]
    for url, why in candidates:
        if await answers(url):
            return Found(url, why)
    if asked:
        raise Unavailable(
            "the docker runtime was asked for, but no Docker or Podman engine answers "
            f"(tried: {', '.join(u for u, _ in candidates)})"
        )
    raise Unavailable(
        "no Docker or Podman engine answers (DOCKER_HOST "
        + ("does not answer" if env_host else "is not set")
        + " and no standard socket answers)"
    )


def create(config: ServerConfig, found: Found) -> Runtime:
    from .runtime import DockerRuntime

    return DockerRuntime(
        found.where or config.docker_host or "",
        root=config.jobs_dir,
        port_connect=config.port_connect,
        network=None if config.network == "default" else config.network,
        pids_limit=config.pids_limit,
        capacity=capacity_from_config(config),
    )


PLUGIN = RuntimePlugin(
    name="docker",
    summary="jobs run in containers of their image (Docker, or Podman's compatible service)",
    config_keys=(
        "docker_host",
        "port_connect",
        "network",
        "pids_limit",
        "cpu",
        "memory",
        "nvidia_gpu",
    ),
    probe=probe,
    create=create,
)
