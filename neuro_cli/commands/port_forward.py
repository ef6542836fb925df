"""neuro port-forward: reach a job's ports from this machine."""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator

import click

from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode, Interrupted
from ._jobs_common import not_running_text, resolve_job, run_async
from ._options import _ports


@contextlib.asynccontextmanager
async def forwarding(
    deps: Deps, job_id: str, pairs: tuple[tuple[int, int], ...]
) -> AsyncIterator[None]:
    """Forward every LOCAL:REMOTE pair while the body runs."""
    if not pairs:
        yield
        return
    async with deps.client() as client, contextlib.AsyncExitStack() as stack:
        for local, remote in pairs:
            try:
                await stack.enter_async_context(client.jobs.port_forward(job_id, local, remote))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise CLIError(
                        f"local port {local} is already in use",
                        ExitCode.FAILURE,
                        hint=f"pick another one, e.g. {local + 10000 if local < 55535 else 0}:{remote}",
                    ) from None
                raise
            deps.io.err(f"Port localhost:{local} will be forwarded to port {remote} of {job_id}")
        yield


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Forward local ports to a job",
)
@click.argument("job", type=JOB)
@click.argument("ports", nargs=-1, required=True, callback=_ports, metavar="LOCAL:REMOTE...")
@click.pass_context
def command(ctx: click.Context, job: str, ports: tuple[tuple[int, int], ...]) -> None:
    """Forward local ports to ports of a running job, until Ctrl-C or the job ends.

    Each connection to localhost:LOCAL reaches the job's port REMOTE, without publishing
    anything on the job's host.

    \b
    Examples:
      neuro port-forward notebook 8888:8888
      neuro port-forward train 6006:6006 8080:80
    """
    run_async(ctx, lambda deps: run(job, ports, deps))


async def run(ref: str, ports: tuple[tuple[int, int], ...], deps: Deps) -> int:
    async with deps.client() as client:
        job_id = await resolve_job(client, ref)
        job = await client.jobs.status(job_id)
        if not job.status.is_running:
            raise CLIError(
                f"job {job_id} is not running: {not_running_text(job)}", ExitCode.BAD_INPUT
            )
    try:
        async with forwarding(deps, job_id, ports):
            deps.io.err("Press Ctrl-C to stop forwarding")
            job = await wait_finished(deps, job_id)
    except asyncio.CancelledError:
        deps.io.err("Stopped forwarding")
        raise Interrupted from None  # Ctrl-C ends it as it ends `logs`: 130
    reason = f" ({job.history.reason})" if job.history.reason else ""
    ended = {"succeeded": "succeeded", "cancelled": "was cancelled"}.get(
        job.status.value, job.status.value
    )
    deps.io.err(f"Job {job_id} {ended}{reason}: forwarding stopped")
    return 0


async def wait_finished(deps: Deps, job_id: str):  # type: ignore[no-untyped-def]
    """Poll the job's status (riding out a dropped server connection) until it is finished."""
    from ._jobs_common import is_connection_error

    delay = 1.0
    while True:
        try:
            async with deps.client() as client:
                job = await client.jobs.status(job_id)
            if job.status.is_finished:
                return job
            delay = 1.0
        except Exception as e:
            if not is_connection_error(e):
                raise
            deps.io.err(f"Connection to the server lost; retrying in {delay:.0f}s")
            delay = min(delay * 2, 10.0)
        await asyncio.sleep(delay)
