"""neuro kill: stop jobs; tries every one and exits 1 if any could not be killed."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import ExitCode, classify
from ..parse import parse_signal
from ._jobs_common import not_running_text, resolve_job, run_async
from ._options import parsed


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, short_help="Kill jobs")
@click.argument("jobs", nargs=-1, required=True, type=JOB)
@click.option(
    "-s",
    "--signal",
    "signal",
    callback=parsed(parse_signal),
    metavar="SIGNAL",
    help="Send this signal instead of stopping the job (e.g. USR1); the job goes on.",
)
@click.pass_context
def command(ctx: click.Context, jobs: tuple[str, ...], signal: str | None) -> None:
    """Kill jobs: SIGTERM, then SIGKILL after the server's grace period.

    Prints the id of each job killed. Every job is tried; the exit code is 1 if any could not be
    killed (each failure is printed on stderr). With --signal, only that signal is sent.

    \b
    Examples:
      neuro kill train
      neuro kill --signal USR1 train
      neuro ps -q --tag nightly | xargs neuro kill
    """
    run_async(ctx, lambda deps: run(jobs, deps, signal), loop=False)


async def run(refs: tuple[str, ...], deps: Deps, signal: str | None = None) -> int:
    failed = False
    async with deps.client() as client:
        for ref in refs:
            try:
                job_id = await resolve_job(client, ref)
                job = await client.jobs.status(job_id)
                if job.status.is_finished:
                    deps.io.err(f"ERROR: cannot kill {ref}: {not_running_text(job)}")
                    failed = True
                    continue
                if signal is None:
                    await client.jobs.kill(job_id)
                else:
                    await client.jobs.send_signal(job_id, signal)
                deps.io.out(job_id)
            except Exception as e:
                code, message, _ = classify(e)
                if code == ExitCode.FAILURE:
                    raise
                deps.io.err(f"ERROR: cannot kill {ref}: {message}")
                failed = True
    return int(ExitCode.FAILURE) if failed else 0
