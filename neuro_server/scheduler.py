"""The scheduler: moves jobs through their lifecycle and keeps the store and runtime in step.

pending --(fits in free resources, oldest first)--> running --> succeeded | failed | cancelled

- A job waits with reason ``Scheduling`` and a description of what it waits for while its preset
  does not fit in the free CPU, memory and GPUs.
- A running job is watched until it exits; its exit code decides the final status
  (0: succeeded/Completed, OOM: failed/OOMKilled, other: failed/Error, could not run:
  failed/ContainerCannotRun).  A job killed on request ends cancelled/UserRequested, one past
  its life span cancelled/LifeSpanEnded.
- ``life_span_signal`` (our extension, as Slurm's --signal): the job gets that signal once,
  the given seconds of run time before its life span ends; a bump-life-span re-arms it.
- ``restart_policy`` on-failure (a non-zero exit or OOM) or always (any exit): instead of
  ending, the job goes back to pending/Restarting, ``restarts`` counts it, and it starts again
  after a backoff (1, 2, 4... 30 s; back to 1 s after a run of 10 minutes).  Never after a kill,
  the end of its life span, or a command that cannot run.  Its output continues in the same log.
- Jobs on presets with ``scheduler_enabled`` are preemptible: when a pending job does not fit,
  running preemptible jobs (the longest-running first) are suspended (status suspended, their
  processes frozen, not killed: they keep their memory and GPUs, give back their CPU) if that
  makes it fit, and resumed (oldest suspension first) when CPU is free again.  Among
  preemptible jobs this is round robin: a suspended or pending one may take the place of one
  that has run for ``round_robin_seconds`` since it last (re)started.  Each suspension counts
  in ``restarts``.
- On start, ``reconcile`` brings every active job up to date with what the runtime knows, so
  jobs that ran or ended while the server was down are neither lost nor restarted.  A job whose
  supervisor was lost (SIGKILLed) has what is left of it killed by the runtime and ends
  failed/SupervisorLost, whether the watcher or a restarted server finds it.
- A full disk never loses a job's end: a record that fails for want of space (or a busy
  database) is retried with backoff until it holds, and the first such failure gives up the
  data dir's reserve (diskfull.py) so that it usually holds at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from .config import Preset, ServerConfig
from .diskfull import Reserve, describe, disk_full
from .jobusers import JobUser, JobUsers
from .runtime.base import ExitInfo, JobSpec, Mount, Runtime, RuntimeError_, State, job_hostname
from .store import ACTIVE, JobRecord, Store, now
from .validation import NewJob

log = logging.getLogger(__name__)

GiB = 1 << 30
HOLDS = 1e18  # "plenty": a resource a suspended job keeps while frozen
RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between tries of a record that could not be made
T = TypeVar("T")


def _fmt_mem(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / (1 << 20):.0f} MiB"


class NameTaken(Exception):
    pass


class QuotaExhausted(Exception):
    pass


class Scheduler:
    def __init__(self, config: ServerConfig, store: Store, runtime: Runtime) -> None:
        self.config = config
        self.store = store
        self.runtime = runtime
        self._wake = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._starting: set[str] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_at: dict[str, float] = {}  # job id -> loop time of its next start
        self._run_started: dict[str, Any] = {}  # job id -> when its current run started
        self._running_since: dict[str, float] = {}  # loop time of its last start or resume
        self._suspending: set[str] = set()  # suspensions and resumptions in flight
        self._resuming: set[str] = set()
        self.reserve = Reserve(config.data_dir / "reserve")  # room for job states on a full disk
        # for pass_config: the API URL jobs reach the server at, and a token issuer (set by
        # whoever serves the app)
        self.api_url: str | None = None
        self.issue_token: Any = None
        self.users: JobUsers | None = None  # who jobs run as (set with the token issuer)

    # -- lifecycle of the scheduler itself -------------------------------------------------
    async def start(self) -> None:
        if hasattr(self.runtime, "on_progress"):
            # a runtime that pulls images tells what a start is doing: shown as pending reasons
            self.runtime.on_progress = self._progress  # type: ignore[attr-defined]
        self.reserve.ensure()
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")

    async def close(self) -> None:
        tasks = [t for t in (self._loop_task, *self._watchers.values(), *self._tasks) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- change notification (log streams wait on it) -------------------------------------
    def _notify(self, job_id: str) -> None:
        ev = self._changed.pop(job_id, None)
        if ev is not None:
            ev.set()

    async def wait_change(self, job_id: str, timeout: float) -> None:
        ev = self._changed.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def _set(self, job_id: str, status: str, reason: str = "", description: str = "", **kw: Any) -> JobRecord:
        job = self.store.set_status(job_id, status, reason, description, **kw)
        self._notify(job_id)
        return job

    def _progress(self, job_id: str, reason: str, description: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None and job.status == "pending":
            self._set(job_id, "pending", reason, description)

    # -- requests --------------------------------------------------------------------------
    def seats(self, owner: str) -> tuple[int, int]:
        """(running or starting jobs of ``owner``, the per-user limit; 0: none)."""
        running = sum(1 for j in self.store.jobs_with_status(("running",)) if j.owner == owner)
        running += sum(1 for i in self._starting
                       if (j := self.store.get_job(i)) is not None and j.owner == owner)
        return running, self.config.max_running_jobs

    def create(self, owner: str, new: NewJob) -> JobRecord:
        limit = self.config.max_running_jobs
        if limit and not new.spec.get("wait_for_jobs_quota"):
            waiting = sum(1 for j in self.store.jobs_with_status(("pending",)) if j.owner == owner)
            running, _ = self.seats(owner)
            if running + waiting >= limit:
                raise QuotaExhausted(
                    f"quota exhausted: {running} of your {limit} jobs are running"
                    + (f" and {waiting} waiting" if waiting else "")
                    + "; wait for one to end, or queue this one (--wait-for-seat)")
        job_id = f"job-{uuid.uuid4()}"
        job = self.store.create_job(
            job_id=job_id, owner=owner, name=new.name, spec=new.spec, tags=new.tags,
            life_span=new.life_span, reason="Creating",
        )
        if job is None:
            raise NameTaken(f"a job named {new.name!r} is already active: pick another name or kill it")
        self._wake.set()
        return job

    async def kill(self, job: JobRecord, reason: str = "UserRequested") -> JobRecord:
        """Cancel a job and return once it has stopped (bounded by the kill grace)."""
        if job.is_finished:
            return job
        self.store.set_kill_reason(job.id, reason)
        if job.status == "pending" and job.id not in self._starting:
            return self._set(job.id, "cancelled", reason, _kill_text(reason))
        if job.status == "suspended":  # frozen processes cannot handle SIGTERM: thaw them
            try:
                await self.runtime.resume(job.id)
            except Exception as e:  # noqa: BLE001
                log.warning("resume %s to kill it: %s", job.id, e)
        try:
            await self.runtime.stop(job.id, grace=self.config.kill_grace_seconds)
        except Exception as e:  # the watcher still decides the final status
            log.warning("stop %s: %s", job.id, e)
        deadline = asyncio.get_running_loop().time() + self.config.kill_grace_seconds + 5
        while True:
            job = self.store.get_job(job.id)  # type: ignore[assignment]
            assert job is not None
            left = deadline - asyncio.get_running_loop().time()
            if job.is_finished or left <= 0:
                return job
            await self.wait_change(job.id, min(left, 0.5))

    def bump_life_span(self, job: JobRecord, seconds: float) -> JobRecord:
        job = self.store.add_life_span(job.id, seconds)
        self._wake.set()
        return job

    # -- resources -------------------------------------------------------------------------
    def _used(self) -> dict[str, float]:
        used = {"cpu": 0.0, "memory": 0.0, "nvidia_gpu": 0.0}
        for job in self.store.jobs_with_status(("running", "suspended")):
            res = job.spec["resources"]
            # a frozen job keeps its memory and GPUs; its CPU is free (also while it is
            # being suspended, not while it is being resumed)
            frozen = (job.status == "suspended" and job.id not in self._resuming) or \
                job.id in self._suspending
            if not frozen:
                used["cpu"] += res["cpu"]
            used["memory"] += res["memory"]
            used["nvidia_gpu"] += res.get("nvidia_gpu", 0)
        for job_id in self._starting:
            job = self.store.get_job(job_id)
            if job and job.status == "pending":
                res = job.spec["resources"]
                used["cpu"] += res["cpu"]
                used["memory"] += res["memory"]
                used["nvidia_gpu"] += res.get("nvidia_gpu", 0)
        return used

    def free(self) -> dict[str, float]:
        used = self._used()
        return {
            "cpu": self.config.cpu - used["cpu"],
            "memory": self.config.memory - used["memory"],
            "nvidia_gpu": self.config.nvidia_gpu - used["nvidia_gpu"],
        }

    @staticmethod
    def _fits(res: Mapping[str, Any], free: Mapping[str, float], total: ServerConfig) -> tuple[int, str]:
        """How many such jobs fit in ``free``, and what limits it."""
        counts: list[tuple[float, str]] = []
        eps = 1e-9
        counts.append((math.floor(free["cpu"] / res["cpu"] + eps), f"cpu {res['cpu']:g} (free {max(free['cpu'], 0):g} of {total.cpu:g})"))
        counts.append((math.floor(free["memory"] / res["memory"] + eps), f"memory {_fmt_mem(res['memory'])} (free {_fmt_mem(max(free['memory'], 0))} of {_fmt_mem(total.memory)})"))
        gpu = res.get("nvidia_gpu", 0)
        if gpu:
            if total.nvidia_gpu == 0:
                counts.append((0, f"{gpu} NVIDIA GPU (this machine has none)"))
            else:
                counts.append((math.floor(free["nvidia_gpu"] / gpu + eps), f"{gpu} NVIDIA GPU (free {max(free['nvidia_gpu'], 0):g} of {total.nvidia_gpu})"))
        n, what = min(counts, key=lambda c: c[0])
        return max(0, int(n)), what

    def capacity(self) -> dict[str, int]:
        free = self.free()
        return {p.name: self._fits(_preset_res(p), free, self.config)[0] for p in self.config.presets}

    # -- the loop --------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            self.reserve.ensure()  # (taken again once a full disk has room)
            try:
                next_check = self._step()
            except Exception:
                log.exception("scheduler step failed")
                next_check = 1.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=next_check)
            except asyncio.TimeoutError:
                pass

    def _step(self) -> float:
        """Start what fits, end what outlived its life span; return seconds until next check."""
        next_check = 5.0
        free = self.free()
        clock = asyncio.get_running_loop().time()
        t = now()
        taken = self._taken_devices()  # GPUs of running and starting jobs
        seats: dict[str, int] = {}  # owner -> running or starting jobs
        if self.config.max_running_jobs:
            for owner in {j.owner for j in self.store.jobs_with_status(("pending",))}:
                seats[owner] = self.seats(owner)[0]
        for job in self.store.jobs_with_status(("pending",)):
            if job.id in self._starting or job.kill_reason or job.id in self._watchers:
                continue
            wait = self._restart_at.get(job.id, 0.0) - clock
            if wait > 0:  # a restart's backoff
                next_check = min(next_check, wait)
                continue
            limit = self.config.max_running_jobs
            if limit and seats.get(job.owner, 0) >= limit:
                self._set(job.id, "pending", "Scheduling",
                          f"Waiting for a seat: {seats[job.owner]} of your {limit} jobs are running")
                continue
            busy = self._disk_conflict(job)
            if busy:
                self._set(job.id, "pending", "DiskUnavailable", busy)
                continue
            res = job.spec["resources"]
            n, what = self._fits(res, free, self.config)
            timeout = job.spec.get("schedule_timeout")
            if n < 1 and timeout is not None:
                left = timeout - (t - job.created_at).total_seconds()
                if left <= 0:
                    self._set(job.id, "failed", "ClusterScaleUpFailed",
                              f"Not scheduled within its schedule timeout of {timeout:g}s: "
                              f"needs {what}")
                    continue
                next_check = min(next_check, left)
            if n < 1 and self._preempt(job, free, clock):
                continue  # it starts once the suspensions are done
            if n >= 1:
                self._restart_at.pop(job.id, None)
                seats[job.owner] = seats.get(job.owner, 0) + 1
                wanted = int(res.get("nvidia_gpu", 0))
                devices = tuple(i for i in range(self.config.nvidia_gpu) if i not in taken)[:wanted]
                taken.update(devices)
                self.store.set_devices(job.id, devices)
                self._starting.add(job.id)
                for k in ("cpu", "memory"):
                    free[k] -= res[k]
                free["nvidia_gpu"] -= res.get("nvidia_gpu", 0)
                self._spawn(self._start_job(job))
            else:
                self._set(job.id, "pending", "Scheduling", f"Waiting for resources: needs {what}")
        next_check = min(next_check, self._resume_suspended(free, clock))
        for job in self.store.jobs_with_status(("running",)):
            if job.life_span is None or job.kill_reason:
                continue
            left = job.life_span - job.run_time(t)
            if left <= 0:
                self._spawn(self.kill(job, "LifeSpanEnded"))
                continue
            next_check = min(next_check, left)
            warn_in = job.life_span_warning_due(t)
            if warn_in is not None and warn_in <= 0:
                self.store.set_warned(job.id, job.life_span)
                self._spawn(self._warn(job))
            elif warn_in is not None:
                next_check = min(next_check, warn_in)
        return max(0.05, next_check)

    async def _warn(self, job: JobRecord) -> None:
        """The job's life-span signal, once per life span (a bump re-arms it)."""
        warn = job.spec["life_span_signal"]
        try:
            await self.runtime.signal(job.id, int(warn["signum"]), group=False)
        except Exception as e:  # noqa: BLE001 - it may have ended meanwhile
            log.warning("life-span signal %s to %s: %s", warn["signal"], job.id, e)
        else:
            log.info("sent %s to %s, %g s before its life span ends", warn["signal"], job.id,
                     warn["seconds_before"])

    async def _start_job(self, job: JobRecord) -> None:
        try:
            self._set(job.id, "pending", self.runtime.info().start_reason,
                      "Starting the job's process")
            job = self.store.get_job(job.id) or job  # with the devices assigned to it
            spec = job.spec
            try:
                env, files = self._secrets(job)
                env = self._device_env(job, env)
                # the uid it runs as (its home, storage and ports made ready), else None: as
                # the server's user (RuntimeError_ when it may not run here at all)
                who = await self.users.prepare(job.owner) if self.users is not None else None
                mounts = self._mounts(job) + await self._disk_mounts(job, who)
                info = await self.runtime.start(JobSpec(
                    job_id=job.id, argv=spec["argv"], env=env,
                    working_dir=spec["working_dir"], cpu=spec["resources"]["cpu"],
                    memory=spec["resources"]["memory"], tty=spec["tty"], image=spec["image"],
                    owner=job.owner, entrypoint=spec.get("entrypoint"),
                    command=spec.get("command"), shm=bool(spec["resources"].get("shm")),
                    gpus=int(spec["resources"].get("nvidia_gpu", 0)), gpu_ids=job.devices,
                    privileged=bool(spec.get("privileged")),
                    files=files, mounts=mounts,
                    hostname=job_hostname(job.name, job.owner) if job.name else "",
                    uid=who.uid if who else None, gid=who.gid if who else None,
                    home=who.home if who else "",
                ))
            except RuntimeError_ as e:
                self._set(job.id, "failed", e.reason, str(e))
                return
            except Exception as e:
                log.exception("start %s", job.id)
                self._set(job.id, "failed", "ContainerCannotRun", f"the job could not start: {e}")
                return
            current = self.store.get_job(job.id)
            self._run_started[job.id] = info.started_at
            self.store.set_address(job.id, info.address, info.hostname)
            self._running_since[job.id] = asyncio.get_running_loop().time()
            self._set(job.id, "running", "", "", at=info.started_at, limits=info.limits)
            if current is not None and current.kill_reason:
                # killed while starting: stop it now
                await self.runtime.stop(job.id, grace=self.config.kill_grace_seconds)
            self._watch(job.id)
        finally:
            self._starting.discard(job.id)
            self._wake.set()

    def _mounts(self, job: JobRecord) -> list[Mount]:
        """The job's storage volumes: paths in the owner's tree, which the runtime opens
        beneath it with no link followed as it mounts them (a check here could not hold: the
        owner's jobs may swap a directory of the tree for a link at any moment).  Checked here
        too, for a clear message while nothing is racing."""
        from . import storage

        root = storage.user_root(self.config.data_dir, job.owner)
        out = []
        for v in job.spec.get("storage_volumes") or ():
            try:
                if not storage.volume_exists(root, v["path"]):
                    raise storage.StorageError(f"no such file or directory: "
                                               f"{storage.shown(v['path'])}")
            except storage.StorageError as e:
                raise RuntimeError_(f"volume {v['uri']}: {e}", reason="ContainerCannotRun") from None
            out.append(Mount(str(root.absolute()), v["path"], v["dst"], bool(v["read_only"])))
        return out

    # -- disks: one writer at a time ------------------------------------------------------------
    def _disk_conflict(self, job: JobRecord) -> str | None:
        """Why ``job`` cannot have its disks now: another active job writes to one (or, for a
        writer, uses it at all); None when it can."""
        wanted = {d["id"]: d["read_only"] for d in job.spec.get("disk_volumes") or ()}
        if not wanted:
            return None
        holders = [j for j in self.store.jobs_with_status(("running", "suspended"))
                   if j.id != job.id] + [
            j for i in self._starting if i != job.id and (j := self.store.get_job(i)) is not None]
        for other in holders:
            for d in other.spec.get("disk_volumes") or ():
                if d["id"] in wanted and not (wanted[d["id"]] and d["read_only"]):
                    return (f"Waiting for job {other.name or other.id} to release disk "
                            f"{d['ref']} (one writer at a time)")
        return None

    async def _disk_mounts(self, job: JobRecord, who: JobUser | None = None) -> list[Mount]:
        """The job's disks, mounted: each the root of its filesystem, pinned as volumes are,
        and ``who``'s (the uid the job runs as) where it is not the server's."""
        from . import disks

        out = []
        for d in job.spec.get("disk_volumes") or ():
            try:
                await disks.mount(self.config.data_dir, d["id"],
                                  owner=who.owner if who is not None else None)
            except disks.DiskError as e:
                raise RuntimeError_(str(e), reason="ContainerCannotRun") from None
            self.store.touch_disk(d["id"])
            root, path = disks.volume_source(self.config.data_dir, d["id"])
            out.append(Mount(str(root.absolute()), path, d["dst"], bool(d["read_only"])))
        return out

    async def _release_disks(self, job_id: str) -> None:
        """Unmount the disks of a job that ended, unless another active job uses them."""
        from . import disks

        job = self.store.get_job(job_id)
        if job is None or not job.spec.get("disk_volumes"):
            return
        in_use = {d["id"] for j in self.store.jobs_with_status(("running", "suspended"))
                  if j.id != job_id for d in j.spec.get("disk_volumes") or ()}
        for d in job.spec["disk_volumes"]:
            if d["id"] not in in_use and d["id"] not in self._starting_disks():
                await disks.unmount(self.config.data_dir, d["id"])

    def _starting_disks(self) -> set[str]:
        return {d["id"] for i in self._starting if (j := self.store.get_job(i)) is not None
                for d in j.spec.get("disk_volumes") or ()}

    def _passed_config(self, job: JobRecord) -> str:
        """protocol.md 3.3: base64 JSON with which `neuro` and the SDK in the job act as its
        owner (a token of their own, revocable like any other)."""
        import base64
        import json

        if self.api_url is None or self.issue_token is None:
            raise RuntimeError_("pass_config: this server does not know the URL jobs reach it at",
                                reason="ContainerCannotRun")
        data = {"token": self.issue_token(job.owner), "cluster": self.config.cluster_name,
                "url": self.api_url, "org_name": job.spec.get("org_name"),
                "project_name": job.spec.get("project_name")}
        return base64.b64encode(json.dumps(data).encode()).decode("ascii")

    def _taken_devices(self) -> set[int]:
        taken: set[int] = set()
        for job in self.store.jobs_with_status(("running",)):
            taken.update(job.devices)
        for job_id in self._starting:
            if (job := self.store.get_job(job_id)) is not None:
                taken.update(job.devices)
        return taken

    def _device_env(self, job: JobRecord, env: dict[str, str]) -> dict[str, str]:
        """On a machine with GPUs, a process-runtime job sees only its own (none for a CPU
        job): CUDA numbers them in PCI order, as NVML does.  Containers get theirs as device
        requests instead."""
        if self.config.nvidia_gpu and not self.runtime.info().image_used:
            ids = ",".join(map(str, job.devices))
            env = {**env, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": ids,
                   "NVIDIA_VISIBLE_DEVICES": ids or "void"}
        return env

    def _secrets(self, job: JobRecord) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
        """The job's environment with its secret variables, and its secret files, looked up
        now (a secret removed since the job was created fails the start, naming only its key)."""
        env = dict(job.spec["env"])
        files: list[tuple[str, bytes]] = []

        def value(key: str) -> bytes:
            v = self.store.secret(job.owner, key)
            if v is None:
                raise RuntimeError_(f"the secret {key!r} was removed before the job started",
                                    reason="ContainerCannotRun")
            return v

        for var, key in (job.spec.get("secret_env") or {}).items():
            env[var] = value(key).decode("utf-8", "replace")
        if job.spec.get("pass_config"):
            env["NEURO_PASSED_CONFIG"] = self._passed_config(job)
        for f in job.spec.get("secret_files") or ():
            files.append((f["path"], value(f["key"])))
        return env, files

    def _watch(self, job_id: str) -> None:
        if job_id not in self._watchers:
            self._watchers[job_id] = asyncio.create_task(self._watch_job(job_id), name=f"watch {job_id}")

    async def _watch_job(self, job_id: str) -> None:
        """Wait for the job's end and record it; neither gives up on a full disk (_persist)."""

        async def finish() -> None:
            self._finish(job_id, exit_info)

        async def lost(e: Exception) -> None:
            self._set(job_id, "failed", "Error", f"lost track of the job: {e}")

        try:
            exit_info = await self._persist(job_id, "wait for the end of",
                                            lambda: self.runtime.wait(job_id))
            await self._persist(job_id, "record the end of", finish)
            await self.runtime.cleanup(job_id)
            await self._release_disks(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("watch %s", job_id)
            await self._persist(job_id, "record the loss of", functools.partial(lost, e))
        finally:
            self._watchers.pop(job_id, None)
            self._wake.set()

    async def _persist(self, job_id: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` until it does not fail for want of space or a busy database (retried with
        backoff; said once in the log): a job's state converges once there is room again.  The
        first failure for want of space gives up the reserve, so that it usually holds at once.
        Other errors are raised."""
        delay, said = RETRY_FIRST, False
        while True:
            try:
                return await fn()
            except Exception as e:
                if not _transient(e):
                    raise
                if disk_full(e) and self.reserve.release():
                    log.warning("the disk is full (%s): gave up the data dir's reserve to %s "
                                "job %s", describe(e), what, job_id)
                    continue
                if not said:
                    log.warning("cannot %s job %s: %s; retrying until it can", what, job_id,
                                describe(e))
                    said = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    # -- preemption (presets with scheduler_enabled) ------------------------------------------
    def _victims(self, job: JobRecord, free: dict[str, float], clock: float) -> list[JobRecord] | None:
        """Running preemptible jobs whose CPU, once frozen, lets ``job`` fit (the longest-
        running first); None when no such set exists.  A preemptible ``job`` (round robin)
        may only take the place of jobs that have run for the round-robin time."""
        quantum = self.config.round_robin_seconds
        candidates = []
        for r in self.store.jobs_with_status(("running",)):
            if (r.id == job.id or not r.spec.get("scheduler_enabled") or r.kill_reason
                    or r.id in self._suspending or r.id in self._resuming):
                continue
            since = self._running_since.get(r.id, 0.0)
            if job.spec.get("scheduler_enabled") and clock - since < quantum:
                continue
            candidates.append((since, r))
        candidates.sort(key=lambda c: c[0])
        trial = dict(free)
        chosen: list[JobRecord] = []
        for _since, r in candidates:
            if self._fits(job.spec["resources"], trial, self.config)[0] >= 1:
                break
            trial["cpu"] += r.spec["resources"]["cpu"]
            chosen.append(r)
        if chosen and self._fits(job.spec["resources"], trial, self.config)[0] >= 1:
            return chosen
        return None

    def _preempt(self, job: JobRecord, free: dict[str, float], clock: float) -> bool:
        victims = self._victims(job, free, clock)
        if not victims:
            return False
        for v in victims:
            self._suspending.add(v.id)
            free["cpu"] += v.spec["resources"]["cpu"]
            self._spawn(self._suspend(v, job))
        # (this job starts on a later step: its free CPU must not go to a younger one now)
        free["cpu"] -= job.spec["resources"]["cpu"]
        return True

    async def _suspend(self, victim: JobRecord, for_job: JobRecord) -> None:
        try:
            await self.runtime.suspend(victim.id)
            self.store.count_restart(victim.id)
            why = "round robin" if for_job.spec.get("scheduler_enabled") else "preempted"
            self._set(victim.id, "suspended", "Suspended",
                      f"Suspended to let {for_job.name or for_job.id} run ({why}); its "
                      "processes are frozen and go on when resources are free")
        except Exception as e:  # noqa: BLE001 - it goes on running; the other job waits
            log.warning("suspend %s: %s", victim.id, e)
        finally:
            self._suspending.discard(victim.id)
            self._wake.set()

    def _resume_suspended(self, free: dict[str, float], clock: float) -> float:
        """Resume suspended jobs (oldest suspension first) whose CPU is free, or take the place
        of preemptible jobs past their round-robin time; seconds until that is worth a check."""
        next_check = 5.0
        waiting = [j for j in self.store.jobs_with_status(("suspended",))
                   if j.id not in self._resuming and not j.kill_reason]
        for job in sorted(waiting, key=lambda j: self._running_since.get(j.id, 0.0)):
            # it holds its memory and GPUs already: only its CPU must be free
            holds = {**free, "memory": HOLDS, "nvidia_gpu": HOLDS}
            if self._fits(job.spec["resources"], holds, self.config)[0] >= 1:
                free["cpu"] -= job.spec["resources"]["cpu"]
                self._resuming.add(job.id)
                self._spawn(self._resume(job))
            else:
                relaxed = {**free, "memory": HOLDS, "nvidia_gpu": HOLDS}
                if self._preempt(job, relaxed, clock):
                    free["cpu"] = relaxed["cpu"]
                else:
                    next_check = min(next_check, max(0.05, self.config.round_robin_seconds / 4))
        return next_check

    async def _resume(self, job: JobRecord) -> None:
        try:
            await self.runtime.resume(job.id)
            self._running_since[job.id] = asyncio.get_running_loop().time()
            self._set(job.id, "running", "Resumed", "")
        except Exception as e:  # noqa: BLE001
            log.warning("resume %s: %s", job.id, e)
        finally:
            self._resuming.discard(job.id)
            self._wake.set()

    def _restart(self, job: JobRecord, ex: ExitInfo) -> bool:
        """Schedule the job's restart if its policy asks for one; True if it will restart."""
        policy = job.spec.get("restart_policy", "never")
        failed = ex.oom_killed or ex.exit_code != 0
        if job.kill_reason or ex.error or ex.lost or not (
                policy == "always" or (policy == "on-failure" and failed)):
            return False
        if job.life_span is not None and job.run_time(ex.finished_at) >= job.life_span:
            return False  # its life span is over: it ends as it is
        started = self._run_started.pop(job.id, None) or job.started_at
        ran = (ex.finished_at - started).total_seconds() if started else 0.0
        count = self.store.count_restart(job.id)
        # exponential backoff, reset by a long run; counted from this run's exit
        streak = 0 if ran >= 600 else min(count - 1, 5)
        delay = min(30.0, float(2 ** streak))
        what = "ran out of memory" if ex.oom_killed else f"exited with code {ex.exit_code}"
        self._restart_at[job.id] = asyncio.get_running_loop().time() + delay
        self._set(job.id, "pending", "Restarting",
                  f"The job {what}; restart {count} in {delay:g}s (restart policy {policy})")
        return True

    def _finish(self, job_id: str, ex: ExitInfo) -> None:
        job = self.store.get_job(job_id)
        if job is None or job.is_finished:
            return
        code = ex.exit_code
        if self._restart(job, ex):
            return
        if job.kill_reason:
            self._set(job_id, "cancelled", job.kill_reason, _kill_text(job.kill_reason),
                      exit_code=code, at=ex.finished_at)
        elif ex.error:
            self._set(job_id, "failed", "ContainerCannotRun", ex.error, exit_code=code, at=ex.finished_at)
        elif ex.lost:
            self._set(job_id, "failed", "SupervisorLost", ex.lost[:1].upper() + ex.lost[1:],
                      exit_code=code, at=ex.finished_at)
        elif ex.oom_killed:
            self._set(job_id, "failed", "OOMKilled",
                      f"The job ran out of memory: the limit of its preset is "
                      f"{_fmt_mem(job.spec['resources']['memory'])}", exit_code=code, at=ex.finished_at)
        elif code == 0:
            self._set(job_id, "succeeded", "Completed", "", exit_code=0, at=ex.finished_at)
        else:
            self._set(job_id, "failed", "Error", f"The job exited with code {code}",
                      exit_code=code, at=ex.finished_at)

    # -- after a restart -------------------------------------------------------------------
    async def reconcile(self) -> None:
        for job in self.store.jobs_with_status(ACTIVE):
            try:
                await self._reconcile(job)
            except Exception as e:
                if not _transient(e):
                    raise
                # (the disk is full: the server starts all the same, the job catches up)
                self._spawn(self._persist(job.id, "reconcile",
                                          functools.partial(self._reconcile, job)))

    async def _reconcile(self, job: JobRecord) -> None:
        st = self.runtime.inspect(job.id)
        if st.state == State.NOT_FOUND and job.status in ("running", "suspended"):
            # its supervisor may have been lost: the runtime kills what it left of the job
            # and records that end (the process runtime), or knows nothing of it
            await self.runtime.cleanup(job.id)
            st = self.runtime.inspect(job.id)
        if st.state == State.RUNNING:
            self._watch(job.id)  # (first: the loop must not start it again meanwhile)
            if job.status == "pending":
                self._set(job.id, "running", at=st.started_at or now())
        elif st.state == State.EXITED and job.reason == "Restarting" and job.status == "pending":
            pass  # the exit of the run before its restart: the loop starts it again
        elif st.state == State.EXITED:
            assert st.exit is not None
            if job.status == "pending":
                self._set(job.id, "running", at=st.started_at or st.exit.finished_at)
            self._finish(job.id, st.exit)
            await self.runtime.cleanup(job.id)
        elif job.status in ("running", "suspended"):
            self._set(job.id, "failed", "Error",
                      "The job's supervisor is gone and left no exit code")
        elif job.kill_reason:
            self._set(job.id, "cancelled", job.kill_reason, _kill_text(job.kill_reason))


def _transient(e: BaseException) -> bool:
    """A failure that goes away by itself: a full disk (space is freed), a busy database."""
    if disk_full(e):
        return True
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)


def _preset_res(p: Preset) -> dict[str, Any]:
    res: dict[str, Any] = {"cpu": p.cpu, "memory": p.memory}
    if p.nvidia_gpu:
        res["nvidia_gpu"] = p.nvidia_gpu
    return res


def _kill_text(reason: str) -> str:
    return {
        "UserRequested": "The job was killed on request",
        "LifeSpanEnded": "The job ran for its whole life span and was stopped",
        "UserRemoved": "The job's owner was removed",  # neuro-server remove-user
    }.get(reason, reason)
