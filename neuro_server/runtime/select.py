"""Which runtime serves the jobs, and why (shown by `neuro config show`).

``runtime = "auto"`` (the default): the engine that ``DOCKER_HOST`` names, else the first of
the standard Docker and Podman sockets that answers, else the process runtime.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import aiohttp


def standard_sockets() -> tuple[str, ...]:
    uid = os.getuid()
    return (
        "/var/run/docker.sock",
        "/run/podman/podman.sock",
        f"/run/user/{uid}/podman/podman.sock",
        f"/run/user/{uid}/docker.sock",
    )


@dataclasses.dataclass(frozen=True)
class Choice:
    kind: str  # "process" | "docker"
    url: str | None
    reason: str


async def answers(url: str, timeout: float = 1.5) -> bool:
    """Does a Docker Engine API answer /_ping at ``url`` (unix:///path or tcp://host:port)?"""
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        if not Path(path).exists():
            return False
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=path)
        base = "http://engine"
    else:
        connector = aiohttp.TCPConnector()
        base = url.replace("tcp://", "http://", 1)
    try:
        async with aiohttp.ClientSession(connector=connector) as s:
            async with s.get(f"{base}/_ping", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return r.status == 200
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False


async def choose(runtime: str, docker_host: str | None) -> Choice:
    if runtime == "process":
        return Choice("process", None, "set in the server config")
    env_host = os.environ.get("DOCKER_HOST")
    candidates: list[tuple[str, str]] = []
    if docker_host:
        candidates.append((docker_host, "set in the server config"))
    if env_host:
        candidates.append((env_host, "DOCKER_HOST names it"))
    candidates += [(f"unix://{p}", f"found its socket {p}") for p in standard_sockets()]
    for url, why in candidates:
        if await answers(url):
            return Choice("docker", url, why)
    if runtime == "docker":
        raise RuntimeError(
            "the docker runtime was asked for, but no Docker or Podman engine answers "
            f"(tried: {', '.join(u for u, _ in candidates)})")
    return Choice("process", None,
                  "no Docker or Podman engine answers (DOCKER_HOST "
                  + ("does not answer" if env_host else "is not set")
                  + " and no standard socket answers), so jobs run as local processes")
