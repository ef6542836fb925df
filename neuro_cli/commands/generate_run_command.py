"""neuro job generate-run-command: the `neuro run` line that recreates a job."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ._jobs_common import resolve_job, run_async


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Print the run command of a job",
)
@click.argument("job", type=JOB)
@click.pass_context
def command(ctx: click.Context, job: str) -> None:
    """Print the `neuro run` command that starts a job like JOB: image, command, preset, name,
    tags, description, environment, secrets, working dir, life span, restart policy.

    \b
    Examples:
      neuro job generate-run-command train
      eval "$(neuro job generate-run-command train | sed 's/ -n train / -n train-2 /')"
    """
    run_async(ctx, lambda deps: run(job, deps))


async def run(ref: str, deps: Deps) -> int:
    from ..formatters.jobs import run_command

    async with deps.client() as client:
        job = await client.jobs.status(await resolve_job(client, ref))
    deps.io.out(run_command(job))
    return 0
