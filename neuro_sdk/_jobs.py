"""The :class:`Jobs` subsystem: start, list, inspect, follow and stop jobs (protocol 2)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import warnings
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from ._errors import NDJSONError, NeuroError, ProtocolError, ServerUnreachable
from ._images import RemoteImage
from ._models import (
    Container,
    DiskVolume,
    HTTPPort,
    JobDescription,
    JobRestartPolicy,
    JobStatus,
    SecretFile,
    Volume,
)
from ._parsing import (
    bump_life_span_body,
    job_description_from_api,
    list_query,
    monitor_query,
    run_request_body,
    start_request_body,
)
from ._utils import AsyncStream

if TYPE_CHECKING:
    from ._client import Client

NDJSON = "application/x-ndjson"
MAX_LINE = 4 * 2**20


async def _ndjson_lines(resp: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """Split a streamed body into lines as the bytes arrive (not after the last byte)."""
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        buf += chunk
        while (end := buf.find(b"\n")) >= 0:
            if end > MAX_LINE:
                raise ProtocolError(f"NDJSON line longer than {MAX_LINE} bytes")
            line = bytes(buf[:end])
            del buf[: end + 1]
            yield line
        if len(buf) > MAX_LINE:
            raise ProtocolError(f"NDJSON line longer than {MAX_LINE} bytes")
    if buf:
        yield bytes(buf)


def _json_object(line: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"Invalid NDJSON line: {line[:200]!r}") from e
    if not isinstance(obj, dict):
        raise ProtocolError(f"NDJSON line is not an object: {line[:200]!r}")
    return obj


class Jobs:
    """Jobs subsystem, available as :attr:`Client.jobs`.

    Example::

        job = await client.jobs.start(image=RemoteImage.parse("ubuntu"), preset_name="cpu-small",
                                      command="echo hi")
        async for chunk in client.jobs.monitor(job.id):
            print(chunk.decode(errors="replace"), end="")
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    # -- helpers -------------------------------------------------------------------------------

    async def _registry_hosts(self) -> dict[str, str]:
        """Platform registry host per cluster, to recognise platform images in job JSON."""
        try:
            config = await self._client.get_server_config()
        except NeuroError:
            return {}  # images are then shown as external references
        return {
            name: cluster.registry_host
            for name, cluster in config.clusters.items()
            if cluster.registry_host
        }

    @staticmethod
    def _parse(data: Any, registry_hosts: Mapping[str, str]) -> JobDescription:
        if not isinstance(data, Mapping):
            raise ProtocolError("A job description is not a JSON object")
        registry_host = registry_hosts.get(str(data.get("cluster_name", "")))
        return job_description_from_api(data, registry_host=registry_host)

    async def _image_ref(
        self, image: RemoteImage, cluster: str, org: str | None, project: str | None
    ) -> str:
        if not image.is_platform:
            return image.as_docker_url()
        if not image.cluster_name:
            # a relative platform image (``image:name``): the client's context applies
            image = dataclasses.replace(
                image,
                cluster_name=cluster,
                org_name=image.org_name or org,
                project_name=image.project_name or image.owner or project,
                owner=image.owner or image.project_name or project,
            )
        if not image.registry:
            registry = await self._client._registry_host(image.cluster_name)
            if not registry:
                raise ProtocolError(f"Cluster {image.cluster_name!r} has no registry_url")
            image = dataclasses.replace(image, registry=registry)
        return image.as_docker_url()

    # -- starting jobs -------------------------------------------------------------------------

    async def start(
        self,
        *,
        image: RemoteImage,
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
    ) -> JobDescription:
        """Start a job on a preset: ``POST /jobs?from_preset`` with the flat body."""
        cluster, org, project = await self._client._context()
        body = start_request_body(
            image_ref=await self._image_ref(image, cluster, org, project),
            preset_name=preset_name,
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
            shm=shm,
            name=name,
            tags=tags,
            description=description,
            pass_config=pass_config,
            wait_for_jobs_quota=wait_for_jobs_quota,
            schedule_timeout=schedule_timeout,
            restart_policy=restart_policy,
            life_span=life_span,
            privileged=privileged,
            cluster_name=cluster,
            org_name=org,
            project_name=project,
        )
        url = (self._client.url / "jobs").with_query("from_preset")
        data = await self._client._fetch_json("POST", url, json=body)
        return self._parse(data, await self._registry_hosts())

    async def run(
        self,
        container: Container,
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
        description: str | None = None,
        scheduler_enabled: bool = False,
        pass_config: bool = False,
        wait_for_jobs_quota: bool = False,
        schedule_timeout: float | None = None,
        life_span: float | None = None,
    ) -> JobDescription:
        """Start a job with explicit resources (deprecated: use :meth:`start`)."""
        warnings.warn(
            "Jobs.run() is deprecated, use Jobs.start() with a preset instead",
            DeprecationWarning,
            stacklevel=2,
        )
        cluster, org, project = await self._client._context()
        body = run_request_body(
            container,
            image_ref=await self._image_ref(container.image, cluster, org, project),
            name=name,
            tags=tags,
            description=description,
            scheduler_enabled=scheduler_enabled,
            pass_config=pass_config,
            wait_for_jobs_quota=wait_for_jobs_quota,
            schedule_timeout=schedule_timeout,
            life_span=life_span,
            cluster_name=cluster,
            org_name=org,
            project_name=project,
        )
        data = await self._client._fetch_json("POST", self._client.url / "jobs", json=body)
        return self._parse(data, await self._registry_hosts())

    # -- listing and inspecting ----------------------------------------------------------------

    def list(
        self,
        *,
        statuses: Iterable[JobStatus] = (),
        name: str | None = None,
        tags: Sequence[str] = (),
        owners: Iterable[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> AsyncStream[JobDescription]:
        """Jobs of the current cluster/org/project, streamed as the server sends them.

        Use ``async for job in client.jobs.list(...)``, or ``async with`` around it to close
        the stream early.  Naive *since*/*until* are local time.
        """
        return AsyncStream(
            self._list(
                statuses=tuple(statuses),
                name=name,
                tags=tuple(tags),
                owners=tuple(owners),
                since=since,
                until=until,
                reverse=reverse,
                limit=limit,
            )
        )

    async def _list(
        self,
        *,
        statuses: Sequence[JobStatus],
        name: str | None,
        tags: Sequence[str],
        owners: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        reverse: bool,
        limit: int | None,
    ) -> AsyncGenerator[JobDescription, None]:
        if limit is not None and limit <= 0:
            return
        cluster, org, project = await self._client._context()
        query = list_query(
            statuses=statuses,
            name=name,
            tags=tags,
            owners=owners,
            since=since,
            until=until,
            reverse=reverse,
            limit=limit,
            cluster_name=cluster,
            org_name=org,
            project_name=project,
        )
        registry_hosts = await self._registry_hosts()
        count = 0
        async with self._client._request(
            "GET", self._client.url / "jobs", params=query, headers={"Accept": NDJSON}
        ) as resp:
            if resp.content_type == NDJSON:
                async with contextlib.aclosing(_ndjson_lines(resp)) as lines:
                    async for line in lines:
                        if not line.strip():
                            continue
                        obj = _json_object(line)
                        if "error" in obj:
                            raise NDJSONError(str(obj["error"]))
                        yield self._parse(obj, registry_hosts)
                        count += 1
                        if limit is not None and count >= limit:
                            return
            else:
                body = _json_object(await resp.read())
                if not isinstance(body.get("jobs"), list):
                    raise ProtocolError('GET /jobs: expected {"jobs": [...]}')
                for item in body["jobs"]:
                    yield self._parse(item, registry_hosts)
                    count += 1
                    if limit is not None and count >= limit:
                        return

    async def status(self, id: str) -> JobDescription:
        """The job with this id: ``GET /jobs/{id}``."""
        data = await self._client._fetch_json("GET", self._client.url / "jobs" / id)
        return self._parse(data, await self._registry_hosts())

    async def tags(self) -> builtins.list[str]:
        """All tags the user has put on jobs: ``GET /tags``."""
        body = await self._client._fetch_json("GET", self._client.url / "tags")
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            raise ProtocolError('GET /tags: expected {"tags": [...]}')
        return [str(t) for t in body["tags"]]

    async def get_capacity(self) -> Mapping[str, int]:
        """How many jobs of each preset fit in the current cluster now: ``GET {MON}/capacity``."""
        url = await self._client._monitoring_url() / "capacity"
        body = await self._client._fetch_json("GET", url)
        if not isinstance(body, dict):
            raise ProtocolError("GET capacity: expected a JSON object")
        try:
            return {str(k): int(v) for k, v in body.items()}
        except (TypeError, ValueError) as e:
            raise ProtocolError(f"GET capacity: invalid count: {e}") from e

    # -- changing jobs -------------------------------------------------------------------------

    async def kill(self, id: str) -> None:
        """Kill a job: ``DELETE /jobs/{id}`` (204)."""
        async with self._client._request("DELETE", self._client.url / "jobs" / id):
            pass

    async def bump_life_span(self, id: str, additional_life_span: float) -> None:
        """Add *additional_life_span* seconds to the job's run-time limit."""
        url = self._client.url / "jobs" / id / "max_run_time_minutes"
        body = bump_life_span_body(additional_life_span)
        async with self._client._request("PUT", url, json=body):
            pass

    # -- streams -------------------------------------------------------------------------------

    def monitor(
        self,
        id: str,
        *,
        since: datetime | None = None,
        timestamps: bool = False,
        separator: str | None = None,
    ) -> AsyncStream[bytes]:
        """The job's output as bytes chunks, following it until the server closes the stream.

        Example::

            async with client.jobs.monitor(job_id) as chunks:
                async for chunk in chunks:
                    sys.stdout.buffer.write(chunk)
        """
        return AsyncStream(
            self._monitor(id, since=since, timestamps=timestamps, separator=separator)
        )

    async def _monitor(
        self,
        id: str,
        *,
        since: datetime | None,
        timestamps: bool,
        separator: str | None,
    ) -> AsyncGenerator[bytes, None]:
        url = await self._client._monitoring_url() / id / "log_ws"
        query = monitor_query(since=since, timestamps=timestamps, separator=separator)
        async with self._client._ws_connect(url, params=query) as ws:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    if msg.data:
                        yield msg.data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    raise ProtocolError(f"Unexpected text frame in the log stream: {msg.data!r}")
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    exc = ws.exception()
                    if isinstance(exc, (OSError, asyncio.TimeoutError, aiohttp.ClientError)):
                        raise ServerUnreachable(
                            f"Lost the log stream of {id}: {exc}", str(url)
                        ) from exc
                    raise ProtocolError(f"Log stream of {id} failed: {exc!r}") from exc
