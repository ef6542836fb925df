"""neuro job send-signal: deliver a signal to a running job (e.g. "checkpoint now")."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ..parse import parse_signal
from ._jobs_common import resolve_job, run_async
from ._options import parsed


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]}, short_help="Send a signal to a job"
)
@click.argument("job", type=JOB)
@click.argument("signal", callback=parsed(parse_signal))
@click.pass_context
def command(ctx: click.Context, job: str, signal: str) -> None:
    """Send SIGNAL (a name like USR1 or a number) to the processes of a running job.

    \b
    Examples:
      neuro job send-signal train USR1
      neuro job send-signal train SIGHUP
    """
    run_async(ctx, lambda deps: run(job, signal, deps))


async def run(ref: str, signal: str, deps: Deps) -> int:
    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        await client.jobs.send_signal(job_id, signal)
    deps.io.out(f"Sent {signal} to {job_id}")
    return 0
