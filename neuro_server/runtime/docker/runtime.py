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
``wait`` work, and the output goes on where it stopped.  ``inspect`` answers from the job's
files and its pump, and asks the engine only for a job it has not seen yet, as after a
restart.

Each job has a directory ``root/<job id>/``: ``spec.json`` (what was asked, the container id),
``started.json``, ``exit.json`` (written once the output is complete), and the output in the
process runtime's format (``output.log``/``output.idx``), written by the job's pump
(pump.py: the container's attach stream, or after a restart the engine's log resumed by
byte count), so logs, ``log_size`` and ``attach`` resume by byte offset as with the process
runtime.  ``cleanup`` removes the container once its output is complete; the directory stays.
While a job starts, ``volumes/`` there holds its storage volumes and disks pinned (mounts of the
directories opened with no link followed, which the engine binds: volumes.py); they are
detached once the container runs.  Containers get a pids limit (``pids_limit``, 4096).

Starting may pull the image: ``phase(job_id)`` says what a start is doing, and the progress
listener (``set_progress_listener``; none by default) is called as it changes: ("Pulling", "Pulling image X: ...") then ("ContainerCreating", ...).  Reasons of
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
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiodocker.exceptions import DockerError

from neuro_sdk._wire import signal_name

from .. import cgroups, telemetry
from ..base import (
    TTY_SIZE,
    Capabilities,
    PortReader,
    PortWriter,
    RuntimeError_,
    RuntimeInfo,
    State,
    StdioSession,
    Telemetry,
    tty_size,
)
from ..jobdir import SPEC, iso_now, read_json, write_json
from . import api, relay, volumes
from .attach import AttachSession
from .container import addresses
from .engine import phase_of
from .exec import ExecSession
from .oom import SIGKILLED
from .start import Starter


class DockerRuntime(Starter):
    """The Runtime interface (base.py) on a container engine; its parts: jobs.py (state),
    follow.py (inspect, wait, logs, stop, cleanup), start.py (start)."""

    name = "docker"
    capabilities = Capabilities(
        runs_images=True,
        needs_command=False,
        mounts="",
        privileged=True,
        assigns_gpus=True,
        loopback_reachable=True,  # through a door on the job network's gateway (doors.py)
        reports_progress=True,
        host_users=False,
    )

    def info(self) -> RuntimeInfo:
        engine = self.engine.info_blocking()
        by = f"the container engine ({engine['name']})"
        where = f"{engine['name']} {engine['version']}".strip()
        note = f"jobs run in containers of their image ({where} at {self.url})"
        if not engine.get("reachable"):
            note = (
                f"jobs run in containers of their image; the engine at {self.url} does not answer"
            )
        why = volumes.why_unsupported()
        placed = (
            f"secret files only ({why})"
            if why
            else "bound into the job's container (storage volumes and disks pinned: opened "
            "with no link followed, bound from a staging mount of the server's)"
        )
        return RuntimeInfo(
            name=self.name, limits=cgroups.describe(by, by), note=note, volumes=placed
        )

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
        await self.doors.close()
        await self.engine.close()

    async def job_ids(self) -> list[str]:
        """Job ids of every container of this server (found by label)."""
        return await self.engine.job_ids()

    async def suspend(self, job_id: str) -> None:
        """Pause the container (the engine's freezer): memory kept, no CPU."""
        await self._pause(job_id, "pause")

    async def resume(self, job_id: str) -> None:
        await self._pause(job_id, "unpause")

    async def _pause(self, job_id: str, what: str) -> None:
        self.job_dir(job_id)
        cid = self._container_id(job_id)
        if cid is None or (await self.inspect(job_id)).state is not State.RUNNING:
            return
        docker = await self.engine.client()
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
        if (await self.inspect(job_id)).state is not State.RUNNING:
            return
        cid = self._container_id(job_id)
        if cid is None:
            return
        name = signal_name(signum)  # (a real-time signal goes by its number)
        if signum == signal.SIGKILL:
            write_json(str(self.job_dir(job_id) / SIGKILLED), {"at": iso_now()})
        try:
            await self.engine.kill_container(cid, name)
        except api.EngineError as e:
            raise RuntimeError_(f"job {job_id}: cannot signal it: {e.message}") from e

    # -- interactive -------------------------------------------------------------------------

    async def _running(self, job_id: str) -> tuple[Path, str]:
        d = self.job_dir(job_id)
        state = (await self.inspect(job_id)).state
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
        return await ExecSession.open(
            self.engine, job_id, cid, argv, tty=tty, stdin=stdin, env=env, size=at
        )

    async def resize(self, job_id: str, height: int, width: int) -> None:
        """Resize the job's TTY: its processes get SIGWINCH, also when the size is the one it
        has (the engine would not signal: the size is nudged and set back), so a client that
        attaches at the TTY's size sees the screen redrawn; a no-op for a job without one."""
        d, cid = await self._running(job_id)
        if not (0 <= height <= 0xFFFF and 0 <= width <= 0xFFFF):
            raise RuntimeError_(f"bad terminal size {height}x{width}", reason="BadRequest")
        if not (read_json(str(d / SPEC)) or {}).get("tty"):
            return
        docker = await self.engine.client()
        container = docker.containers.container(cid)
        try:
            if self._tty_sizes.get(job_id, TTY_SIZE) == (height, width) and width > 1:
                await container.resize(h=height, w=width - 1)
                await asyncio.sleep(0.05)  # (the job reads the nudged size first)
            await container.resize(h=height, w=width)
        except DockerError as e:
            raise self.engine.runtime_error(job_id, e) from e
        self._tty_sizes[job_id] = (height, width)

    async def connect_port(self, job_id: str, port: int) -> tuple[PortReader, PortWriter]:
        """A TCP connection to ``port`` in the job's container, without publishing it on the
        host: to the container's address on its network; where that cannot be reached (a
        rootless engine; ``port_connect = "auto"``), or always with ``"exec"``, through a relay
        command exec'd in the container (relay.py)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise RuntimeError_(f"bad port {port!r}: ports are 1-65535", reason="BadRequest")
        _d, cid = await self._running(job_id)
        if self.port_connect == "exec":
            return await relay.connect(self._exec_relay, job_id, port)
        info = await self.engine.container_info(cid) or {}
        hosts = addresses(info)
        error: BaseException | None = None
        for host in hosts:
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
            except (OSError, TimeoutError) as e:
                error = error or e
                if isinstance(e, OSError) and e.errno == errno.ECONNREFUSED:
                    raise RuntimeError_(
                        f"nothing listens on port {port} in job {job_id} ({e})",
                        reason="PortNotListening",
                    ) from None
        if self.port_connect == "auto":  # no address, or one this host cannot reach
            return await relay.connect(self._exec_relay, job_id, port)
        raise RuntimeError_(
            f"nothing listens on port {port} in job {job_id} ({error or 'no address'})",
            reason="PortNotListening",
        )

    async def _exec_relay(self, job_id: str, argv: Sequence[str]) -> StdioSession:
        return await self.exec(job_id, argv, tty=False, stdin=True)

    # -- telemetry ---------------------------------------------------------------------------

    async def stats(self, job_id: str) -> Telemetry | None:
        """CPU cores used since the previous call (the first call measures over
        ``stats_interval``), memory without page cache, and GPU use where the job has GPUs."""
        try:
            self.job_dir(job_id)
        except RuntimeError_:
            return None
        if (await self.inspect(job_id)).state is not State.RUNNING:
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
            info = await self.engine.container_info(cid)
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
