"""Following the docker runtime's jobs, also those of an earlier server process (containers
outlive the server): their state (inspect: the job's files and pump first, the engine for a
job not seen yet), their pumps (made for a job found running, or exited with output to
drain), their end (wait), their output (logs), stopping them, and their cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..base import ExitInfo, JobState, RuntimeError_, State
from ..jobdir import (
    EXIT,
    SPEC,
    STARTED,
    STOP,
    exit_from_record,
    iso_now,
    log_size,
    read_json,
    record_time,
    write_json,
)
from ..logfile import read_log
from . import api, volumes
from .engine import phase_of
from .jobs import DockerJobs, log
from .oom import oom_evidence
from .pump import LOST, Pump

INIT_READY = 0.2  # seconds after its start before a container's init surely passes signals on


class Follower(DockerJobs):
    # -- state -------------------------------------------------------------------------------

    async def inspect(self, job_id: str) -> JobState:
        """From the job's files and its pump; when neither knows (a job from before a server
        restart), the engine's inspect of its container."""
        try:
            d = self.job_dir(job_id)
        except RuntimeError_:
            return JobState(State.NOT_FOUND)
        exit_record = read_json(str(d / EXIT))
        if exit_record is not None:
            return exited(exit_record)
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
            info = await self.engine.show(str(cid))
            status = 404 if info is None else 200
        except api.EngineError as e:
            status, info = e.status, None
        if status == 0 or status >= 500:
            # the engine does not answer, or fails (Podman's inspect of a process that ends
            # meanwhile): a job that ran still runs, as far as we know
            if started is not None:
                return JobState(State.RUNNING, started_at=record_time(started, "started_at"))
            return JobState(State.NOT_FOUND)
        if status == 404 or not self.engine.ours(info, job_id):
            return JobState(State.NOT_FOUND)
        state = (info or {}).get("State") or {}
        started_at = api.parse_time(state.get("StartedAt"))
        started_dt = datetime.fromtimestamp(started_at, UTC) if started_at else None
        phase = phase_of(info)
        if phase == "running":
            self._kick(job_id)
            if (door := (spec or {}).get("server_door")) is not None:
                await self.doors.reopen(door)  # (its passed config names it)
            return JobState(
                State.RUNNING, started_at=started_dt or record_time(started, "started_at")
            )
        if phase == "exited":
            self._kick(job_id)  # its pump drains the output and writes exit.json
            code = int(state.get("ExitCode") or 0)
            oom = bool(state.get("OOMKilled")) or (
                code == 137 and await asyncio.to_thread(oom_evidence, d, str(cid))
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
            info = await self.engine.container_info(str(cid))
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
            pump = self._new_pump(job_id, d, str(cid), tty=bool(spec.get("tty")))
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

    async def log_size(self, job_id: str) -> int:
        """Bytes in output.log so far (0 when none): an offset for ``attach`` with ``logs``."""
        try:
            return log_size(self.job_dir(job_id))
        except RuntimeError_:
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
            if pump is None and (await self.inspect(job_id)).state is State.RUNNING:
                return
        if pump is not None and not pump.finished:
            info = await self.engine.container_info(pump.cid)
            if info is not None and phase_of(info) == "running":
                return  # still running
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(pump.done)  # the output is complete first
        if pump is not None and pump.finished and self._pumps.get(job_id) is pump:
            self._pumps.pop(job_id, None)
        cid = self._container_id(job_id)
        if cid and ((d / EXIT).exists() or (d / LOST).exists()):
            info = await self.engine.container_info(cid)
            if info is not None and phase_of(info) != "running":
                await self.engine.remove_container(cid)
        (d / STOP).unlink(missing_ok=True)
        volumes.unpin(d / volumes.STAGING)  # (start unpins; a cancelled one may not)
        self._cpu_samples.pop(job_id, None)
        self._tty_sizes.pop(job_id, None)

    # -- control -----------------------------------------------------------------------------

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
            await self.engine.kill_container(cid, "SIGTERM")
        except api.EngineError as e:
            log.warning("stop %s: %s", job_id, e)
        pump = await self._ensure_pump(job_id)
        if pump is not None:
            pump.kill_at(deadline)


def exited(record: Mapping[str, Any]) -> JobState:
    return JobState(
        State.EXITED, started_at=record_time(record, "started_at"), exit=exit_from_record(record)
    )
