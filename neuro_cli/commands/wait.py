"""neuro wait: block until jobs reach a state, for scripts that chain jobs (as Slurm's srun)."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode
from ..parse import parse_timedelta
from ._jobs_common import not_running_text, resolve_job, run_async
from ._options import parsed

if TYPE_CHECKING:
    from neuro_sdk import Client, JobDescription

STATES = ("finished", "succeeded", "running")
POLL = 1.0  # seconds between status requests when the server does not long-poll


@dataclasses.dataclass(frozen=True)
class Options:
    jobs: tuple[str, ...]
    state: str = "finished"
    timeout: float | None = None  # seconds; None: for ever
    exit_code: bool = False


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Wait until jobs finish (or start, or succeed)",
)
@click.argument("jobs", nargs=-1, required=True, type=JOB)
@click.option(
    "--for",
    "state",
    type=click.Choice(STATES),
    default="finished",
    show_default=True,
    help="The state to wait for: finished (any end), succeeded, or running (has started).",
)
@click.option(
    "--timeout",
    callback=parsed(lambda v: parse_timedelta(v).total_seconds()),
    metavar="DURATION",
    help="Give up after this long (e.g. 90s, 1h30m): exit code 124.",
)
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit with the jobs' own exit code (the highest of them) instead of 0.",
)
@click.pass_context
def command(
    ctx: click.Context, jobs: tuple[str, ...], state: str, timeout: float | None, exit_code: bool
) -> None:
    """Wait until each job reaches a state, then print its id and how it ended.

    Exit code: 0 when every job got there; 1 when one never can (it failed while waiting for
    succeeded, or ended without running while waiting for running), with the reason on stderr;
    124 on --timeout; with --exit-code, the highest exit code of the jobs once all finished.

    \b
    Examples:
      neuro wait train
      neuro wait --for running --timeout 5m notebook && neuro port-forward notebook 8888:8888
      job=$(neuro run -q --detach ubuntu -- make test) && neuro wait --exit-code "$job"
    """
    opts = Options(jobs=jobs, state=state, timeout=timeout, exit_code=exit_code)
    run_async(ctx, lambda deps: run(opts, deps), loop=False)


async def run(opts: Options, deps: Deps) -> int:
    deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
    codes: list[int] = []
    async with deps.client() as client:
        for ref in opts.jobs:
            job = await _wait(client, await resolve_job(client, ref), ref, opts.state, deadline)
            deps.io.out(f"{job.id} {_ended(job)}")
            codes.append(_exit_code(job))
    return max(codes) if opts.exit_code else 0


async def _wait(
    client: Client, job_id: str, ref: str, state: str, deadline: float | None
) -> JobDescription:
    job = await client.jobs.status(job_id)
    while True:
        if _reached(job, state):
            return job
        if job.status.is_finished:  # it can no longer get there
            raise CLIError(f"job {ref} will never be {state}: {_never(job, state)}")
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            now = job.status.value + (f" ({job.history.reason})" if job.history.reason else "")
            raise CLIError(
                f"timed out waiting for job {ref} to be {state}: it is {now}", ExitCode.TIMEOUT
            )
        step = 30.0 if left is None else min(left, 30.0)
        changed = await client.jobs.wait_change(job, step)
        if changed is None:  # a server that does not long-poll
            await _sleep(min(POLL, step))
            changed = await client.jobs.status(job_id)
        job = changed


def _reached(job: JobDescription, state: str) -> bool:
    status = job.status.value
    if state == "running":
        return status == "running" or (job.status.is_finished and _started(job))
    if state == "succeeded":
        return status == "succeeded"
    return job.status.is_finished


def _started(job: JobDescription) -> bool:
    return job.history.started_at is not None


def _never(job: JobDescription, state: str) -> str:
    if state == "running":
        return f"it ended without running ({job.status.value}, {job.history.reason})"
    return not_running_text(job).replace("already ", "") + _code_text(job)


def _ended(job: JobDescription) -> str:
    return job.status.value + _code_text(job)


def _code_text(job: JobDescription) -> str:
    code = job.history.exit_code
    return f" (exit code {code})" if code is not None and job.status.is_finished else ""


def _exit_code(job: JobDescription) -> int:
    """The job's own exit code; 1 for a failed or cancelled job without one, 0 while it runs."""
    if not job.status.is_finished:
        return 0
    if job.history.exit_code is not None:
        return min(255, max(0, job.history.exit_code))
    return 0 if job.status.value == "succeeded" else 1


async def _sleep(seconds: float) -> None:
    """Sleep, with or without an event loop running (one-shot commands run without one)."""
    import sys

    if "asyncio" in sys.modules:
        import asyncio

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            await asyncio.sleep(seconds)
            return
    time.sleep(seconds)  # noqa: ASYNC251 - no event loop runs: nothing else waits
