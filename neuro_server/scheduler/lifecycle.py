"""How a run ends, pure: a restart (with its backoff) or the job's final status.

``restart_policy`` on-failure (a non-zero exit or OOM) or always (any exit): instead of
ending, the job restarts in place, as on the platform: it stays running (reason Restarting,
keeping its resources) and starts again after a backoff (1, 2, 4... 30 s; back to 1 s after a
run of 10 minutes).  Never after a kill, the end of its life span, a lost supervisor or a
command that cannot run.
"""

from __future__ import annotations

import dataclasses

from ..model import JobRecord, JobStatus, RestartPolicy
from ..runtime.base import ExitInfo
from .resources import fmt_mem

LONG_RUN = 600.0  # seconds of a run after which the backoff starts again at 1 s
MAX_BACKOFF = 30.0


@dataclasses.dataclass(frozen=True)
class Ending:
    """A job's final status."""

    status: JobStatus
    reason: str
    description: str
    exit_code: int | None


def restarts(job: JobRecord, ex: ExitInfo) -> bool:
    """Whether its restart policy restarts it after this exit."""
    policy = job.spec.restart_policy
    failed = ex.oom_killed or ex.exit_code != 0
    if (
        job.kill_reason
        or ex.error
        or ex.lost
        or not (policy == RestartPolicy.ALWAYS or (policy == RestartPolicy.ON_FAILURE and failed))
    ):
        return False
    # its life span is over: it ends as it is
    return job.life_span is None or job.run_time(ex.finished_at) < job.life_span


def backoff(count: int, ran: float) -> float:
    """Seconds before restart ``count`` (1, 2, 4... 30) of a run that ran ``ran`` seconds:
    exponential, reset by a long run."""
    streak = 0 if ran >= LONG_RUN else min(count - 1, 5)
    return min(MAX_BACKOFF, float(2**streak))


def restart_description(job: JobRecord, ex: ExitInfo, count: int, delay: float) -> str:
    what = "ran out of memory" if ex.oom_killed else f"exited with code {ex.exit_code}"
    return (
        f"The job {what}; restart {count} in {delay:g}s "
        f"(restart policy {job.spec.restart_policy.value})"
    )


def ending(job: JobRecord, ex: ExitInfo) -> Ending:
    """The final status of a job whose run ended (and that does not restart)."""
    code = ex.exit_code
    if job.kill_reason:
        return Ending(JobStatus.CANCELLED, job.kill_reason, kill_text(job.kill_reason), code)
    if ex.error:
        return Ending(JobStatus.FAILED, "ContainerCannotRun", ex.error, code)
    if ex.lost:
        return Ending(JobStatus.FAILED, "SupervisorLost", ex.lost[:1].upper() + ex.lost[1:], code)
    if ex.oom_killed:
        return Ending(
            JobStatus.FAILED,
            "OOMKilled",
            f"The job ran out of memory: the limit of its preset is "
            f"{fmt_mem(job.spec.resources.memory)}",
            code,
        )
    if code == 0:
        return Ending(JobStatus.SUCCEEDED, "Completed", "", 0)
    return Ending(JobStatus.FAILED, "Error", f"The job exited with code {code}", code)


def kill_text(reason: str) -> str:
    return {
        "UserRequested": "The job was killed on request",
        "LifeSpanEnded": "The job ran for its whole life span and was stopped",
        "UserRemoved": "The job's owner was removed",  # neuro-server remove-user
    }.get(reason, reason)
