"""neuro attach: connect the terminal to a running job's own stdin/stdout."""

from __future__ import annotations

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode
from ._attach import attach_loop
from ._jobs_common import job_ref, not_running_text, resolve_job, run_async, wait_started
from ._options import detach_keys_option, keys_text, port_forward_option


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]}, short_help="Attach to a running job"
)
@click.argument("job", type=JOB)
@detach_keys_option
@port_forward_option
@click.pass_context
def command(
    ctx: click.Context, job: str, detach_keys: bytes, port_forwards: tuple[tuple[int, int], ...]
) -> None:
    """Attach the terminal to a running job's own stdin and stdout.

    For a TTY job (started with -t) typing goes to the job and the detach keys (Ctrl-P Ctrl-Q)
    leave it running. For other jobs the output is streamed; Ctrl-C asks whether to kill the
    job, detach or continue. Exits with the job's exit code when it ends, 0 on detach.

    \b
    Examples:
      neuro attach my-shell
      neuro attach --port-forward 8888:8888 notebook
    """
    run_async(ctx, lambda deps: run(job, detach_keys, port_forwards, deps))


async def run(
    ref: str, detach_keys: bytes, port_forwards: tuple[tuple[int, int], ...], deps: Deps
) -> int:
    from .port_forward import forwarding

    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        job = await client.jobs.status(job_id)
        if job.status.is_pending:
            job = await wait_started(client, job, deps, quiet=False)
        if job.status.is_finished:
            raise CLIError(
                f"job {job_id} is not running: {not_running_text(job)}",
                ExitCode.BAD_INPUT,
                hint=f"`neuro logs {ref}` prints its output",
            )
        name = job_ref(job, client.username)
    tty = bool(job.container.tty)
    if tty and not deps.io.interactive:
        raise CLIError(
            "the job has a TTY: attach from a terminal",
            ExitCode.USAGE,
            hint=f"`neuro logs {ref}` follows its output without one",
        )
    if tty:
        deps.io.err(
            f"Attached to {job_id} (terminal). Press {keys_text(detach_keys)} to detach; "
            "if you see no prompt, press Enter."
        )
    async with forwarding(deps, job_id, port_forwards):
        return await attach_loop(
            deps,
            job_id,
            tty=tty,
            stdin=tty,
            detach_keys=detach_keys,
            from_start=False,
            ref=name,
            restarts=job.history.restarts,
        )
