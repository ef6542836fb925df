"""neuro share: let another user see, use or manage one of your jobs."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode
from ._jobs_common import resolve_job, run_async


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Share a job with another user",
)
@click.argument("job", type=JOB)
@click.argument("user", required=False)
@click.argument("action", type=click.Choice(["read", "write", "manage"]), default="read")
@click.option("--revoke", is_flag=True, help="Take the access back instead.")
@click.option("-l", "--list", "list_", is_flag=True, help="List who the job is shared with.")
@click.pass_context
def command(
    ctx: click.Context, job: str, user: str | None, action: str, revoke: bool, list_: bool
) -> None:
    """Share JOB with USER: read (see it, its logs and telemetry; `neuro ps -o OWNER` lists
    it), write (also attach, exec, port-forward, signal and kill it), or manage (also share it).

    JOB is a job id, job:ID, or the name of your most recent job with that name.

    \b
    Examples:
      neuro share train bob
      neuro share job-0123abcd-... alice write
      neuro share --revoke train bob
      neuro share --list train
    """
    if list_ == bool(user):
        raise click.UsageError("give JOB USER [ACTION] to share, or JOB with --list")
    run_async(ctx, lambda deps: run(job, user, action, revoke, list_, deps))


async def run(
    ref: str, user: str | None, action: str, revoke: bool, list_: bool, deps: Deps
) -> int:
    from neuro_sdk import ResourceNotFound

    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        if list_:
            deps.io.out("USER\tACCESS")
            for who, how in await client.jobs.shares(job_id):
                deps.io.out(f"{who}\t{how}")
            return 0
        assert user is not None
        if revoke:
            await client.jobs.unshare(job_id, user)
            deps.io.err(f"Job {job_id} is no longer shared with {user}")
        else:
            try:
                await client.jobs.share(job_id, user, action)
            except ResourceNotFound as e:
                if not str(e).startswith("no user"):
                    raise
                raise CLIError(
                    str(e),
                    ExitCode.NOT_FOUND,
                    hint=f"users are added on the server: `neuro-server add-user "
                    f"{user}` (it prints their token)",
                ) from None
            deps.io.err(f"Shared job {job_id} with {user} ({action})")
    return 0
