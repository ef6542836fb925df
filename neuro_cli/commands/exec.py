"""neuro exec: run a command beside a running job and exit with its exit code."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode
from .._terminal import Outcome, pump_plain, pump_tty
from ._jobs_common import resolve_job, run_async
from ._options import detach_keys_option, tty_option


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Run a command in a running job")
@tty_option
@detach_keys_option
@click.argument("job", type=JOB)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def command(ctx: click.Context, tty: bool | None, detach_keys: bytes, job: str,
            cmd: tuple[str, ...]) -> None:
    """Run CMD in a running job (same environment, working dir and limits) and exit with
    its exit code (125 if the connection ended without one).

    Standard input is passed on; its end reaches the command as EOF.

    \b
    Examples:
      neuro exec train -- nvidia-smi
      neuro exec -t train bash
      echo data | neuro exec -T train -- sh -c 'cat > /tmp/in'
    """
    run_async(ctx, lambda deps: run(job, cmd, tty, detach_keys, deps))


async def run(ref: str, cmd: tuple[str, ...], tty: bool | None, detach_keys: bytes,
              deps: Deps) -> int:
    io = deps.io
    if tty is None:
        tty = io.interactive
    elif tty and not io.interactive:
        raise CLIError("-t needs a terminal: stdin, stdout and stderr must all be terminals",
                       ExitCode.USAGE, hint="use -T")
    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        job = await client.jobs.status(job_id)
        if not job.status.is_running:
            raise CLIError(f"cannot exec in job {job_id}: it is {job.status.value}, not running",
                           ExitCode.BAD_INPUT)
        outcome = Outcome()
        async with client.jobs.exec(job_id, list(cmd), tty=tty, stdin=True, stdout=True,
                                    stderr=not tty) as stream:
            if tty:
                await pump_tty(stream, outcome, detach_keys=detach_keys)
            else:
                await pump_plain(stream, outcome, forward_stdin=True)
    if outcome.detached:
        io.err("\r\nDetached: the command was stopped.")
        return 0
    if outcome.exit_code is None:
        io.err("ERROR: the connection ended without the command's exit code")
        return int(ExitCode.PLATFORM)
    return outcome.exit_code
