"""The scheduler's policy, pure: from a snapshot of the jobs, the runtime's capacity and the
time, the decisions of one step.  No store, no runtime, no clock of its own: tested with tables
(tests/server/test_plan.py); the executor (executor.py) applies what it decides.

One step, in order:
0. Jobs between two runs (restart policy): running, reason Restarting, they keep their
   resources, GPUs, disks and seat (as a restarted pod does), so each starts again once its
   backoff is over, with no wait for room; not once it is killed or its life span is over.
1. Pending jobs, oldest first: each waits out its seat (the owner's
   ``max_running_jobs``) and its disks (one writer at a time), then starts if it fits in what
   is free (with GPUs of its own), fails past its ``schedule_timeout``, or suspends running
   preemptible jobs to make room (longest-running first; between preemptible jobs only those
   past their round-robin time; never one between two runs: it has nothing to freeze), or
   waits, saying for what.
2. Suspended jobs, oldest suspension first: resumed when their CPU is free, else they may take
   the place of preemptible jobs past their round-robin time.
3. Running jobs with a life span: stopped at its end (also between two runs: the backoff is
   run time); sent their life-span signal when due (in a run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime

from ..model import JobRecord, JobStatus
from ..runtime.base import Capacity
from .resources import Free, fits, free_of

IDLE_CHECK = 5.0  # seconds between steps when nothing is due sooner
MIN_CHECK = 0.05


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What one step decides on."""

    jobs: Sequence[JobRecord]  # the active ones (pending, suspended, running), oldest first
    capacity: Capacity  # what the runtime can give jobs in all
    clock: float  # the event loop's time (restart backoffs, round robin)
    now: datetime  # wall time (life spans, schedule timeouts)
    starting: Sequence[JobRecord] = ()  # jobs whose start is under way
    suspending: frozenset[str] = frozenset()  # suspensions and resumptions under way
    resuming: frozenset[str] = frozenset()
    watched: frozenset[str] = frozenset()  # jobs whose run is being watched to its end
    restart_at: Mapping[str, float] = dataclasses.field(default_factory=dict)  # clock of next start
    running_since: Mapping[str, float] = dataclasses.field(
        default_factory=dict
    )  # clock of last (re)start
    max_running_jobs: int = 0  # per owner; 0: no limit
    round_robin_seconds: float = 60.0


@dataclasses.dataclass(frozen=True)
class Start:
    job_id: str
    devices: tuple[int, ...] = ()  # the GPUs it gets (NVML indices)


@dataclasses.dataclass(frozen=True)
class Wait:
    """It stays pending, for this reason (in the store's words)."""

    job_id: str
    reason: str
    description: str


@dataclasses.dataclass(frozen=True)
class Fail:
    job_id: str
    reason: str
    description: str


@dataclasses.dataclass(frozen=True)
class Suspend:
    job_id: str
    description: str  # why, for the suspended job's status


@dataclasses.dataclass(frozen=True)
class Resume:
    job_id: str


@dataclasses.dataclass(frozen=True)
class Stop:
    job_id: str
    reason: str = "LifeSpanEnded"


@dataclasses.dataclass(frozen=True)
class Signal:
    """Its life-span signal, once for this life span."""

    job_id: str
    signum: int
    life_span: float


Decision = Start | Wait | Fail | Suspend | Resume | Stop | Signal


@dataclasses.dataclass(frozen=True)
class Plan:
    decisions: tuple[Decision, ...]
    next_check: float  # seconds until the next step is due (sooner when something changes)


def plan(s: Snapshot) -> Plan:
    return _Planner(s).run()


