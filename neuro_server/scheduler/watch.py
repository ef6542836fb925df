"""A run after its start: watched to its end, which is recorded (or becomes a restart), and
every active job brought up to date with the runtime when the server starts (reconcile).

A full disk never loses a job's end: a record that fails for want of space (or a busy
database) is retried with backoff until it holds, and the first such failure gives up the
data dir's reserve (diskfull.py) so that it usually holds at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..diskfull import describe, disk_full
from ..model import ACTIVE, RESTARTING, JobRecord, JobStatus, now
from ..runtime.base import ExitInfo, JobState, State
from . import launch, lifecycle
from .state import SchedulerState

log = logging.getLogger("neuro_server.scheduler")

RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between tries of a record that could not be made
T = TypeVar("T")


class Watching(SchedulerState):
    def _watch(self, job_id: str) -> None:
        if job_id not in self._watchers:
            self._watchers[job_id] = asyncio.create_task(
                self._watch_job(job_id), name=f"watch {job_id}"
            )

    async def _watch_job(self, job_id: str) -> None:
        """Wait for the job's end and record it; neither gives up on a full disk (_persist)."""

        async def finish() -> None:
            self._finish(job_id, exit_info)

        async def lost(e: Exception) -> None:
            self._set(job_id, JobStatus.FAILED, "Error", f"lost track of the job: {e}")

        try:
            exit_info = await self._persist(
                job_id, "wait for the end of", lambda: self.runtime.wait(job_id)
            )
            await self._persist(job_id, "record the end of", finish)
            await self.runtime.cleanup(job_id)
            await launch.release_disks(self.config, self.store, job_id, self._starting)
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
                if not transient(e):
                    raise
                if disk_full(e) and self.reserve.release():
                    log.warning(
                        "the disk is full (%s): gave up the data dir's reserve to %s job %s",
                        describe(e),
                        what,
                        job_id,
                    )
                    continue
                if not said:
                    log.warning(
                        "cannot %s job %s: %s; retrying until it can", what, job_id, describe(e)
                    )
                    said = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _restart(self, job: JobRecord, ex: ExitInfo) -> bool:
        """Schedule the job's restart if its policy asks for one; True if it will restart."""
        if not lifecycle.restarts(job, ex):
            return False
        started = self._run_started.pop(job.id, None) or job.started_at
        ran = (ex.finished_at - started).total_seconds() if started else 0.0
        count = self.store.count_restart(job.id)
        # counted from this run's exit
        delay = lifecycle.backoff(count, ran)
        self._restart_at[job.id] = asyncio.get_running_loop().time() + delay
        # in place, as on the platform: it stays running and keeps its seat; the transition
        # has the run's exit code
        self._set(
            job.id,
            JobStatus.RUNNING,
            RESTARTING,
            lifecycle.restart_description(job, ex, count, delay),
            exit_code=ex.exit_code,
            at=ex.finished_at,
        )
        return True

    def _finish(self, job_id: str, ex: ExitInfo) -> None:
        job = self.store.get_job(job_id)
        if job is None or job.is_finished:
            return
        if self._restart(job, ex):
            return
        end = lifecycle.ending(job, ex)
        self._set(
            job_id,
            end.status,
            end.reason,
            end.description,
            exit_code=end.exit_code,
            at=ex.finished_at,
        )

    # -- after a restart of the server ---------------------------------------------------------
    async def reconcile(self) -> None:
        """Bring every active job up to date with what the runtime knows, so jobs that ran or
        ended while the server was down are neither lost nor restarted.  A job whose
        supervisor was lost has what is left of it killed by the runtime and ends
        failed/SupervisorLost."""
        for job in self.store.jobs_with_status(ACTIVE):
            try:
                await self._reconcile(job)
            except Exception as e:
                if not transient(e):
                    raise
                # (the disk is full: the server starts all the same, the job catches up)
                self._spawn(
                    self._persist(job.id, "reconcile", functools.partial(self._reconcile, job))
                )

    async def _reconcile(self, job: JobRecord) -> None:
        st = await self.runtime.inspect(job.id)
        if job.restarting:
            await self._reconcile_restart(job, st)
            return
        held = job.status in (JobStatus.RUNNING, JobStatus.SUSPENDED)
        if st.state == State.NOT_FOUND and held:
            # its supervisor may have been lost: the runtime kills what it left of the job
            # and records that end (the process runtime), or knows nothing of it
            await self.runtime.cleanup(job.id)
            st = await self.runtime.inspect(job.id)
        pending = job.status == JobStatus.PENDING
        if st.state == State.RUNNING:
            self._watch(job.id)  # (first: the loop must not start it again meanwhile)
            if pending:
                self._set(job.id, JobStatus.RUNNING, at=st.started_at or now())
        elif st.state == State.EXITED and job.reason == RESTARTING and pending:
            pass  # (a store of a server that restarted jobs from pending) the loop starts it
        elif st.state == State.EXITED:
            assert st.exit is not None
            if pending:
                self._set(job.id, JobStatus.RUNNING, at=st.started_at or st.exit.finished_at)
            self._finish(job.id, st.exit)
            await self.runtime.cleanup(job.id)
        elif held:
            self._set(
                job.id,
                JobStatus.FAILED,
                "Error",
                "The job's supervisor is gone and left no exit code",
            )
        elif job.kill_reason:
            self._set(
                job.id, JobStatus.CANCELLED, job.kill_reason, lifecycle.kill_text(job.kill_reason)
            )

    async def _reconcile_restart(self, job: JobRecord, st: JobState) -> None:
        """A job that waited out a restart's backoff when the server stopped: its next run
        started meanwhile (it is watched), else the loop starts it now (its backoff was
        kept in memory only).  Its previous run's exit is no loss of its supervisor."""
        if st.state == State.RUNNING:
            self._watch(job.id)
            self._set(job.id, JobStatus.RUNNING, at=st.started_at or now())
            return
        if st.state == State.EXITED:
            await self.runtime.cleanup(job.id)  # (if the watcher had not yet)
        if job.kill_reason:  # (killed as the server stopped, or by remove-user meanwhile)
            self._set(
                job.id, JobStatus.CANCELLED, job.kill_reason, lifecycle.kill_text(job.kill_reason)
            )


def transient(e: BaseException) -> bool:
    """A failure that goes away by itself: a full disk (space is freed), a busy database."""
    if disk_full(e):
        return True
    return isinstance(e, sqlite3.OperationalError) and "locked" in str(e)
