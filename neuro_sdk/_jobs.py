"""The :class:`Jobs` subsystem: start, list, inspect, follow and stop jobs (protocol 2), and
talk to running jobs: attach, exec, resize, port forwarding, telemetry, signals (protocol 4)."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import json
import warnings
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from yarl import URL

from ._errors import (
    IllegalArgumentError,
    NDJSONError,
    NeuroError,
    ProtocolError,
    ServerUnreachable,
)
from ._images import RemoteImage
from ._models import (
    Container,
    DiskVolume,
    ExecInspect,
    HTTPPort,
    JobDescription,
    JobRestartPolicy,
    JobStatus,
    JobTelemetry,
    LifeSpanSignal,
    Message,
    SecretFile,
    Volume,
)
from ._parsing import (
    attach_query,
    bump_life_span_body,
    decode_output_frame,
    exec_create_body,
    exec_id_from_api,
    exec_id_from_frame,
    exec_inspect_from_api,
    exec_query,
    exec_resume_query,
    job_description_from_api,
    list_query,
    monitor_query,
    offset_from_frame,
    run_request_body,
    signal_query,
    size_query,
    start_request_body,
    telemetry_from_api,
)
from ._transport import _Timeout, lazy_import, lazy_logger
from ._utils import AsyncStream
from ._wire import (
    CHANNELS_PROTOCOL,
    CLOSE_STDIN_FRAME,
    LOG_OFFSET_PROTOCOL,
    OFFSET,
    Q_OFFSET,
    resize_frame,
    stdin_frame,
)

if TYPE_CHECKING:
    import asyncio
    import logging

    import aiohttp

    from ._client import Client
    from ._transport import Response
else:  # imported when first used: plain requests need neither (see _transport)
    asyncio = lazy_import("asyncio")
    aiohttp = lazy_import("aiohttp")

NDJSON = "application/x-ndjson"
MAX_LINE = 4 * 2**20
MAX_CHUNK = 4 * 2**20  # port forwarding: local reads of at most this many bytes per frame
MAX_STDIN_FRAME = 2**20  # stdin is sent in frames of at most this many bytes
OFFSET_FRAME_TIMEOUT = 5.0  # attach(offset=...): how long to wait for the server's offset frame

log: logging.Logger = lazy_logger(__name__)


async def _ndjson_lines(resp: Response) -> AsyncGenerator[bytes, None]:
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


def _ws_failure(ws: aiohttp.ClientWebSocketResponse, what: str, url: URL) -> NeuroError:
    """The error to raise for an ``ERROR`` message read from a websocket."""
    exc = ws.exception()
    if isinstance(exc, (OSError, asyncio.TimeoutError, aiohttp.ClientError)):
        error: NeuroError = ServerUnreachable(f"Lost {what}: {exc}", str(url.with_query(None)))
    else:
        error = ProtocolError(f"{what[:1].upper()}{what[1:]} failed: {exc!r}")
    error.__cause__ = exc
    return error


def _log_lost(
    ws: aiohttp.ClientWebSocketResponse, id: str, url: URL, msg: aiohttp.WSMessage
) -> ServerUnreachable:
    """A log stream that ended without the server's normal close (a dropped or reset
    connection, a broken frame, another close code) is not the end of the log: the caller
    reconnects and resumes by offset."""
    cause = None
    if msg.type == aiohttp.WSMsgType.CLOSE:
        how = f"the server closed it with code {msg.data}"
        if msg.extra:
            how += f" ({str(msg.extra)[:200]})"
    elif msg.type == aiohttp.WSMsgType.ERROR:
        cause = ws.exception() or msg.data
        how = f"{cause!s:.200}" if str(cause) else type(cause).__name__
    else:
        how = "the connection closed before the end of the log"
    error = ServerUnreachable(f"Lost the log stream of {id}: {how}", str(url.with_query(None)))
    if isinstance(cause, BaseException):
        error.__cause__ = cause
    return error


class StdStream:
    """The stdin/stdout/stderr of an attached job or an exec session.

    Given by :meth:`Jobs.attach`, :meth:`Jobs.exec` and :meth:`Jobs.exec_start`; read it from
    one task at a time, write to it from any.

    Example::

        async with client.jobs.exec(job_id, ["cat"], stdin=True) as stream:
            await stream.write_in(b"hello\n")
            await stream.close_stdin()
            while (msg := await stream.read_out()) is not None:
                sys.stdout.buffer.write(msg.data)
        print(stream.exit_code)
    """

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        legacy: bool = False,
        resizer: Callable[[int, int], Awaitable[None]] | None = None,
        url: URL | None = None,
    ) -> None:
        self._ws = ws
        self._legacy = legacy
        self._resizer = resizer
        self._url = url if url is not None else URL()
        self._closing = False
        self._pending: aiohttp.WSMessage | None = None
        # the exit code from the server's 0x03 frame (malformed: 1); None until then, and
        # always with the legacy framing (use Jobs.exec_inspect there)
        self.exit_code: int | None = None
        # extension: the byte of the job's output this attach stream started at (0x05 frame)
        self.offset: int | None = None
        # extension: the id of a resumable exec session (to resume it after a dropped link)
        self.exec_id: str | None = None

    async def _read_offset(self, timeout: float) -> None:
        """Read the offset frame the server sends first for ``attach(offset=...)``; any other
        first message (a server without the extension) is kept for :meth:`read_out`."""
        try:
            msg = await self._ws.receive(timeout=timeout)
        except asyncio.TimeoutError:
            return
        if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == bytes([OFFSET]):
            self.offset = offset_from_frame(msg.data[1:])
            self.exec_id = exec_id_from_frame(msg.data[1:])
        else:
            self._pending = msg

    async def read_out(self) -> Message | None:
        """The next chunk of stdout (``fileno=1``) or stderr (``fileno=2``); ``None`` at the end
        of the stream, after the exit code arrived, or after :meth:`close`."""
        while not self._closing:
            if self._pending is not None:
                msg, self._pending = self._pending, None
            else:
                msg = await self._ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not self._legacy and msg.data[:1] == bytes([OFFSET]):
                    self.offset = offset_from_frame(msg.data[1:])
                    self.exec_id = exec_id_from_frame(msg.data[1:])
                    continue
                item = decode_output_frame(msg.data, legacy=self._legacy)
                if item is None:
                    continue
                if isinstance(item, Message):
                    return item
                self.exit_code = item
                await self.close()
            elif msg.type == aiohttp.WSMsgType.TEXT:
                raise ProtocolError(f"Unexpected text frame in the job's output: {msg.data!r}")
            elif msg.type == aiohttp.WSMsgType.ERROR:
                raise _ws_failure(self._ws, "the connection to the job", self._url)
            else:  # CLOSE, CLOSING, CLOSED
                self._closing = True
        return None

    async def write_in(self, data: bytes) -> None:
        """Send *data* to the process's stdin; ConnectionResetError once the stream is closed."""
        if self._closing or self._ws.closed:
            raise ConnectionResetError("The stream is closed")
        data = bytes(data)
        for start in range(0, len(data), MAX_STDIN_FRAME):
            chunk = data[start : start + MAX_STDIN_FRAME]
            await self._ws.send_bytes(stdin_frame(chunk, legacy=self._legacy))

    async def resize(self, h: int, w: int) -> None:
        """Set the terminal size (TTY sessions): a ``0x04`` frame; with the legacy framing,
        ``POST exec_resize`` for a stream of :meth:`Jobs.exec_start`."""
        if self._legacy:
            if self._resizer is not None:
                await self._resizer(h, w)
            return
        if self._closing or self._ws.closed:
            raise ConnectionResetError("The stream is closed")
        await self._ws.send_bytes(resize_frame(h=h, w=w))

    async def close_stdin(self) -> None:
        """Signal the end of stdin: the frame ``0xff 0x00`` ("close channel 0"); the process
        then reads EOF.  A no-op with the legacy framing, which has no such signal."""
        if self._legacy or self._closing or self._ws.closed:
            return
        await self._ws.send_bytes(CLOSE_STDIN_FRAME)

    async def close(self) -> None:
        """Close the websocket (detach); :meth:`read_out` returns ``None`` from now on."""
        self._closing = True
        await self._ws.close()


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
        # the ETag of the last description of each job (for wait_change), by job id
        self._etags: dict[str, tuple[JobDescription, str]] = {}

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
        life_span_signal: LifeSpanSignal | None = None,
    ) -> JobDescription:
        """Start a job on a preset: ``POST /jobs?from_preset`` with the flat body.

        Our extension: with *life_span_signal* (and a *life_span*) the job gets that signal
        the given seconds before its life span ends, e.g. to checkpoint
        (``LifeSpanSignal("SIGUSR1", 300)``); the official platform ignores it."""
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
            life_span_signal=life_span_signal,
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
        return await self._get_status(id, {})

    async def wait_change(self, job: JobDescription, timeout: float) -> JobDescription | None:
        """Extension: ``job`` as it is once it differs from ``job`` (a description returned by
        :meth:`status`), or unchanged after ``timeout`` seconds: one long poll of
        ``GET /jobs/{id}`` with ``If-None-Match`` and ``Prefer: wait=N``.  None when the server
        does not long-poll (no ETag on its answers); then sleep and call :meth:`status`."""
        known = self._etags.get(job.id)
        if known is None or known[0] is not job:
            return None
        wait = max(0.0, min(timeout, 30.0))
        return await self._get_status(
            job.id,
            {"If-None-Match": known[1], "Prefer": f"wait={wait:g}"},
            unchanged=job,
            read_timeout=wait + 30.0,
        )

    async def _get_status(
        self,
        id: str,
        headers: dict[str, str],
        *,
        unchanged: JobDescription | None = None,
        read_timeout: float | None = None,
    ) -> JobDescription:
        url = self._client.url / "jobs" / id
        timeout = (
            None
            if read_timeout is None
            else _Timeout(total=None, sock_connect=30, sock_read=read_timeout)
        )
        async with self._client._request("GET", url, headers=headers, timeout=timeout) as resp:
            etag = resp.headers.get("ETag")
            if resp.status == 304 and unchanged is not None:
                return unchanged
            body = await resp.read()
        try:
            data = json.loads(body)
        except ValueError as e:
            raise ProtocolError(f"GET {url}: the response is not JSON") from e
        job = self._parse(data, await self._registry_hosts())
        if etag:
            self._etags.pop(id, None)
            while len(self._etags) >= 256:  # the oldest go: a bounded cache
                del self._etags[next(iter(self._etags))]
            self._etags[id] = (job, etag)
        return job

    async def browse_urls(self, id: str) -> tuple[URL, URL]:
        """Extension: the job's HTTP URL and a one-time link that logs a browser in to it
        (``POST /jobs/{id}/browse``)."""
        body = await self._client._fetch_json("POST", self._client.url / "jobs" / id / "browse")
        try:
            return URL(body["url"]), URL(body["login_url"])
        except (KeyError, TypeError) as e:
            raise ProtocolError("POST /jobs/{id}/browse: expected url and login_url") from e

    async def share(self, id: str, user: str, action: str = "read") -> None:
        """Extension: let ``user`` read, write or manage the job
        (``POST {API}/users/{user}/permissions``)."""
        body = [{"uri": f"job:{id}", "action": action}]
        async with self._client._request(
            "POST", self._client.url / "users" / user / "permissions", json=body
        ):
            pass

    async def shares(self, id: str) -> builtins.list[tuple[str, str]]:
        """Extension: who else may use the job, and how: (user, read|write|manage) pairs
        (``GET /jobs/{id}/shares``; its owner or a manager may ask)."""
        body = await self._client._fetch_json("GET", self._client.url / "jobs" / id / "shares")
        if not isinstance(body, builtins.list):
            raise ProtocolError("GET /jobs/{id}/shares: expected a list")
        return [(str(x["user"]), str(x["action"])) for x in body if isinstance(x, dict)]

    async def unshare(self, id: str, user: str) -> None:
        """Extension: take back what :meth:`share` gave ``user``."""
        url = self._client.url / "users" / user / "permissions"
        async with self._client._request("DELETE", url, params={"uri": f"job:{id}"}):
            pass

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
        offset: int = 0,
    ) -> AsyncStream[bytes]:
        """The job's output as bytes chunks, following it until the job is finished and its
        output drained.

        The server says so with a normal websocket close (1000); any other ending (the
        connection dropped or reset, no close frame, another close code) raises
        :class:`ServerUnreachable`, never ends the stream quietly: a follower resumes with
        ``offset`` = the bytes it already got (from a call with the same ``since`` and
        ``timestamps``) and sees each byte once.  A server of ours skips them itself (the
        ``offset`` extension, agreed in the handshake); from another one they are read and
        dropped here.

        Example::

            async with client.jobs.monitor(job_id) as chunks:
                async for chunk in chunks:
                    sys.stdout.buffer.write(chunk)
        """
        if offset < 0:
            raise ValueError(f"offset must not be negative: {offset}")
        return AsyncStream(
            self._monitor(
                id, since=since, timestamps=timestamps, separator=separator, offset=offset
            )
        )

    async def _monitor(
        self,
        id: str,
        *,
        since: datetime | None,
        timestamps: bool,
        separator: str | None,
        offset: int,
    ) -> AsyncGenerator[bytes, None]:
        url = await self._client._monitoring_url() / id / "log_ws"
        query = monitor_query(since=since, timestamps=timestamps, separator=separator)
        protocols: tuple[str, ...] = ()
        if offset:
            query.append((Q_OFFSET, str(offset)))
            protocols = (LOG_OFFSET_PROTOCOL,)
        async with self._client._ws_connect(url, params=query, protocols=protocols) as ws:
            skip = 0 if ws.protocol == LOG_OFFSET_PROTOCOL else offset
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    data = msg.data
                    if skip:
                        data, skip = data[skip:], max(0, skip - len(data))
                    if data:
                        yield data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    raise ProtocolError(f"Unexpected text frame in the log stream: {msg.data!r}")
                elif msg.type == aiohttp.WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.OK:
                    return  # the end of the log
                else:
                    raise _log_lost(ws, id, url, msg)

    def top(self, id: str) -> AsyncStream[JobTelemetry]:
        """Telemetry samples of a running job, about one a second, until it finishes.

        ``WS {MON}/{id}/top``; a socket closed before the first sample raises
        :class:`IllegalArgumentError` ("Job is not running").

        Example::

            async for data in client.jobs.top(job_id):
                print(data.cpu, data.memory)
        """
        return AsyncStream(self._top(id))

    async def _top(self, id: str) -> AsyncGenerator[JobTelemetry, None]:
        url = await self._client._monitoring_url() / id / "top"
        received = False
        async with self._client._ws_connect(url) as ws:
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    try:
                        data = json.loads(msg.data)
                    except ValueError as e:
                        raise ProtocolError(f"Invalid telemetry frame: {msg.data[:200]!r}") from e
                    received = True
                    yield telemetry_from_api(data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise _ws_failure(ws, f"the telemetry stream of {id}", url)
        if not received:
            raise IllegalArgumentError("Job is not running")

    # -- attach and exec -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def attach(
        self,
        id: str,
        *,
        stdin: bool = False,
        stdout: bool = False,
        stderr: bool = False,
        tty: bool = False,
        logs: bool = False,
        offset: int | Literal["end"] | None = None,
    ) -> AsyncIterator[StdStream]:
        """Connect to the stdio of a running job: ``WS {MON}/{id}/attach`` (protocol 4.1).

        Extensions: *tty* asks for a terminal session (then all output comes as stdout);
        *logs* makes the server replay the output so far first; *offset* (a byte count, or
        ``"end"`` for "from now") starts the output at that byte of the job's output, and the
        server's answer is :attr:`StdStream.offset` when the block starts (to resume after a
        lost connection).

        Example::

            async with client.jobs.attach(job_id, stdout=True, stderr=True) as stream:
                while (msg := await stream.read_out()) is not None:
                    print(msg.fileno, msg.data)
        """
        url = await self._client._monitoring_url() / id / "attach"
        query = attach_query(
            tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, logs=logs, offset=offset
        )
        async with self._client._ws_connect(
            url, params=query, protocols=(CHANNELS_PROTOCOL,)
        ) as ws:
            stream = StdStream(ws, url=url)
            if offset is not None:
                await stream._read_offset(OFFSET_FRAME_TIMEOUT)
            yield stream

    @contextlib.asynccontextmanager
    async def exec(
        self,
        id: str,
        cmd: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        resumable: bool = False,
        resume: str | None = None,
        offset: int = 0,
        size: tuple[int, int] | None = None,
    ) -> AsyncIterator[StdStream]:
        """Run *cmd* beside a running job over one websocket: ``WS {MON}/{id}/exec`` (extension,
        the 26.x generation; protocol 4.1).  *cmd* is joined with :func:`shlex.join` (a str is
        sent as it is) and split again by the server, without a shell.  The exit code arrives
        as :attr:`StdStream.exit_code`.

        Our server's extension: with *resumable* the command survives a dropped connection
        for a while, :attr:`StdStream.exec_id` names it, and ``resume=exec_id, offset=N``
        reconnects to its output from byte N on.  With *tty*, *size* (rows, columns) is the
        terminal's size from the command's start (extension; without it a TTY opens at 24x80
        until :meth:`StdStream.resize`).

        Example::

            async with client.jobs.exec(job_id, ["ls", "-l"]) as stream:
                while (msg := await stream.read_out()) is not None:
                    sys.stdout.buffer.write(msg.data)
            sys.exit(stream.exit_code if stream.exit_code is not None else 125)
        """
        url = await self._client._monitoring_url() / id / "exec"
        query = exec_query(cmd, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size)
        query += exec_resume_query(resumable=resumable, resume=resume, offset=offset)
        async with self._client._ws_connect(
            url, params=query, protocols=(CHANNELS_PROTOCOL,)
        ) as ws:
            stream = StdStream(ws, url=url)
            if resumable or resume is not None:
                await stream._read_offset(OFFSET_FRAME_TIMEOUT)
            yield stream

    async def exec_create(self, id: str, cmd: Sequence[str], *, tty: bool = False) -> str:
        """Create a (legacy) exec session: ``POST {MON}/{id}/exec_create``; returns its id."""
        url = await self._client._monitoring_url() / id / "exec_create"
        data = await self._client._fetch_json("POST", url, json=exec_create_body(cmd, tty=tty))
        return exec_id_from_api(data)

    @contextlib.asynccontextmanager
    async def exec_start(self, id: str, exec_id: str) -> AsyncIterator[StdStream]:
        """Start a session of :meth:`exec_create`: ``WS {MON}/{id}/{exec_id}/exec_start``.

        Legacy framing: no stdin prefix, no exit code frame (read it with
        :meth:`exec_inspect`); :meth:`StdStream.resize` calls :meth:`exec_resize`.
        """
        url = await self._client._monitoring_url() / id / exec_id / "exec_start"

        async def resizer(h: int, w: int) -> None:
            await self.exec_resize(id, exec_id, w=w, h=h)

        async with self._client._ws_connect(url) as ws:
            yield StdStream(ws, legacy=True, resizer=resizer, url=url)

    async def exec_inspect(self, id: str, exec_id: str) -> ExecInspect:
        """State of an exec session: ``GET {MON}/{id}/{exec_id}/exec_inspect``."""
        url = await self._client._monitoring_url() / id / exec_id / "exec_inspect"
        return exec_inspect_from_api(await self._client._fetch_json("GET", url))

    async def exec_resize(self, id: str, exec_id: str, *, w: int, h: int) -> None:
        """Resize the TTY of an exec session: ``POST {MON}/{id}/{exec_id}/exec_resize``."""
        url = await self._client._monitoring_url() / id / exec_id / "exec_resize"
        async with self._client._request("POST", url, params=size_query(w=w, h=h)):
            pass

    async def resize(self, id: str, *, w: int, h: int) -> None:
        """Resize the TTY of a job: ``POST {MON}/{id}/resize``."""
        url = await self._client._monitoring_url() / id / "resize"
        async with self._client._request("POST", url, params=size_query(w=w, h=h)):
            pass

    async def send_signal(self, id: str, signal: str | int) -> None:
        """Send a signal to a job: ``POST {MON}/{id}/kill?signal=...`` (204).

        *signal* is a name as the server knows it (``"USR1"``, ``"SIGUSR1"``) or a number
        (``9``, :data:`signal.SIGKILL`).
        """
        url = await self._client._monitoring_url() / id / "kill"
        async with self._client._request("POST", url, params=signal_query(signal)):
            pass

    # -- port forwarding -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def port_forward(
        self, id: str, local_port: int, job_port: int, *, no_key_check: bool = False
    ) -> AsyncIterator[int]:
        """Forward ``127.0.0.1:local_port`` to *job_port* of the job while the block runs.

        Every accepted connection gets its own ``WS {MON}/{id}/port_forward/{job_port}``;
        bytes go both ways until either side closes.  Errors inside one tunnel are logged, not
        raised.  *local_port* ``0`` picks a free port; the context value is the bound port.  A
        port in use raises ``OSError(errno.EADDRINUSE)``.  *no_key_check* is accepted for
        compatibility and ignored (it was for the SSH transport).

        Example::

            async with client.jobs.port_forward(job_id, 8080, 80) as port:
                ...  # http://127.0.0.1:{port} reaches port 80 of the job
        """
        if not 0 <= local_port <= 65535:
            raise ValueError(f"Invalid local port {local_port}: use 0-65535")
        if not 1 <= job_port <= 65535:
            raise ValueError(f"Invalid job port {job_port}: use 1-65535")
        url = await self._client._monitoring_url() / id / "port_forward" / str(job_port)
        tunnels: set[asyncio.Task[None]] = set()
        closing = False

        def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if closing:
                writer.close()
                return
            task = asyncio.create_task(self._tunnel(url, reader, writer))
            tunnels.add(task)
            task.add_done_callback(tunnels.discard)

        try:
            server = await asyncio.start_server(
                on_connect, "127.0.0.1", local_port, limit=MAX_CHUNK
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, f"local port {local_port} is already in use") from e
            raise
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            closing = True
            server.close()
            for task in builtins.list(tunnels):
                task.cancel()
            await asyncio.gather(*tunnels, return_exceptions=True)
            await server.wait_closed()

    async def _tunnel(
        self, url: URL, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One forwarded connection: local socket <-> websocket; errors are logged."""
        peer = writer.get_extra_info("peername")
        try:
            async with self._client._ws_connect(url) as ws:
                await _pump(ws, reader, writer, url)
        except (NeuroError, OSError, aiohttp.ClientError, asyncio.TimeoutError) as e:
            log.warning("Port forwarding of %s to %s failed: %s", peer, url, e)
        except Exception:
            log.exception("Port forwarding of %s to %s failed", peer, url)
        finally:
            writer.close()


async def _pump(
    ws: aiohttp.ClientWebSocketResponse,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    url: URL,
) -> None:
    """Copy bytes both ways until either side closes; raise what went wrong on either side."""

    async def local_to_ws() -> None:
        while data := await reader.read(MAX_CHUNK):
            await ws.send_bytes(data)

    async def ws_to_local() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == aiohttp.WSMsgType.TEXT:
                raise ProtocolError(f"Unexpected text frame in a port forwarding: {msg.data!r}")
            elif msg.type == aiohttp.WSMsgType.ERROR:
                raise _ws_failure(ws, "the port forwarding connection", url)

    tasks = [asyncio.create_task(local_to_ws()), asyncio.create_task(ws_to_local())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if task in done and isinstance(result, BaseException):
            raise result
