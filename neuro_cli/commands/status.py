"""neuro status: everything about one job."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ._jobs_common import resolve_job, run_async
from ._options import json_option


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]}, short_help="Show the status of a job"
)
@click.argument("job", type=JOB)
@json_option
@click.pass_context
def command(ctx: click.Context, job: str, as_json: bool) -> None:
    """Show the status of a job: what runs, where, with which limits, and every transition.

    JOB is a job id or name.

    \b
    Examples:
      neuro status job-0123abcd-...
      neuro status train
      neuro status --json train | jq .status
    """
    run_async(ctx, lambda deps: run(job, deps, as_json), loop=False)


async def run(ref: str, deps: Deps, as_json: bool = False) -> int:
    from ..formatters.jobs import status_plain, status_renderable

    async with deps.client() as client:
        job = await client.jobs.status(await resolve_job(client, ref))
    if as_json:
        from ..formatters.json_out import dumps, job_dict

        deps.io.out(dumps(job_dict(job, transitions=True)))
        return 0
    now = deps.now()
    if deps.io.stdout_tty:
        deps.io.page(status_renderable(job, now))
    else:
        for line in status_plain(job, now):
            deps.io.out(line)
    return 0
