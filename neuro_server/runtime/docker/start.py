"""Starting a docker runtime job: its image (pulled when missing, the phases told to the
progress listener), its container (created with its volumes pinned and secret files bound,
on its network), its pump attached before the container starts (so that no byte of output is
missed), and what a refused start means."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodocker.exceptions import DockerError

from ..base import JobSpec, RuntimeError_, StartInfo, State
from ..jobdir import EXIT, SPEC, STARTED, STOP, iso_now, log_size, read_json, write_json
from . import api, volumes
from .container import (
    addresses,
    cannot_run,
    container_config,
    create_error,
    limits_text,
    log_records,
    pin_volumes,
    record_cannot_run,
    secret_files,
    spec_record,
)
from .doors import PASSED
from .engine import phase_of
from .follow import Follower
from .oom import SIGKILLED
from .pump import LOST, Pump


class Starter(Follower):
    async def start(self, spec: JobSpec) -> StartInfo:
        job_id = spec.job_id
        d = self.job_dir(job_id)
        if job_id in self._starting or (await self.inspect(job_id)).state is State.RUNNING:
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
            record = spec_record(spec)
            write_json(str(d / SPEC), record)
            await self.engine.info()
            await self.engine.ensure_image(
                spec.image, lambda reason, text: self._set_phase(job_id, reason, text)
            )
            self._set_phase(job_id, "ContainerCreating", "Creating the job's container")
            await self._remove_old_container(job_id)
            binds = secret_files(d, spec) + pin_volumes(d, spec)
            config = self._container_config(spec, binds)
            engine = (await self.engine.info())["name"]
            network, names = await self.networks.ensure(spec.owner, engine)
            named = network is not None and names  # other jobs find it by id and name
            if network is not None:
                config["HostConfig"]["NetworkMode"] = network
                if named:
                    config["Hostname"] = spec.job_id
                    config["NetworkingConfig"] = self.networks.endpoint_config(
                        network, spec.job_id, spec.hostname
                    )
            if PASSED in spec.env:
                gateway = await self.networks.gateway(network)
                passed, door = await self.doors.passed(spec.env[PASSED], gateway)
                config["Env"] = [f"{k}={v}" for k, v in {**spec.env, PASSED: passed}.items()]
                record["server_door"] = door
            docker = await self.engine.client()
            try:
                try:
                    container = await docker.containers.create(
                        config, name=self.container_name(job_id)
                    )
                except DockerError as e:
                    # the network we made went away meanwhile (a prune): make it again, once
                    gone = re.search(r"network\b.*\bnot found", str(e.message), re.IGNORECASE)
                    if network is None or not gone or not self.networks.forget(network):
                        raise
                    network, _names = await self.networks.ensure(spec.owner, engine)
                    container = await docker.containers.create(
                        config, name=self.container_name(job_id)
                    )
            except DockerError as e:
                raise create_error(job_id, spec.image, e) from e
            cid = str(container.id)
            record["container_id"] = cid
            write_json(str(d / SPEC), record)
            limits = limits_text(spec, self.engine.info_blocking()["name"])
            try:
                stream = await self.engine.attach_stream(cid, tty=spec.tty, stdin=spec.tty)
            except api.EngineError as e:
                # Podman prepares the container to attach: a command that cannot run shows here
                code, error = cannot_run(e.message)
                if not code:
                    await self.engine.remove_container(cid)
                    raise RuntimeError_(f"cannot attach to the job's container: {e.message}") from e
                base = (log_size(d), log_records(d))
                record_cannot_run(d, cid, base, code, error)
                started = True
                return StartInfo(started_at=datetime.now(UTC), limits=limits)
            pump = self._new_pump(job_id, d, cid, tty=spec.tty, attach=stream)
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
            info = await self.engine.container_info(cid) or {}
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
            hosts = addresses(info)
            return StartInfo(
                started_at=datetime.fromtimestamp(started_at, UTC),
                limits=limits,
                address=spec.job_id if named else hosts[0] if hosts else "",
                hostname=spec.hostname if named else "",
            )
        except RuntimeError_:
            raise
        except (api.EngineError, DockerError) as e:
            raise RuntimeError_(f"job {job_id}: {e.message}") from e
        except OSError as e:
            raise RuntimeError_(f"cannot reach the container engine at {self.url}: {e}") from e
        finally:
            # the container has its own copies of the volumes once started; else none is needed
            volumes.unpin(d / volumes.STAGING)
            if not started:
                (d / SPEC).unlink(missing_ok=True)  # nothing ran: logs and inspect say so
                self._abandon(job_id)
            self._starting.discard(job_id)
            self._phase.pop(job_id, None)

    async def _ran_anyway(self, cid: str) -> bool:
        """Whether a container whose start the engine refused has in fact run its command."""
        info = await self.engine.container_info(cid) or {}
        state = info.get("State") or {}
        return (
            api.parse_time(state.get("StartedAt")) is not None
            and not state.get("Error")
            and str(state.get("Status", "")).lower() in ("running", "exited", "stopped")
        )

    async def _start_failed(
        self, job_id: str, d: Path, cid: str, pump: Pump, e: DockerError
    ) -> None:
        """A refused start: the command cannot run (it "ran" and failed with 127/126, as on a
        host; what the attach brought meanwhile is the engine's error, not output), else
        RuntimeError_."""
        code, error = cannot_run(str(e.message))
        await pump.close()
        self._pumps.pop(job_id, None)
        if not code:
            await self.engine.remove_container(cid)
            raise RuntimeError_(f"the job's container could not start: {e.message}") from e
        record_cannot_run(d, cid, pump.base, code, error)

    def _abandon(self, job_id: str) -> None:
        """A start that failed or was cancelled half way: its pump and container go (in the
        background: this may run while the start is being cancelled)."""
        pump = self._pumps.pop(job_id, None)
        if pump is None or pump.finished:
            return

        async def drop() -> None:
            await pump.close()
            await self.engine.remove_container(pump.cid)

        task = asyncio.get_running_loop().create_task(drop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _remove_old_container(self, job_id: str) -> None:
        """An earlier run's container of this job (ours, not running) goes; anyone else's
        container of that name is an error."""
        name = self.container_name(job_id)
        info = await self.engine.show(name)
        if info is None:
            return
        if not self.engine.ours(info, job_id):
            raise RuntimeError_(f"a container named {name} exists and is not this server's")
        if phase_of(info) == "running":
            raise RuntimeError_(f"job {job_id} is already running")
        await self.engine.remove_container(str(info["Id"]))

    def _container_config(self, spec: JobSpec, binds: list[str] | None = None) -> dict[str, Any]:
        labels = {
            self.engine.label("job-id"): spec.job_id,
            self.engine.label("owner"): spec.owner,
            self.engine.label("instance"): self.instance,
            self.engine.label("data-dir"): str(self.root),
        }
        return container_config(
            spec,
            binds,
            init=self.init,
            pids_limit=self.pids_limit,
            cgroup_parent=self.cgroup_parent,
            labels=labels,
        )
