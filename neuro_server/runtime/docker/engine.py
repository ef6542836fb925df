"""The container engine as the docker runtime uses it: the aiodocker client of the running loop,
what it says of our containers (only ever ours: by this server's instance label), and the
calls on them (kill, attach, remove, image pulls).  The raw HTTP side (hijacked streams, logs,
blocking calls) is api.py's."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiodocker.exceptions import DockerError

from ..base import RuntimeError_
from . import api

# Podman's answer when a container's process ended while it read the process's cgroup
_EXITED_MEANWHILE = re.compile(r"/proc/\d+/cgroup\b.*no such (process|file)", re.IGNORECASE)
_INSPECT_TRIES = 10
RUNNING_STATES = ("running", "paused", "restarting")
EXITED_STATES = ("exited", "stopped", "dead")
NOT_STARTED_STATES = ("created", "configured", "initialized", "")


def phase_of(info: dict[str, Any] | None) -> str:
    """ "running", "exited" or "created" (never started) from an engine's container inspect;
    a state in between (Podman's "stopping"...) of a started container counts as running."""
    state = (info or {}).get("State") or {}
    status = str(state.get("Status") or "")
    if status in EXITED_STATES:
        return "exited"
    if status in RUNNING_STATES:
        return "running"
    if status in NOT_STARTED_STATES:
        if api.parse_time(state.get("FinishedAt")):
            return "exited"  # it ran, then the engine prepared it again (Podman, on an attach)
        if not api.parse_time(state.get("StartedAt")):
            return "created"
    return "running"


class Engine:
    def __init__(self, url: str, *, label_prefix: str, instance: str) -> None:
        self.endpoint = api.Endpoint.parse(url)
        self.url = url
        self.label_prefix = label_prefix
        self.instance = instance
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._engine: dict[str, str] | None = None  # name, version

    def label(self, key: str) -> str:
        return f"{self.label_prefix}.{key}"

    def ours(self, info: Mapping[str, Any] | None, job_id: str | None = None) -> bool:
        labels = ((info or {}).get("Config") or {}).get("Labels") or (info or {}).get("Labels")
        if not isinstance(labels, dict) or labels.get(self.label("instance")) != self.instance:
            return False
        return job_id is None or labels.get(self.label("job-id")) == job_id

    async def client(self) -> Any:
        """The aiodocker client of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            import aiodocker

            # a pinned API version: "auto" asks /version first (300 ms on Podman)
            self._client = aiodocker.Docker(url=self.endpoint.url, api_version=api.API[1:])
            self._client_loop = loop
        return self._client

    async def close(self) -> None:
        """Close the engine connections of the running event loop."""
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            await self._client.close()
        self._client = None

    def runtime_error(
        self, job_id: str, e: Exception, reason: str = "ContainerCannotRun"
    ) -> RuntimeError_:
        status = getattr(e, "status", 0)
        message = getattr(e, "message", None) or str(e)
        if isinstance(message, dict):
            message = message.get("message") or str(message)
        if status == 404:
            return RuntimeError_(f"job {job_id}: its container is gone", reason="NotFound")
        if status == 409 and "not running" in str(message).lower():
            return RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return RuntimeError_(f"job {job_id}: {message}", reason=reason)

    async def container_info(self, container_id: str) -> dict[str, Any] | None:
        """The engine's inspect of our container; None when it is gone (or not ours)."""
        info = await self.show(container_id)
        return info if info is not None and self.ours(info) else None

    async def show(self, ref: str) -> dict[str, Any] | None:
        """The engine's inspect of a container (by id or name); None when there is none."""
        docker = await self.client()
        tries = 0
        while True:
            try:
                return dict(await docker.containers.container(ref).show())
            except DockerError as e:
                if e.status == 404:
                    return None
                tries += 1
                if tries < _INSPECT_TRIES and _EXITED_MEANWHILE.search(str(e.message)):
                    # Podman before 4.4 reads a running container's /proc/PID/cgroup for its
                    # inspect and fails when the process ends between the open and the read:
                    # asked again, it has seen the exit and answers from its state
                    await asyncio.sleep(0.01 * tries)
                    continue
                raise api.EngineError(e.status, str(e.message)) from e
            except OSError as e:  # the engine is down: the caller retries
                raise api.EngineError(0, str(e)) from e

    async def kill_container(self, container_id: str, signame: str) -> None:
        docker = await self.client()
        try:
            await docker.containers.container(container_id).kill(signal=signame)
        except DockerError as e:
            if e.status not in (404, 409) and "not running" not in str(e.message):
                raise api.EngineError(e.status, str(e.message)) from e

    async def attach_stream(
        self, container_id: str, *, tty: bool, stdin: bool, timeout: float = api.HEAD_TIMEOUT
    ) -> api.Hijack:
        return await api.hijack(
            self.endpoint,
            api.path(
                "/containers/{}/attach",
                container_id,
                stream=1,
                stdout=1,
                stderr=1,
                stdin=int(stdin),
                detachKeys="",  # no key sequence detaches (ctrl-p ctrl-q goes to the job)
            ),
            tty=tty,
            head_timeout=timeout,
        )

    async def remove_container(self, container_id: str) -> None:
        docker = await self.client()
        with contextlib.suppress(DockerError):
            await docker.containers.container(container_id).delete(force=1, v=1)

    def info_blocking(self) -> dict[str, str]:
        """Which engine it is ({name, version, reachable}; asked once, blocking: for info())."""
        if self._engine is None:
            try:
                headers = api.ping_blocking(self.endpoint, 3.0)
            except api.EngineError:
                return {"name": "container engine", "version": "", "reachable": ""}
            self._engine = engine_from_ping(headers)
        return self._engine

    async def info(self) -> dict[str, str]:
        """Which engine it is ({name, version, reachable}; asked once)."""
        if self._engine is None:
            resp = await api.request(self.endpoint, "GET", "/_ping")
            await resp.aclose()
            self._engine = engine_from_ping(resp.headers)
        return self._engine

    async def job_ids(self) -> list[str]:
        """Job ids of every container of this server (found by label)."""
        import json

        docker = await self.client()
        found = await docker.containers.list(
            all=1, filters=json.dumps({"label": [f"{self.label('instance')}={self.instance}"]})
        )
        ids = []
        for c in found:
            labels = c._container.get("Labels") or {}
            if labels.get(self.label("instance")) == self.instance:
                ids.append(str(labels.get(self.label("job-id"))))
        return sorted(ids)

    async def ensure_image(self, image: str, phase: Callable[[str, str], None]) -> None:
        """Pull ``image`` unless the engine has it; ``phase(reason, description)`` hears how
        the pull goes (RuntimeError_ InvalidImageName or ErrImagePull when it cannot)."""
        docker = await self.client()
        try:
            await docker.images.inspect(image)
            return
        except DockerError as e:
            if e.status != 404:
                if "invalid reference" in str(e.message).lower():
                    raise RuntimeError_(
                        f"invalid image name {image!r}: {e.message}", reason="InvalidImageName"
                    ) from e
                raise RuntimeError_(
                    f"cannot look up image {image}: {e.message}", reason="ErrImagePull"
                ) from e
        phase("Pulling", f"Pulling image {image}")
        last = 0.0
        try:
            async for item in docker.images.pull(image, stream=True):
                if not isinstance(item, dict):
                    continue
                if item.get("error") or item.get("errorDetail"):
                    detail = item.get("errorDetail") or {}
                    message = item.get("error") or detail.get("message") or str(item)
                    raise RuntimeError_(
                        f"cannot pull image {image}: {message}", reason="ErrImagePull"
                    )
                status = " ".join(
                    str(item[k]) for k in ("id", "status", "progress") if item.get(k)
                ).strip()
                now = time.monotonic()
                if status and now - last >= 0.25:
                    last = now
                    phase("Pulling", f"Pulling image {image}: {status}")
        except DockerError as e:
            reason = (
                "InvalidImageName"
                if "invalid reference" in str(e.message).lower()
                else "ErrImagePull"
            )
            raise RuntimeError_(f"cannot pull image {image}: {e.message}", reason=reason) from e
        try:
            await docker.images.inspect(image)
        except DockerError as e:
            raise RuntimeError_(
                f"cannot pull image {image}: the engine has no such image after "
                f"pulling it ({e.message})",
                reason="ErrImagePull",
            ) from e


def engine_from_ping(headers: Mapping[str, str]) -> dict[str, str]:
    """Which engine, from its /_ping headers (/version takes 300 ms on Podman)."""
    h = {k.lower(): v for k, v in headers.items()}
    server = h.get("server", "")
    if h.get("libpod-api-version") or "libpod" in server.lower():
        return {"name": "podman", "version": h.get("libpod-api-version", ""), "reachable": "1"}
    m = re.match(r"Docker/(\S+)", server)
    return {"name": "docker", "version": m.group(1) if m else "", "reachable": "1"}
