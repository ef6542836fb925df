"""The ``docker`` runtime: jobs run in containers of their image, through the Docker Engine API
(Docker, or Podman's compatible service), with aiodocker.

    rt = DockerRuntime("unix:///run/neuro-podman.sock", root=Path("/var/lib/neuro/jobs"))
    await rt.start(JobSpec("job-1", ["echo", "hi"], env={}, working_dir=None, cpu=0.5,
                           memory=1 << 30, image="localhost/busybox:latest"))
    async for chunk in rt.logs("job-1"): ...
    exit_info = await rt.wait("job-1")
    await rt.close()

Containers are named ``<prefix>-<instance>-<job id>`` and labelled ``<prefix>.job-id``,
``<prefix>.owner``, ``<prefix>.instance`` (a hash of this server's jobs directory) and
``<prefix>.data-dir``; the runtime never touches a container without its own instance label,
so two servers on one machine (or the tests beside a server) leave each other alone.
Containers outlive the server: a new DockerRuntime on the same ``root`` finds them (by the id
in the job's directory, checked by label; ``job_ids()`` lists them by label), ``inspect`` and
``wait`` work, and the output goes on where it stopped.  ``inspect`` is synchronous: it answers
from the job's files and its pump, and asks the engine (one blocking call on its socket) only
for a job it has not seen yet, as after a restart.

Each job has a directory ``root/<job id>/``: ``spec.json`` (what was asked, the container id),
``started.json``, ``exit.json`` (written once the output is complete), and the output in the
process runtime's format (``output.log``/``output.idx``), written by the job's pump
(docker_pump.py: the container's attach stream, or after a restart the engine's log resumed by
byte count), so logs, ``log_size`` and ``attach`` resume by byte offset as with the process
runtime.  ``cleanup`` removes the container once its output is complete; the directory stays.
While a job starts, ``volumes/`` there holds its storage volumes and disks pinned (mounts of the
directories opened with no link followed, which the engine binds: docker_volumes.py); they are
detached once the container runs.  Containers get a pids limit (``pids_limit``, 4096).

Starting may pull the image: ``phase(job_id)`` says what a start is doing, and
``on_progress(job_id, reason, description)`` (an attribute, None by default) is called as it
changes: ("Pulling", "Pulling image X: ...") then ("ContainerCreating", ...).  Reasons of
RuntimeError_ raised here: InvalidImageName, ErrImagePull, ContainerCannotRun, NotFound,
NotRunning, BadRequest, PortNotListening.

Ports are not published on the host: ``connect_port`` connects to the container's address on
its network (the engine's bridge, reachable from the host when the engine runs as root here).

Containers run with an init (``init=True``: docker-init, Podman's catatonit) as PID 1, which
passes signals on, so ``stop`` (SIGTERM, then SIGKILL after the grace) and ``signal`` work on a
``sleep`` as on a host; a command missing in the image is then the init's error, which the pump
turns into exit 127 (126: not executable) and ``ExitInfo.error``, as without an init.  An exit
137 is an OOM kill when the engine says so or, as Podman on cgroup v1 does not, when the kernel
log has an "oom-kill:" line for the container's memory cgroup (where /dev/kmsg cannot be read: a
job with a memory limit that we did not SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import shlex
import signal
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodocker.exceptions import DockerError

from . import cgroups, docker_relay, docker_volumes, telemetry
from . import docker_api as api
from .base import (
    ExitInfo,
    JobSpec,
    JobState,
    RuntimeError_,
    RuntimeInfo,
    StartInfo,
    State,
    StdioSession,
    Telemetry,
    exit_from_record,
    record_time,
    tty_size,
)
from .docker_exec import ExecSession
from .docker_pump import EXIT, LOST, SIGKILLED, AttachSession, Pump, phase_of
from .logfile import read_log
from .supervisor import iso_now, read_json, write_json

log = logging.getLogger(__name__)

SPEC = "spec.json"
STARTED = "started.json"
STOP = "stop.json"
DEFAULT_SHM = 64 << 20
DEFAULT_PIDS_LIMIT = 4096
INIT_READY = 0.2  # seconds after its start before a container's init surely passes signals on
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_LABEL_PREFIX = re.compile(r"[a-z0-9][a-z0-9.-]*")
_NOT_FOUND = re.compile(
    r'exec: "([^"]*)": (executable file not found in \$PATH|no such file or directory)',
    re.IGNORECASE,
)
# Podman's answer when a container's process ended while it read the process's cgroup
_EXITED_MEANWHILE = re.compile(r"/proc/\d+/cgroup\b.*no such (process|file)", re.IGNORECASE)
_INSPECT_TRIES = 10
_NO_PERMISSION = re.compile(r'exec: "([^"]*)": permission denied', re.IGNORECASE)
ProgressCallback = Callable[[str, str, str], None]


class DockerRuntime:
    def __init__(
        self,
        url: str,
        *,
        root: Path,
        label_prefix: str = "neuro",
        instance: str | None = None,
        cgroup_parent: str | None = None,
        network: str | None = None,
        init: bool = True,
        start_timeout: float = 60.0,
        poll_interval: float = 0.05,
        stats_interval: float = 0.25,
        nvml: Any = None,
        on_progress: ProgressCallback | None = None,
        port_connect: str = "auto",
        pids_limit: int = DEFAULT_PIDS_LIMIT,
    ) -> None:
        """``url``: the engine (``unix:///path`` or ``tcp://host:port``).  ``root``: the job
        directories (their output, exit records).  ``instance``: this server's label value
        (default: a hash of ``root``).  ``cgroup_parent``: HostConfig.CgroupParent (the
        engine's default when None).  ``network``: where containers join (docker_network.py:
        "per-user", "shared", a network's name, or None for the engine's default).  ``init``:
        run an init process as PID 1 (docker-init, Podman's catatonit) that passes signals
        on, so that a job's SIGTERM works as on a host.  ``start_timeout``: how long a start
        that left no trace (a server killed while starting) counts as still starting.
        ``pids_limit``: HostConfig.PidsLimit, the most processes and threads a container may
        have (0: the engine's default)."""
        if not _LABEL_PREFIX.fullmatch(label_prefix):
            raise ValueError(f"bad label prefix {label_prefix!r}")
        self.endpoint = api.Endpoint.parse(url)
        self.url = url
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # a server killed while it started a job left that job's volumes staged
        if os.geteuid() == 0:
            docker_volumes.unpin_stale(self.root)
        self.pids_limit = pids_limit
        self.label_prefix = label_prefix
        self.instance = (
            instance or hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        )
        self.cgroup_parent = cgroup_parent
        self.network = network
        from .docker_network import Networks

        self.networks = Networks(self.endpoint, network, label_prefix, self.instance,
                                 {self.label("instance"): self.instance,
                                  self.label("data-dir"): str(self.root)})
        self.init = init
        if port_connect not in ("auto", "address", "exec"):
            raise ValueError(f"port_connect must be auto, address or exec, not {port_connect!r}")
        self.port_connect = port_connect
        self.start_timeout = start_timeout
        self.poll_interval = poll_interval
        self.stats_interval = stats_interval
        self.on_progress = on_progress
        self.gpus = telemetry.Nvml(nvml)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._engine: dict[str, str] | None = None  # name, version
        self._pumps: dict[str, Pump] = {}
        self._pump_locks: dict[str, asyncio.Lock] = {}
        self._starting: set[str] = set()
        self._phase: dict[str, tuple[str, str]] = {}
        self._kicked: dict[str, float] = {}
        self._cpu_samples: dict[str, tuple[Any, float, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- names -------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise RuntimeError_(f"bad job id {job_id!r}", reason="NotFound")
        return self.root / job_id

    def container_name(self, job_id: str) -> str:
        return f"{self.label_prefix}-{self.instance}-{job_id}"

    def label(self, key: str) -> str:
        return f"{self.label_prefix}.{key}"

    def _ours(self, info: Mapping[str, Any] | None, job_id: str | None = None) -> bool:
        labels = ((info or {}).get("Config") or {}).get("Labels") or (info or {}).get("Labels")
        if not isinstance(labels, dict) or labels.get(self.label("instance")) != self.instance:
            return False
        return job_id is None or labels.get(self.label("job-id")) == job_id

    def starting(self, job_id: str) -> bool:
        return job_id in self._starting

    def phase(self, job_id: str) -> tuple[str, str] | None:
        """What a start under way does now: ("Pulling", "Pulling image ...: ...") or
        ("ContainerCreating", ...); None when no start is under way."""
        return self._phase.get(job_id)

    def _set_phase(self, job_id: str, reason: str, description: str) -> None:
        if self._phase.get(job_id) == (reason, description):
            return
        self._phase[job_id] = (reason, description)
        if self.on_progress is not None:
            try:
                self.on_progress(job_id, reason, description)
            except Exception:
                log.exception("on_progress for %s", job_id)

    # -- the engine --------------------------------------------------------------------------

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
        """Stop following jobs (they go on) and close the engine connections."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        pumps = list(self._pumps.values())
        self._pumps.clear()
        for pump in pumps:
            await pump.close()
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
        info = await self._show(container_id)
        return info if info is not None and self._ours(info) else None

    async def _show(self, ref: str) -> dict[str, Any] | None:
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

    def _engine_info(self) -> dict[str, str]:
        if self._engine is None:
            try:
                headers = api.ping_blocking(self.endpoint, 3.0)
            except api.EngineError:
                return {"name": "container engine", "version": "", "reachable": ""}
            self._engine = _engine_from_ping(headers)
        return self._engine

    async def _engine_info_async(self) -> dict[str, str]:
        if self._engine is None:
            resp = await api.request(self.endpoint, "GET", "/_ping")
            await resp.aclose()
            self._engine = _engine_from_ping(resp.headers)
        return self._engine

    def info(self) -> RuntimeInfo:
        engine = self._engine_info()
        by = f"the container engine ({engine['name']})"
        where = f"{engine['name']} {engine['version']}".strip()
        note = f"jobs run in containers of their image ({where} at {self.url})"
        if not engine.get("reachable"):
            note = (
                f"jobs run in containers of their image; the engine at {self.url} does not answer"
            )
        why = docker_volumes.why_unsupported()
        volumes = (f"secret files only ({why})" if why else
                   "bound into the job's container (storage volumes and disks pinned: opened "
                   "with no link followed, bound from a staging mount of the server's)")
        return RuntimeInfo(name="docker", image_used=True, limits=cgroups.describe(by, by),
                           note=note, volumes=volumes)

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

    # -- start -------------------------------------------------------------------------------

    async def start(self, spec: JobSpec) -> StartInfo:
        job_id = spec.job_id
        d = self.job_dir(job_id)
        if job_id in self._starting or self.inspect(job_id).state is State.RUNNING:
            raise RuntimeError_(f"job {job_id} is already running")
        problem = api.image_name_error(spec.image)
        if problem:
            raise RuntimeError_(problem, reason="InvalidImageName")
        self._starting.add(job_id)
        self._set_phase(job_id, "ContainerCreating", f"Preparing to run {spec.image}")
        started = False
        try:
            old = self._pumps.get(job_id)
            if old is not None:  # a run before this one: its output must be complete first
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(old.done)
                self._pumps.pop(job_id, None)
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)  # spec.json and the secret files are the job owner's business
            for name in (EXIT, LOST, STARTED, STOP, SIGKILLED):  # an earlier run's
                (d / name).unlink(missing_ok=True)
            record = _spec_record(spec)
            write_json(str(d / SPEC), record)
            await self._engine_info_async()
            await self._ensure_image(job_id, spec.image)
            self._set_phase(job_id, "ContainerCreating", "Creating the job's container")
            await self._remove_old_container(job_id)
            binds = self._secret_files(d, spec) + self._pin_volumes(d, spec)
            config = self._container_config(spec, binds)
            engine = (await self._engine_info_async())["name"]
            network, names = await self.networks.ensure(spec.owner, engine)
            named = network is not None and names  # other jobs find it by id and name
            if network is not None:
                config["HostConfig"]["NetworkMode"] = network
                if named:
                    config["Hostname"] = spec.job_id
                    config["NetworkingConfig"] = self.networks.endpoint_config(
                        network, spec.job_id, spec.hostname)
            docker = await self.client()
            try:
                try:
                    container = await docker.containers.create(
                        config, name=self.container_name(job_id))
                except DockerError as e:
                    # the network we made went away meanwhile (a prune): make it again, once
                    gone = re.search(r"network\b.*\bnot found", str(e.message), re.IGNORECASE)
                    if network is None or not gone or not self.networks.forget(network):
                        raise
                    network, _names = await self.networks.ensure(spec.owner, engine)
                    container = await docker.containers.create(
                        config, name=self.container_name(job_id))
            except DockerError as e:
                raise _create_error(job_id, spec.image, e) from e
            cid = str(container.id)
            record["container_id"] = cid
            write_json(str(d / SPEC), record)
            limits = self._limits(spec)
            try:
                stream = await self.attach_stream(cid, tty=spec.tty, stdin=spec.tty)
            except api.EngineError as e:
                # Podman prepares the container to attach: a command that cannot run shows here
                code, error = _cannot_run(e.message)
                if not code:
                    await self._remove_container(cid)
                    raise RuntimeError_(f"cannot attach to the job's container: {e.message}") from e
                base = (self.log_size(job_id), _records(d))
                _record_cannot_run(d, cid, base, code, error)
                started = True
                return StartInfo(started_at=datetime.now(UTC), limits=limits)
            pump = Pump(self, job_id, str(d), cid, tty=spec.tty, attach=stream)
            self._pumps[job_id] = pump
            if spec.tty:  # the terminal's size before it starts (Podman keeps it for the start)
                with contextlib.suppress(DockerError):
                    await container.resize(h=24, w=80)
            try:
                await container.start()
            except DockerError as e:
                # it may have started, and ended, before the engine answered the start (a race
                # in Podman with commands that exit at once): then it is a run like any other
                if not await self._ran_anyway(cid):
                    await self._start_failed(job_id, d, cid, pump, e)
                    started = True
                    return StartInfo(started_at=datetime.now(UTC), limits=limits)
            started = True
            info = await self.container_info(cid) or {}
            started_at = api.parse_time((info.get("State") or {}).get("StartedAt")) or time.time()
            write_json(
                str(d / STARTED),
                {"started_at": iso_now(started_at), "limits": limits, "container_id": cid},
            )
            if spec.tty:
                with contextlib.suppress(DockerError):  # Docker: a created container has no tty yet
                    await container.resize(h=24, w=80)
            stop = read_json(str(d / STOP))
            if stop is not None:  # stopped while starting
                await self._stop_now(job_id, cid, float(stop.get("grace", 0)))
            hosts = _addresses(info)
            return StartInfo(started_at=datetime.fromtimestamp(started_at, UTC), limits=limits,
                             address=spec.job_id if named else hosts[0] if hosts else "",
                             hostname=spec.hostname if named else "")
        except RuntimeError_:
            raise
        except (api.EngineError, DockerError) as e:
            raise RuntimeError_(f"job {job_id}: {e.message}") from e
        except OSError as e:
            raise RuntimeError_(f"cannot reach the container engine at {self.url}: {e}") from e
        finally:
            # the container has its own copies of the volumes once started; else none is needed
            docker_volumes.unpin(d / docker_volumes.STAGING)
            if not started:
                (d / SPEC).unlink(missing_ok=True)  # nothing ran: logs and inspect say so
                self._abandon(job_id)
            self._starting.discard(job_id)
            self._phase.pop(job_id, None)

    async def _ran_anyway(self, cid: str) -> bool:
        """Whether a container whose start the engine refused has in fact run its command."""
        info = await self.container_info(cid) or {}
        state = info.get("State") or {}
        return (api.parse_time(state.get("StartedAt")) is not None and not state.get("Error")
                and str(state.get("Status", "")).lower() in ("running", "exited", "stopped"))

    async def _start_failed(self, job_id: str, d: Path, cid: str, pump: Pump,
                            e: DockerError) -> None:
        """A refused start: the command cannot run (it "ran" and failed with 127/126, as on a
        host; what the attach brought meanwhile is the engine's error, not output), else
        RuntimeError_."""
        code, error = _cannot_run(str(e.message))
        await pump.close()
        self._pumps.pop(job_id, None)
        if not code:
            await self._remove_container(cid)
            raise RuntimeError_(f"the job's container could not start: {e.message}") from e
        _record_cannot_run(d, cid, pump.base, code, error)

    def _abandon(self, job_id: str) -> None:
        """A start that failed or was cancelled half way: its pump and container go (in the
        background: this may run while the start is being cancelled)."""
        pump = self._pumps.pop(job_id, None)
        if pump is None or pump.finished:
            return

        async def drop() -> None:
            await pump.close()
            await self._remove_container(pump.cid)

        task = asyncio.get_running_loop().create_task(drop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ensure_image(self, job_id: str, image: str) -> None:
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
        self._set_phase(job_id, "Pulling", f"Pulling image {image}")
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
                    self._set_phase(job_id, "Pulling", f"Pulling image {image}: {status}")
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

    async def _remove_old_container(self, job_id: str) -> None:
        """An earlier run's container of this job (ours, not running) goes; anyone else's
        container of that name is an error."""
        name = self.container_name(job_id)
        info = await self._show(name)
        if info is None:
            return
        if not self._ours(info, job_id):
            raise RuntimeError_(f"a container named {name} exists and is not this server's")
        if phase_of(info) == "running":
            raise RuntimeError_(f"job {job_id} is already running")
        await self._remove_container(str(info["Id"]))

    async def _remove_container(self, container_id: str) -> None:
        docker = await self.client()
        with contextlib.suppress(DockerError):
            await docker.containers.container(container_id).delete(force=1, v=1)

    @staticmethod
    def _secret_files(d: Path, spec: JobSpec) -> list[str]:
        """Write the job's secret files (owner-only) under its directory; their read-only
        bind mounts."""
        binds = []
        folder = d / "secrets"
        if spec.files:
            folder.mkdir(mode=0o700, exist_ok=True)
        for i, (path, content) in enumerate(spec.files):
            host = folder / str(i)
            host.unlink(missing_ok=True)
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            binds.append(f"{host}:{path}:ro")
        return binds

    @staticmethod
    def _pin_volumes(d: Path, spec: JobSpec) -> list[str]:
        """The volumes' bind mounts: each pinned where the server checked it (docker_volumes:
        the engine gets a staging path of the server's, never a path in a user's tree)."""
        try:
            return docker_volumes.pin(d / docker_volumes.STAGING, spec.mounts)
        except OSError as e:
            raise RuntimeError_(f"cannot place the job's volumes: {e}") from None

    def _container_config(self, spec: JobSpec, binds: list[str] | None = None) -> dict[str, Any]:
        host: dict[str, Any] = {
            "Init": self.init,
            "Privileged": bool(spec.privileged),
            "ShmSize": _shm_size(spec),
        }
        if self.pids_limit > 0:  # a fork bomb stops at it, not at the host's process table
            host["PidsLimit"] = self.pids_limit
        if binds:
            host["Binds"] = binds
        if spec.memory > 0:
            host["Memory"] = int(spec.memory)
            host["MemorySwap"] = int(spec.memory)  # no swap beyond the limit
        if spec.cpu > 0:
            host["NanoCpus"] = round(spec.cpu * 1e9)
        gpus = int(getattr(spec, "gpus", 0) or 0)
        if gpus > 0:
            request: dict[str, Any] = {"Driver": "", "Count": gpus, "Capabilities": [["gpu"]]}
            if spec.gpu_ids:  # the devices the scheduler assigned, not any N
                request.update(Count=0, DeviceIDs=[str(i) for i in spec.gpu_ids])
            host["DeviceRequests"] = [request]
        if self.cgroup_parent:
            host["CgroupParent"] = self.cgroup_parent
        config: dict[str, Any] = {
            "Image": spec.image,
            "Env": [f"{k}={v}" for k, v in spec.env.items()],
            "Labels": {
                self.label("job-id"): spec.job_id,
                self.label("owner"): spec.owner,
                self.label("instance"): self.instance,
                self.label("data-dir"): str(self.root),
            },
            "Tty": spec.tty,
            "OpenStdin": spec.tty,  # only TTY jobs keep a stdin (as the platform does)
            "StdinOnce": False,
            "AttachStdin": spec.tty,
            "AttachStdout": True,
            "AttachStderr": True,
            "HostConfig": host,
        }
        entrypoint, command = _entrypoint_and_command(spec)
        if entrypoint is not None:
            config["Entrypoint"] = entrypoint
        if command is not None:
            config["Cmd"] = command
        if spec.working_dir:
            config["WorkingDir"] = spec.working_dir
        return config

    def _limits(self, spec: JobSpec) -> str:
        by = f"the container engine ({self._engine_info()['name']})"
        return cgroups.describe(by, by, int(spec.memory), float(spec.cpu))

    # -- control -----------------------------------------------------------------------------

    def _container_id(self, job_id: str) -> str | None:
        spec = read_json(str(self.job_dir(job_id) / SPEC)) or {}
        cid = spec.get("container_id")
        return str(cid) if cid else None

    async def stop(self, job_id: str, *, grace: float) -> None:
        d = self.job_dir(job_id)
        if not (d / SPEC).exists() or (d / EXIT).exists():
            return
        # a start under way finds stop.json once the container runs, and stops it then
        write_json(str(d / STOP), {"grace": grace, "requested_at": iso_now()})
        cid = self._container_id(job_id)
        if cid is None or (job_id in self._starting and not (d / STARTED).exists()):
            return
        await self._stop_now(job_id, cid, grace)

    async def _stop_now(self, job_id: str, cid: str, grace: float) -> None:
        deadline = time.time() + max(0.0, grace)
        started = record_time(read_json(str(self.job_dir(job_id) / STARTED)), "started_at")
        if started is not None:
            # a container that has just started: its init may not pass signals on yet (a
            # SIGTERM then would be lost, and the job killed at the end of the grace)
            young = INIT_READY - (time.time() - started.timestamp())
            if young > 0:
                await asyncio.sleep(young)
        try:
            await self.kill_container(cid, "SIGTERM")
        except api.EngineError as e:
            log.warning("stop %s: %s", job_id, e)
        pump = await self._ensure_pump(job_id)
        if pump is not None:
            pump.kill_at(deadline)

    async def suspend(self, job_id: str) -> None:
        """Pause the container (the engine's freezer): memory kept, no CPU."""
        await self._pause(job_id, "pause")

    async def resume(self, job_id: str) -> None:
        await self._pause(job_id, "unpause")

    async def _pause(self, job_id: str, what: str) -> None:
        self.job_dir(job_id)
        cid = self._container_id(job_id)
        if cid is None or self.inspect(job_id).state is not State.RUNNING:
            return
        docker = await self.client()
        try:
            await getattr(docker.containers.container(cid), what)()
        except DockerError as e:
            raise RuntimeError_(f"job {job_id}: cannot {what} it: {e.message}") from e

    async def signal(self, job_id: str, signum: int, *, group: bool = True) -> None:
        """Signal the job's main process (the container's init passes it on to the command);
        ``group`` makes no difference here.  Nothing happens when the job does not run."""
        self.job_dir(job_id)
        if isinstance(signum, bool) or not isinstance(signum, int) or not 0 < signum < signal.NSIG:
            raise RuntimeError_(f"bad signal number {signum!r}", reason="BadRequest")
        if self.inspect(job_id).state is not State.RUNNING:
            return
        cid = self._container_id(job_id)
        if cid is None:
            return
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        if signum == signal.SIGKILL:
            write_json(str(self.job_dir(job_id) / SIGKILLED), {"at": iso_now()})
        try:
            await self.kill_container(cid, name)
        except api.EngineError as e:
            raise RuntimeError_(f"job {job_id}: cannot signal it: {e.message}") from e

    # -- state -------------------------------------------------------------------------------

    def inspect(self, job_id: str) -> JobState:
        """From the job's files and its pump; when neither knows (a job from before a server
        restart), one blocking call to the engine."""
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return JobState(State.NOT_FOUND)
        exit_record = read_json(str(d / EXIT))
        if exit_record is not None:
            return _exited(exit_record)
        if (d / LOST).exists() or job_id in self._starting:
            return JobState(State.NOT_FOUND)
        started = read_json(str(d / STARTED))
        pump = self._pumps.get(job_id)
        if pump is not None and not pump.finished:
            return JobState(State.RUNNING, started_at=record_time(started, "started_at"))
        spec = read_json(str(d / SPEC))
        cid = (spec or {}).get("container_id")
        if not cid:
            return JobState(State.NOT_FOUND)
        try:
            status, info = api.get_json_blocking(
                self.endpoint, api.path("/containers/{}/json", cid)
            )
        except api.EngineError:
            status, info = 0, None
        if status == 0 or status >= 500:
            # the engine does not answer, or fails (Podman's inspect of a process that ends
            # meanwhile): a job that ran still runs, as far as we know
            if started is not None:
                return JobState(State.RUNNING, started_at=record_time(started, "started_at"))
            return JobState(State.NOT_FOUND)
        if status == 404 or not self._ours(info, job_id):
            return JobState(State.NOT_FOUND)
        state = (info or {}).get("State") or {}
        started_at = api.parse_time(state.get("StartedAt"))
        started_dt = datetime.fromtimestamp(started_at, UTC) if started_at else None
        phase = phase_of(info)
        if phase == "running":
            self._kick(job_id)
            return JobState(State.RUNNING, started_at=started_dt or record_time(started, "started_at"))
        if phase == "exited":
            self._kick(job_id)  # its pump drains the output and writes exit.json
            code = int(state.get("ExitCode") or 0)
            oom = bool(state.get("OOMKilled")) or (
                code == 137 and self._oom_evidence_blocking(job_id, str(cid))
            )
            finished = api.parse_time(state.get("FinishedAt")) or time.time()
            ex = ExitInfo(code, datetime.fromtimestamp(finished, UTC), oom_killed=oom)
            return JobState(State.EXITED, started_at=started_dt, exit=ex)
        return JobState(State.NOT_FOUND)  # created and never started

    def _kick(self, job_id: str) -> None:
        """Start the job's pump soon (from synchronous code inside the event loop)."""
        if job_id in self._pumps or self._closed:
            return
        now = time.monotonic()
        if now - self._kicked.get(job_id, 0.0) < 1.0:
            return
        self._kicked[job_id] = now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._ensure_pump_quietly(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ensure_pump_quietly(self, job_id: str) -> None:
        try:
            await self._ensure_pump(job_id)
        except (api.EngineError, RuntimeError_, OSError) as e:
            log.debug("job %s: %s", job_id, e)

    async def _ensure_pump(self, job_id: str) -> Pump | None:
        """The job's pump, made for a job found running or exited with output to drain."""
        pump = self._pumps.get(job_id)
        if pump is not None:
            return pump
        if self._closed:
            return None
        lock = self._pump_locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            pump = self._pumps.get(job_id)
            if pump is not None:
                return pump
            d = self.job_dir(job_id)
            if (d / EXIT).exists() or (d / LOST).exists() or job_id in self._starting:
                return None
            spec = read_json(str(d / SPEC)) or {}
            cid = spec.get("container_id")
            if not cid:
                return None
            info = await self.container_info(str(cid))
            if info is None:
                if (d / STARTED).exists():
                    write_json(str(d / LOST), {"container_id": cid, "why": "its container is gone"})
                return None
            if phase_of(info) == "created":
                return None
            if not (d / STARTED).exists():
                started_at = api.parse_time((info.get("State") or {}).get("StartedAt"))
                write_json(
                    str(d / STARTED), {"started_at": iso_now(started_at), "container_id": cid}
                )
            pump = Pump(self, job_id, str(d), str(cid), tty=bool(spec.get("tty")))
            self._pumps[job_id] = pump
            stop = read_json(str(d / STOP))
            if stop is not None:
                requested = record_time(stop, "requested_at")
                t0 = requested.timestamp() if requested else time.time()
                pump.kill_at(t0 + float(stop.get("grace") or 0))
            return pump

    async def wait(self, job_id: str) -> ExitInfo:
        d = self.job_dir(job_id)
        while True:
            exit_record = read_json(str(d / EXIT))
            if exit_record is not None:
                return exit_from_record(exit_record)
            if self._closed:
                raise RuntimeError_("the runtime is closed", reason="NotFound")
            if (d / LOST).exists():
                raise RuntimeError_(
                    f"job {job_id} was lost: its container is gone", reason="NotFound"
                )
            if job_id in self._starting:
                await asyncio.sleep(self.poll_interval)
                continue
            try:
                pump = await self._ensure_pump(job_id)
            except api.EngineError as e:
                log.warning("wait %s: %s (retrying)", job_id, e)
                await asyncio.sleep(1.0)
                continue
            if pump is None:
                if (d / EXIT).exists():
                    continue
                raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
            try:
                await asyncio.shield(pump.done)
            except asyncio.CancelledError:
                if not pump.done.cancelled():
                    raise  # we were cancelled
            if pump.lost and not (d / EXIT).exists():
                raise RuntimeError_(
                    f"job {job_id} was lost: its container is gone", reason="NotFound"
                )
            if self._pumps.get(job_id) is pump and pump.finished:
                self._pumps.pop(job_id, None)

    def logs(
        self,
        job_id: str,
        *,
        since: datetime | None = None,
        timestamps: bool = False,
        follow: bool = True,
    ) -> AsyncIterator[bytes]:
        d = self.job_dir(job_id)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)

        async def gen() -> AsyncIterator[bytes]:
            if follow:
                self._kick(job_id)
            async for chunk in read_log(
                str(d),
                since=None if since is None else since.timestamp(),
                timestamps=timestamps,
                follow=follow,
                finished=lambda: self._finished(job_id, d),
                poll=self.poll_interval,
            ):
                yield chunk

        return gen()

    def _finished(self, job_id: str, d: Path) -> bool:
        """For logs: no more output will come."""
        if (d / EXIT).exists() or (d / LOST).exists():
            return True
        if not d.is_dir():
            return False  # logs waits for a job that is about to start
        if job_id in self._starting:
            return False
        pump = self._pumps.get(job_id)
        if pump is not None:
            return False  # it writes exit.json or lost.json when it is done
        try:
            age = time.time() - (d / SPEC).stat().st_mtime
        except OSError:
            return True  # no job (or one that could not start)
        if not (d / STARTED).exists() and age > self.start_timeout:
            return True  # a start that a killed server left half done
        self._kick(job_id)
        return False

    def log_size(self, job_id: str) -> int:
        """Bytes in output.log so far (0 when none): an offset for ``attach`` with ``logs``."""
        try:
            return (self.job_dir(job_id) / "output.log").stat().st_size
        except (OSError, RuntimeError_):
            return 0

    async def cleanup(self, job_id: str) -> None:
        """Once the job ended and its output is complete: remove its container (the job
        directory, with its output and exit record, stays).  Nothing happens while it runs."""
        d = self.job_dir(job_id)
        if job_id in self._starting:
            return
        pump = self._pumps.get(job_id)
        if pump is None and not (d / EXIT).exists() and not (d / LOST).exists():
            with contextlib.suppress(api.EngineError, RuntimeError_, OSError):
                pump = await self._ensure_pump(job_id)
            if pump is None and self.inspect(job_id).state is State.RUNNING:
                return
        if pump is not None and not pump.finished:
            info = await self.container_info(pump.cid)
            if info is not None and phase_of(info) == "running":
                return  # still running
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(pump.done)  # the output is complete first
        if pump is not None and pump.finished and self._pumps.get(job_id) is pump:
            self._pumps.pop(job_id, None)
        cid = self._container_id(job_id)
        if cid and ((d / EXIT).exists() or (d / LOST).exists()):
            info = await self.container_info(cid)
            if info is not None and phase_of(info) != "running":
                await self._remove_container(cid)
        (d / STOP).unlink(missing_ok=True)
        docker_volumes.unpin(d / docker_volumes.STAGING)  # (start unpins; a cancelled one may not)
        self._cpu_samples.pop(job_id, None)

    # -- OOM ---------------------------------------------------------------------------------

    async def oom_evidence(self, job_id: str, container_id: str) -> bool:
        return await asyncio.to_thread(self._oom_evidence_blocking, job_id, container_id)

    def _oom_evidence_blocking(self, job_id: str, container_id: str) -> bool:
        """Exit 137: was it the memory limit?  Engines do not always say (Podman's OOMKilled
        stays false on cgroup v1): the kernel log names the container's memory cgroup in its
        "oom-kill:" line.  Where the kernel log cannot be read: a job with a memory limit that
        we did not SIGKILL ourselves."""
        found = kmsg_oom(container_id)
        if found is not None:
            return found
        d = self.job_dir(job_id)
        spec = read_json(str(d / SPEC)) or {}
        return int(spec.get("memory") or 0) > 0 and not (d / SIGKILLED).exists()

    # -- interactive -------------------------------------------------------------------------

    async def _running(self, job_id: str) -> tuple[Path, str]:
        d = self.job_dir(job_id)
        state = self.inspect(job_id).state
        if state is State.NOT_FOUND and not (d / SPEC).exists():
            raise RuntimeError_(f"no job {job_id} here", reason="NotFound")
        if state is not State.RUNNING:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        cid = self._container_id(job_id)
        if cid is None:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return d, cid

    async def attach(
        self, job_id: str, *, stdin: bool, stdout: bool, stderr: bool, logs: bool = False
    ) -> StdioSession:
        d, _cid = await self._running(job_id)
        tty = bool((read_json(str(d / SPEC)) or {}).get("tty"))
        if stdin and not tty:
            raise RuntimeError_(
                f"job {job_id} was not started with a tty: its stdin cannot be attached",
                reason="BadRequest",
            )
        pump = await self._ensure_pump(job_id)
        if pump is None or pump.finished:
            raise RuntimeError_(f"job {job_id} is not running", reason="NotRunning")
        return AttachSession(
            pump,
            stdout=stdout,
            stderr=stderr,
            stdin=stdin,
            logs=logs,
            resize=lambda h, w: self.resize(job_id, h, w),
        )

    async def exec(
        self,
        job_id: str,
        argv: Sequence[str],
        *,
        tty: bool,
        stdin: bool,
        env: Mapping[str, str] | None = None,
        size: tuple[int, int] | None = None,
    ) -> StdioSession:
        """Run ``argv`` in the job's container (on a TTY of ``size``).  A command that cannot
        start still gives a session: its output says why (the engine's words) and ``wait()``
        gives 127 (not found) or 126 (not executable)."""
        at = tty_size(size)
        _d, cid = await self._running(job_id)
        return await ExecSession.open(self, job_id, cid, argv, tty=tty, stdin=stdin, env=env,
                                      size=at)

    async def resize(self, job_id: str, height: int, width: int) -> None:
        """Resize the job's TTY (its processes get SIGWINCH); a no-op for a job without one."""
        d, cid = await self._running(job_id)
        if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
            raise RuntimeError_(f"bad terminal size {height}x{width}", reason="BadRequest")
        if not (read_json(str(d / SPEC)) or {}).get("tty"):
            return
        docker = await self.client()
        try:
            await docker.containers.container(cid).resize(h=height, w=width)
        except DockerError as e:
            raise self.runtime_error(job_id, e) from e

    async def connect_port(self, job_id: str, port: int) -> tuple[Any, Any]:
        """A TCP connection to ``port`` in the job's container, without publishing it on the
        host: to the container's address on its network; where that cannot be reached (a
        rootless engine; ``port_connect = "auto"``), or always with ``"exec"``, through a relay
        command exec'd in the container (docker_relay.py)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuntimeError_(f"bad port {port!r}: ports are 1-65535", reason="BadRequest")
        _d, cid = await self._running(job_id)
        if self.port_connect == "exec":
            return await docker_relay.connect(self, job_id, port)
        info = await self.container_info(cid) or {}
        hosts = _addresses(info)
        error: BaseException | None = None
        for host in hosts:
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
            except (OSError, TimeoutError) as e:
                error = error or e
                if isinstance(e, OSError) and e.errno == errno.ECONNREFUSED:
                    raise RuntimeError_(
                        f"nothing listens on port {port} in job {job_id} ({e})",
                        reason="PortNotListening") from None
        if self.port_connect == "auto":  # no address, or one this host cannot reach
            return await docker_relay.connect(self, job_id, port)
        raise RuntimeError_(
            f"nothing listens on port {port} in job {job_id} ({error or 'no address'})",
            reason="PortNotListening",
        )

    # -- telemetry ---------------------------------------------------------------------------

    async def stats(self, job_id: str) -> Telemetry | None:
        """CPU cores used since the previous call (the first call measures over
        ``stats_interval``), memory without page cache, and GPU use where the job has GPUs."""
        try:
            self.job_dir(job_id)
        except RuntimeError_:
            return None
        if self.inspect(job_id).state is not State.RUNNING:
            self._cpu_samples.pop(job_id, None)
            return None
        cid = self._container_id(job_id)
        if cid is None:
            return None
        sample = await self._sample(cid)
        if sample is None:
            return None
        now, cpu_ns, memory, pid = sample
        run = (cid, pid)
        previous = self._cpu_samples.get(job_id)
        if previous is None or previous[0] != run:
            await asyncio.sleep(self.stats_interval)
            first = (now, cpu_ns)
            sample = await self._sample(cid)
            if sample is None:
                return None
            now, cpu_ns, memory, pid = sample
        else:
            first = previous[1:]
        self._cpu_samples[job_id] = (run, now, cpu_ns)
        elapsed = now - first[0]
        cpu = max(0.0, (cpu_ns - first[1]) / 1e9 / elapsed) if elapsed > 0 else 0.0
        duty = gpu_memory = None
        spec = read_json(str(self.job_dir(job_id) / SPEC)) or {}
        if int(spec.get("gpus") or 0) > 0 and pid and self.endpoint.local:
            pids = await asyncio.to_thread(telemetry.tree_pids, pid)
            duty, gpu_memory = await asyncio.to_thread(self.gpus.usage, pids | {pid})
        return Telemetry(
            timestamp=time.time(),
            cpu=cpu,
            memory=memory,
            gpu_duty_cycle=duty,
            gpu_memory=gpu_memory,
        )

    async def _sample(self, cid: str) -> tuple[float, int, int, int] | None:
        """(monotonic time, CPU ns, memory bytes, main pid) now; None when it does not run."""
        try:
            data = await api.get_json(
                self.endpoint, api.path("/containers/{}/stats", cid, stream=0, **{"one-shot": 1})
            )
            info = await self.container_info(cid)
        except api.EngineError:
            return None
        if not isinstance(data, dict) or info is None:
            return None
        state = info.get("State") or {}
        if phase_of(info) != "running":
            return None
        cpu_ns = int(((data.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
        mem = data.get("memory_stats") or {}
        stats = mem.get("stats") or {}
        cache = stats.get("total_inactive_file", stats.get("inactive_file", 0)) or 0
        memory = max(0, int(mem.get("usage") or 0) - int(cache))
        return time.monotonic(), cpu_ns, memory, int(state.get("Pid") or 0)


# -- helpers ---------------------------------------------------------------------------------


def _engine_from_ping(headers: Mapping[str, str]) -> dict[str, str]:
    """Which engine, from its /_ping headers (/version takes 300 ms on Podman)."""
    h = {k.lower(): v for k, v in headers.items()}
    server = h.get("server", "")
    if h.get("libpod-api-version") or "libpod" in server.lower():
        return {"name": "podman", "version": h.get("libpod-api-version", ""), "reachable": "1"}
    m = re.match(r"Docker/(\S+)", server)
    return {"name": "docker", "version": m.group(1) if m else "", "reachable": "1"}


def _records(d: Path) -> int:
    from .logfile import RECORD

    try:
        return (d / "output.idx").stat().st_size // RECORD.size
    except OSError:
        return 0


def _record_cannot_run(d: Path, cid: str, base: tuple[int, int], code: int, error: str) -> None:
    """The command could not start: the log gets the reason, exit.json the code."""
    from .docker_pump import _cut
    from .logfile import LogWriter

    _cut(str(d), *base)
    writer = LogWriter(str(d))
    try:
        writer.write(f"neuro: {error}\n".encode(), 2)
    finally:
        writer.close()
    now = iso_now()
    write_json(
        str(d / EXIT),
        {
            "exit_code": code,
            "finished_at": now,
            "started_at": now,
            "oom_killed": False,
            "error": error,
            "container_id": cid,
        },
    )


def _spec_record(spec: JobSpec) -> dict[str, Any]:
    return {
        "job_id": spec.job_id,
        "argv": list(spec.argv),
        "entrypoint": getattr(spec, "entrypoint", None),
        "command": getattr(spec, "command", None),
        "env": dict(spec.env),
        "working_dir": spec.working_dir,
        "cpu": spec.cpu,
        "memory": spec.memory,
        "gpus": int(getattr(spec, "gpus", 0) or 0),
        "tty": spec.tty,
        "image": spec.image,
        "owner": spec.owner,
        "created_at": iso_now(),
    }


def _entrypoint_and_command(spec: JobSpec) -> tuple[list[str] | None, list[str] | None]:
    """The user's raw ``entrypoint``/``command`` with Docker's semantics (the one not given:
    the image's own; an entrypoint given drops the image's CMD).  Neither given: ``argv``
    exactly when there is one (a spec made with only a resolved command), else the image's
    ENTRYPOINT and CMD (what the server sends when the user gave no command)."""
    entrypoint = getattr(spec, "entrypoint", None)
    command = getattr(spec, "command", None)
    if entrypoint or command:
        return (_split(entrypoint) if entrypoint else None), (_split(command) if command else None)
    argv = [str(a) for a in spec.argv]
    if not argv:
        return None, None
    return argv[:1], argv[1:]


def _split(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _shm_size(spec: JobSpec) -> int:
    """/dev/shm: ``spec.shm`` bytes when it is a number, the memory limit (1 GiB without one)
    when it is True ("extended shm"), else 64 MiB."""
    shm = getattr(spec, "shm", None)
    if shm is True:
        return int(spec.memory) if spec.memory > 0 else 1 << 30
    if isinstance(shm, int) and not isinstance(shm, bool) and shm > 0:
        return shm
    return DEFAULT_SHM


def _cannot_run(message: str) -> tuple[int, str]:
    """(exit code, error) when the engine says the command cannot run; (0, "") otherwise."""
    m = _NOT_FOUND.search(message)
    if m:
        return 127, f'cannot run "{m.group(1)}": {m.group(2)}'
    m = _NO_PERMISSION.search(message)
    if m:
        return 126, f'cannot run "{m.group(1)}": permission denied'
    if "executable file not found" in message or "no such file or directory" in message.lower():
        return 127, f"cannot run the command: {message}"
    return 0, ""


def _create_error(job_id: str, image: str, e: Any) -> RuntimeError_:
    message = str(e.message)
    low = message.lower()
    if "invalid reference" in low:
        return RuntimeError_(f"invalid image name {image!r}: {message}", reason="InvalidImageName")
    if e.status == 404 and ("image" in low or "no such" in low):
        return RuntimeError_(f"no image {image}: {message}", reason="ErrImagePull")
    if e.status == 409:
        return RuntimeError_(f"job {job_id}: a container of that name exists: {message}")
    return RuntimeError_(f"cannot create the job's container: {message}")


def _addresses(info: Mapping[str, Any]) -> list[str]:
    hosts: list[str] = []
    net = info.get("NetworkSettings") or {}
    if net.get("IPAddress"):
        hosts.append(str(net["IPAddress"]))
    for n in (net.get("Networks") or {}).values():
        for key in ("IPAddress", "GlobalIPv6Address"):
            if (n or {}).get(key) and str(n[key]) not in hosts:
                hosts.append(str(n[key]))
    mode = str((info.get("HostConfig") or {}).get("NetworkMode") or "")
    if not hosts and mode == "host":
        hosts = ["127.0.0.1", "::1"]
    return hosts


def kmsg_oom(container_id: str) -> bool | None:
    """Whether the kernel log has a memory-cgroup OOM kill in the container's cgroup (its path
    has the container id); None when the kernel log cannot be read here."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    needle = container_id.encode()
    try:
        while True:
            try:
                rec = os.read(fd, 8192)
            except BlockingIOError:
                return False
            except OSError as e:
                if e.errno == errno.EPIPE:  # overwritten while we read: go on
                    continue
                return None
            if not rec:
                return False
            if b"oom-kill:" in rec and needle in rec:
                return True
    finally:
        os.close(fd)


def _exited(record: Mapping[str, Any]) -> JobState:
    return JobState(State.EXITED, started_at=record_time(record, "started_at"), exit=exit_from_record(record))
