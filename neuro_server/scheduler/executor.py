"""The scheduler's executor: takes a snapshot of the store and runtime, asks the plan
(plan.py) what to do, and applies its decisions (store writes, runtime calls), once per step.
What happens to a run after its start (its end, a restart, reconciling after a server
restart) is watch.py's."""

from __future__ import annotations

import asyncio
import logging
import uuid

from ..model import ACTIVE, JobRecord, JobStatus, NewJob, now
from ..runtime.base import RuntimeError_
from . import launch
from .lifecycle import kill_text
from .plan import Fail, Plan, Resume, Signal, Snapshot, Start, Stop, Suspend, Wait, plan
from .resources import free_of, preset_counts
from .watch import Watching

log = logging.getLogger("neuro_server.scheduler")


class NameTaken(Exception):
    pass


class QuotaExhausted(Exception):
    pass


class Scheduler(Watching):
    # -- lifecycle of the scheduler itself -------------------------------------------------
    async def start(self) -> None:
        if self.runtime.capabilities.reports_progress:
            # a runtime that pulls images tells what a start is doing: shown as pending reasons
            self.runtime.set_progress_listener(self._progress)
        self.reserve.ensure()
        await self.reconcile()
        self._loop_task = asyncio.create_task(self._loop(), name="scheduler")

    async def close(self) -> None:
        tasks = [t for t in (self._loop_task, *self._watchers.values(), *self._tasks) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _progress(self, job_id: str, reason: str, description: str) -> None:
        job = self.store.get_job(job_id)
        if job is not None and job.status == JobStatus.PENDING:
            self._set(job_id, JobStatus.PENDING, reason, description)

    # -- requests --------------------------------------------------------------------------
    def _starting_jobs(self) -> list[JobRecord]:
        return [j for i in self._starting if (j := self.store.get_job(i)) is not None]

    def seats(self, owner: str) -> tuple[int, int]:
        """(running or starting jobs of ``owner``, the per-user limit; 0: none)."""
        running = sum(
            1 for j in self.store.jobs_with_status((JobStatus.RUNNING,)) if j.owner == owner
        )
        running += sum(1 for j in self._starting_jobs() if j.owner == owner)
        return running, self.config.max_running_jobs

    def create(self, owner: str, new: NewJob) -> JobRecord:
        limit = self.config.max_running_jobs
        if limit and not new.spec.wait_for_jobs_quota:
            waiting = sum(
                1 for j in self.store.jobs_with_status((JobStatus.PENDING,)) if j.owner == owner
            )
            running, _ = self.seats(owner)
            if running + waiting >= limit:
                raise QuotaExhausted(
                    f"quota exhausted: {running} of your {limit} jobs are running"
                    + (f" and {waiting} waiting" if waiting else "")
                    + "; wait for one to end, or queue this one (--wait-for-seat)"
                )
        job_id = f"job-{uuid.uuid4()}"
        job = self.store.create_job(
            job_id=job_id,
            owner=owner,
            name=new.name,
            spec=new.spec,
            tags=new.tags,
            life_span=new.life_span,
            reason="Creating",
        )
        if job is None:
            raise NameTaken(
                f"a job named {new.name!r} is already active: pick another name or kill it"
            )
        self._wake.set()
        return job

    async def kill(self, job: JobRecord, reason: str = "UserRequested") -> JobRecord:
        """Cancel a job and return once it has stopped (bounded by the kill grace)."""
        if job.is_finished:
            return job
        self.store.set_kill_reason(job.id, reason)
        # as it is now (a run may have ended since the caller read it: from here on, its end
        # is final, see lifecycle.restarts)
        job = self.store.get_job(job.id) or job
        if job.is_finished:
            return job
        if (job.status == JobStatus.PENDING or job.restarting) and job.id not in self._starting:
            # nothing runs (between two runs too): cancelled at once, never started again
            self._restart_at.pop(job.id, None)
            return self._set(job.id, JobStatus.CANCELLED, reason, kill_text(reason))
        if job.status == JobStatus.SUSPENDED:  # frozen processes cannot handle SIGTERM: thaw them
            try:
                await self.runtime.resume(job.id)
            except Exception as e:  # noqa: BLE001
                log.warning("resume %s to kill it: %s", job.id, e)
        try:
            await self.runtime.stop(job.id, grace=self.config.kill_grace_seconds)
        except Exception as e:  # noqa: BLE001 - the watcher still decides the final status
            log.warning("stop %s: %s", job.id, e)
        deadline = asyncio.get_running_loop().time() + self.config.kill_grace_seconds + 5
        while True:
            current = self.store.get_job(job.id)
            assert current is not None
            left = deadline - asyncio.get_running_loop().time()
            if current.is_finished or left <= 0:
                return current
            await self.wait_change(job.id, min(left, 0.5))

    def bump_life_span(self, job: JobRecord, seconds: float) -> JobRecord:
        job = self.store.add_life_span(job.id, seconds)
        self._wake.set()
        return job

    def capacity(self) -> dict[str, int]:
        """How many jobs of each preset could start now."""
        total = self.runtime.capacity()
        free = free_of(
            total,
            self.store.jobs_with_status((JobStatus.RUNNING, JobStatus.SUSPENDED)),
            self._starting_jobs(),
            self._suspending,
            self._resuming,
        )
        return preset_counts(self.config.presets, free, total)

    # -- the loop: snapshot, plan, apply -------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            self.reserve.ensure()  # (taken again once a full disk has room)
            try:
                next_check = self._step()
            except Exception:
                log.exception("scheduler step failed")
                next_check = 1.0
            # (not wait_for: on Python 3.11 it swallows a cancellation that comes as the
            # event is set, say by a watcher cancelled by close(), and the loop never ends)
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=next_check)
            finally:
                waiter.cancel()

    def snapshot(self) -> Snapshot:
        return Snapshot(
            jobs=self.store.jobs_with_status(ACTIVE),
            capacity=self.runtime.capacity(),
            clock=asyncio.get_running_loop().time(),
            now=now(),
            starting=self._starting_jobs(),
            suspending=frozenset(self._suspending),
            resuming=frozenset(self._resuming),
            watched=frozenset(self._watchers),
            restart_at=dict(self._restart_at),
            running_since=dict(self._running_since),
            max_running_jobs=self.config.max_running_jobs,
            round_robin_seconds=self.config.round_robin_seconds,
        )

    def _step(self) -> float:
        """One step: apply the plan's decisions; seconds until the next step is due."""
        snapshot = self.snapshot()
        decided: Plan = plan(snapshot)
        jobs = {j.id: j for j in snapshot.jobs}
        for d in decided.decisions:
            job = jobs[d.job_id]
            if isinstance(d, Wait):
                self._set(d.job_id, JobStatus.PENDING, d.reason, d.description)
            elif isinstance(d, Fail):
                self._set(d.job_id, JobStatus.FAILED, d.reason, d.description)
            elif isinstance(d, Start):
                self._restart_at.pop(d.job_id, None)
                self.store.set_devices(d.job_id, d.devices)
                self._starting.add(d.job_id)
                self._spawn(self._start_job(job))
            elif isinstance(d, Suspend):
                self._suspending.add(d.job_id)
                self._spawn(self._suspend(d))
            elif isinstance(d, Resume):
                self._resuming.add(d.job_id)
                self._spawn(self._resume(d.job_id))
            elif isinstance(d, Stop):
                self._spawn(self.kill(job, d.reason))
            elif isinstance(d, Signal):
                self.store.set_warned(d.job_id, d.life_span)
                self._spawn(self._warn(job, d))
        return decided.next_check

    async def _warn(self, job: JobRecord, d: Signal) -> None:
        """The job's life-span signal, once per life span (a bump re-arms it)."""
        warn = job.spec.life_span_signal
        assert warn is not None  # (the plan signals only a job that has one)
        try:
            await self.runtime.signal(job.id, d.signum, group=False)
        except Exception as e:  # noqa: BLE001 - it may have ended meanwhile
            log.warning("life-span signal %s to %s: %s", warn.signal, job.id, e)
        else:
            log.info(
                "sent %s to %s, %g s before its life span ends",
                warn.signal,
                job.id,
                warn.seconds_before,
            )

    async def _start_job(self, job: JobRecord) -> None:
        try:
            if not job.restarting:  # (a restart stays running: the job keeps its seat)
                self._set(
                    job.id,
                    JobStatus.PENDING,
                    self.runtime.info().start_reason,
                    "Starting the job's process",
                )
            job = self.store.get_job(job.id) or job  # with the devices assigned to it
            try:
                env, files = launch.secrets(
                    self.store,
                    job,
                    lambda: launch.passed_config(self.config, job, self.api_url, self.issue_token),
                )
                env = launch.device_env(
                    job, env, self.runtime.capacity(), self.runtime.capabilities
                )
                # the uid it runs as (its home, storage and ports made ready), else None: as
                # the server's user (RuntimeError_ when it may not run here at all)
                who = await self.users.prepare(job.owner) if self.users is not None else None
                mounts = launch.storage_mounts(self.config, job) + await launch.disk_mounts(
                    self.config, self.store, job, who
                )
                info = await self.runtime.start(launch.job_spec(job, env, files, mounts, who))
            except RuntimeError_ as e:
                self._set(job.id, JobStatus.FAILED, e.reason, str(e))
                return
            except Exception as e:
                log.exception("start %s", job.id)
                self._set(
                    job.id, JobStatus.FAILED, "ContainerCannotRun", f"the job could not start: {e}"
                )
                return
            current = self.store.get_job(job.id)
            self._run_started[job.id] = info.started_at
            self.store.set_address(job.id, info.address, info.hostname)
            self._running_since[job.id] = asyncio.get_running_loop().time()
            self._set(job.id, JobStatus.RUNNING, "", "", at=info.started_at, limits=info.limits)
            if current is not None and current.kill_reason:
                # killed while starting: stop it now
                await self.runtime.stop(job.id, grace=self.config.kill_grace_seconds)
            self._watch(job.id)
        finally:
            self._starting.discard(job.id)
            self._wake.set()

    # -- suspensions and resumptions (preemptible jobs) ------------------------------------
    async def _suspend(self, d: Suspend) -> None:
        try:
            await self.runtime.suspend(d.job_id)
            self.store.count_restart(d.job_id)
            self._set(d.job_id, JobStatus.SUSPENDED, "Suspended", d.description)
        except Exception as e:  # noqa: BLE001 - it goes on running; the other job waits
            log.warning("suspend %s: %s", d.job_id, e)
        finally:
            self._suspending.discard(d.job_id)
            self._wake.set()

    async def _resume(self, job_id: str) -> None:
        try:
            await self.runtime.resume(job_id)
            self._running_since[job_id] = asyncio.get_running_loop().time()
            self._set(job_id, JobStatus.RUNNING, "Resumed", "")
        except Exception as e:  # noqa: BLE001
            log.warning("resume %s: %s", job_id, e)
        finally:
            self._resuming.discard(job_id)
            self._wake.set()
