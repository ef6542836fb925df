"""neuro job bump-life-span: give a running job more time."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ..parse import format_timedelta, parse_life_span
from ._jobs_common import resolve_job, run_async


def _delta(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_life_span(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Extend the life span of a job",
)
@click.argument("job", type=JOB)
@click.argument("timedelta", callback=_delta)
@click.pass_context
def command(ctx: click.Context, job: str, timedelta: float) -> None:
    """Extend the life span of a job by TIMEDELTA (e.g. 1d2h3m4s).

    \b
    Examples:
      neuro job bump-life-span train 2h
    """
    run_async(ctx, lambda deps: run(job, timedelta, deps))


async def run(ref: str, seconds: float, deps: Deps) -> int:
    from ..formatters.common import when

    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        await client.jobs.bump_life_span(job_id, seconds)
        job = await client.jobs.status(job_id)
    msg = f"Updated job {job_id} life span to be {format_timedelta(job.life_span or 0)}"
    deps.io.out(msg)
    if job.life_span and job.history.started_at:
        from datetime import timedelta

        ends = job.history.started_at + timedelta(seconds=job.life_span)
        deps.io.err(f"The job will be stopped {when(ends, deps.now(), True)} ({ends.isoformat()})")
    return 0
