"""neuro logs: print a job's output; follows it while the job runs."""

from __future__ import annotations

from datetime import datetime

import click

from ..completion.types import JOB
from ..deps import Deps
from ..parse import parse_date_or_delta
from ._jobs_common import follow_output, resolve_job, run_async
from ._options import parsed


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]}, short_help="Print the output of a job"
)
@click.argument("job", type=JOB)
@click.option(
    "--since",
    callback=parsed(parse_date_or_delta),
    metavar="DATE_OR_TIMEDELTA",
    help="Only output printed at or after this time (ISO date, or a delta like 10m).",
)
@click.option("--timestamps", is_flag=True, help="Prefix each line with its time (RFC 3339, UTC).")
@click.pass_context
def command(ctx: click.Context, job: str, since: datetime | None, timestamps: bool) -> None:
    """Print the output of a job, from its start; follow it while the job runs.

    Works for jobs in any status. The stream ends when the job is finished and all its
    output was printed; a dropped connection is retried without losing or repeating output.

    \b
    Examples:
      neuro logs train
      neuro logs --since 10m --timestamps job-0123abcd-...
    """
    run_async(ctx, lambda deps: run(job, since, timestamps, deps))


async def run(ref: str, since: datetime | None, timestamps: bool, deps: Deps) -> int:
    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        await client.jobs.status(job_id)  # a clear "no such job" before streaming
    await follow_output(deps, job_id, since=since, timestamps=timestamps)
    return 0