class _Planner:
    """One step's working state: what is free, which GPUs and seats are taken, what is being
    suspended, as the decisions so far left them."""

    def __init__(self, s: Snapshot) -> None:
        self.s = s
        self.out: list[Decision] = []
        self.next_check = IDLE_CHECK
        self.running = [j for j in s.jobs if j.status == JobStatus.RUNNING]
        self.holding = [j for j in s.jobs if j.status in (JobStatus.RUNNING, JobStatus.SUSPENDED)]
        self.starting = list(s.starting)  # (grows as this step starts jobs)
        self.suspending = set(s.suspending)
        self.resuming = set(s.resuming)
        self.free = free_of(s.capacity, self.holding, s.starting, s.suspending, s.resuming)
        # GPUs of running and starting jobs
        self.taken = {d for j in (*self.running, *s.starting) for d in j.devices}

    def run(self) -> Plan:
        self._restarts()
        self._pending()
        self._suspended()
        self._life_spans()
        return Plan(tuple(self.out), max(MIN_CHECK, self.next_check))

    def _due(self, seconds: float) -> None:
        self.next_check = min(self.next_check, seconds)

    # -- 0. restarts -----------------------------------------------------------------------
    def _restarts(self) -> None:
        s = self.s
        starting_ids = {j.id for j in s.starting}
        for job in s.jobs:
            if (
                not job.restarting
                or job.id in starting_ids
                or job.kill_reason
                or job.id in s.watched  # (its last run is still being wound up)
                or (job.life_span is not None and job.run_time(s.now) >= job.life_span)
            ):
                continue
            wait = s.restart_at.get(job.id, 0.0) - s.clock
            if wait > 0:
                self._due(wait)
            else:
                self.out.append(Start(job.id, job.devices))  # (its own GPUs, held meanwhile)

    # -- 1. pending jobs -------------------------------------------------------------------
    def _pending(self) -> None:
        s = self.s
        limit = s.max_running_jobs
        pending = [j for j in s.jobs if j.status == JobStatus.PENDING]
        starting_ids = {j.id for j in s.starting}
        seats: dict[str, int] = {}  # owner -> running or starting jobs
        if limit:
            for owner in {j.owner for j in pending}:
                seats[owner] = sum(1 for j in (*self.running, *s.starting) if j.owner == owner)
        for job in pending:
            if job.id in starting_ids or job.kill_reason or job.id in s.watched:
                continue
            if limit and seats.get(job.owner, 0) >= limit:
                self.out.append(
                    Wait(
                        job.id,
                        "Scheduling",
                        f"Waiting for a seat: {seats[job.owner]} of your {limit} jobs are running",
                    )
                )
                continue
            busy = self._disk_conflict(job)
            if busy:
                self.out.append(Wait(job.id, "DiskUnavailable", busy))
                continue
            res = job.spec.resources
            n, what = fits(res, self.free, s.capacity)
            timeout = job.spec.schedule_timeout
            if n < 1 and timeout is not None:
                left = timeout - (s.now - job.created_at).total_seconds()
                if left <= 0:
                    self.out.append(
                        Fail(
                            job.id,
                            "ClusterScaleUpFailed",
                            f"Not scheduled within its schedule timeout of "
                            f"{timeout:g}s: needs {what}",
                        )
                    )
                    continue
                self._due(left)
            if n < 1 and self._preempt(job, self.free):
                continue  # it starts once the suspensions are done
            if n >= 1:
                seats[job.owner] = seats.get(job.owner, 0) + 1
                free_gpus = [i for i in range(s.capacity.nvidia_gpu) if i not in self.taken]
                devices = tuple(free_gpus[: res.nvidia_gpu])
                self.taken.update(devices)
                self.starting.append(job)
                self.free.take(res)
                self.out.append(Start(job.id, devices))
            else:
                self.out.append(Wait(job.id, "Scheduling", f"Waiting for resources: needs {what}"))

    def _disk_conflict(self, job: JobRecord) -> str | None:
        """Why ``job`` cannot have its disks now: another active job writes to one (or, for a
        writer, uses it at all); None when it can."""
        wanted = {d.id: d.read_only for d in job.spec.container.disk_volumes}
        if not wanted:
            return None
        holders = [j for j in (*self.holding, *self.starting) if j.id != job.id]
        for other in holders:
            for d in other.spec.container.disk_volumes:
                if d.id in wanted and not (wanted[d.id] and d.read_only):
                    return (
                        f"Waiting for job {other.name or other.id} to release disk "
                        f"{d.ref} (one writer at a time)"
                    )
        return None

    # -- preemption (presets with scheduler_enabled) ----------------------------------------
    def _victims(self, job: JobRecord, free: Free) -> list[JobRecord] | None:
        """Running preemptible jobs whose CPU, once frozen, lets ``job`` fit (the longest-
        running first); None when no such set exists.  A preemptible ``job`` (round robin)
        may only take the place of jobs that have run for the round-robin time."""
        s = self.s
        candidates = []
        for r in self.running:
            if (
                r.id == job.id
                or not r.spec.scheduler_enabled
                or r.restarting
                or r.kill_reason
                or r.id in self.suspending
                or r.id in self.resuming
            ):
                continue
            since = s.running_since.get(r.id, 0.0)
            if job.spec.scheduler_enabled and s.clock - since < s.round_robin_seconds:
                continue
            candidates.append((since, r))
        candidates.sort(key=lambda c: c[0])
        trial = free.copy()
        chosen: list[JobRecord] = []
        for _since, r in candidates:
            if fits(job.spec.resources, trial, s.capacity)[0] >= 1:
                break
            trial.cpu += r.spec.resources.cpu
            chosen.append(r)
        if chosen and fits(job.spec.resources, trial, s.capacity)[0] >= 1:
            return chosen
        return None

    def _preempt(self, job: JobRecord, free: Free) -> bool:
        """Suspend the victims that make room for ``job`` (its CPU taken from ``free`` now:
        it must not go to a younger job meanwhile); False when there are none."""
        victims = self._victims(job, free)
        if not victims:
            return False
        why = "round robin" if job.spec.scheduler_enabled else "preempted"
        for v in victims:
            self.suspending.add(v.id)
            free.cpu += v.spec.resources.cpu
            self.out.append(
                Suspend(
                    v.id,
                    f"Suspended to let {job.name or job.id} run ({why}); "
                    "its processes are frozen and go on when resources "
                    "are free",
                )
            )
        free.cpu -= job.spec.resources.cpu
        return True

    # -- 2. suspended jobs -----------------------------------------------------------------
    def _suspended(self) -> None:
        s = self.s
        waiting = [
            j
            for j in s.jobs
            if j.status == JobStatus.SUSPENDED and j.id not in self.resuming and not j.kill_reason
        ]
        for job in sorted(waiting, key=lambda j: s.running_since.get(j.id, 0.0)):
            # it holds its memory and GPUs already: only its CPU must be free
            if fits(job.spec.resources, self.free.frozen_job(), s.capacity)[0] >= 1:
                self.free.cpu -= job.spec.resources.cpu
                self.resuming.add(job.id)
                self.out.append(Resume(job.id))
                continue
            relaxed = self.free.frozen_job()
            if self._preempt(job, relaxed):
                self.free.cpu = relaxed.cpu
            else:
                self._due(max(MIN_CHECK, s.round_robin_seconds / 4))

    # -- 3. life spans -----------------------------------------------------------------------
    def _life_spans(self) -> None:
        for job in self.running:
            if job.life_span is None or job.kill_reason:
                continue
            left = job.life_span - job.run_time(self.s.now)
            if left <= 0:
                self.out.append(Stop(job.id, "LifeSpanEnded"))
                continue
            self._due(left)
            if job.restarting:
                continue  # its signal waits for its next run: there is no process to get it
            warn_in = job.life_span_warning_due(self.s.now)
            warn = job.spec.life_span_signal
            if warn is not None and warn_in is not None and warn_in <= 0:
                self.out.append(Signal(job.id, warn.signum, job.life_span))
            elif warn_in is not None:
                self._due(warn_in)
