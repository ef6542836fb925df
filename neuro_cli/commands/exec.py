"""neuro exec: run a command beside a running job and exit with its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys

import click

from .._terminal import Outcome, pump_plain, pump_tty, read_stdin, terminal_size
from ..completion.types import JOB
from ..deps import Deps
from ..errors import CLIError, ExitCode
from ._jobs_common import not_running_text, resolve_job, run_async
from ._options import detach_keys_option, tty_option


@dataclasses.dataclass(frozen=True)
class Options:
    job: str
    cmd: tuple[str, ...]
    tty: bool | None = None  # None: when stdin, stdout and stderr are terminals
    stdin: bool = False
    detach_keys: bytes = b"\x10\x11"


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Run a command in a running job",
)
@click.option(
    "-i",
    "--stdin",
    "stdin",
    is_flag=True,
    help="Pass standard input on to the command (a TTY always gets the keyboard).",
)
@tty_option
@detach_keys_option
@click.argument("job", type=JOB)
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def command(
    ctx: click.Context,
    stdin: bool,
    tty: bool | None,
    detach_keys: bytes,
    job: str,
    cmd: tuple[str, ...],
) -> None:
    """Run CMD in a running job (same environment, working dir and limits) and exit with
    its exit code (125 if the connection ended without one).

    It returns as soon as CMD exits. Standard input is not read unless -i says so (as
    `docker exec` and `kubectl exec`); then its end reaches CMD as EOF. With a TTY (-t, the
    default when stdin, stdout and stderr are terminals) the keyboard goes to CMD: -t alone
    is docker's -it.

    \b
    Examples:
      neuro exec train -- nvidia-smi
      neuro exec -t train bash
      echo data | neuro exec -i train -- sh -c 'cat > /tmp/in'
    """
    opts = Options(job, cmd, tty, stdin, detach_keys)
    run_async(ctx, lambda deps: run(opts, deps))


async def run(opts: Options, deps: Deps) -> int:
    io = deps.io
    tty = opts.tty
    if tty is None:
        tty = io.interactive
    elif tty and not io.interactive:
        raise CLIError(
            "-t needs a terminal: stdin, stdout and stderr must all be terminals",
            ExitCode.USAGE,
            hint="use -T (and -i to pass stdin on)",
        )
    async with deps.client() as client:
        job_id = await resolve_job(client, opts.job)
        job = await client.jobs.status(job_id)
        if not job.status.is_running:
            raise CLIError(
                f"job {job_id} is not running: {not_running_text(job)}", ExitCode.BAD_INPUT
            )
    outcome = await _exec_with_resume(
        deps, job_id, list(opts.cmd), tty, opts.detach_keys, stdin=tty or opts.stdin
    )
    if outcome.detached:
        io.err("\r\nDetached: the command was stopped.")
        return 0
    if outcome.exit_code is None:
        io.err("ERROR: the connection ended without the command's exit code")
        return int(ExitCode.PLATFORM)
    return outcome.exit_code


async def _exec_with_resume(
    deps: Deps,
    job_id: str,
    cmd: list[str],
    tty: bool,
    detach_keys: bytes,
    *,
    stdin: bool,
    retry_for: float = 60.0,
) -> Outcome:
    """Run the command; when the connection drops, reconnect to the same command (the server
    keeps it for a while) and resume its output at the byte where it stopped."""
    from neuro_sdk import ResourceNotFound

    from ._jobs_common import is_connection_error

    loop = asyncio.get_running_loop()
    outcome = Outcome()
    # (a queue that outlives reconnects; a TTY reads its keyboard itself)
    stdin_queue: asyncio.Queue[bytes | None] | None = (
        asyncio.Queue(maxsize=16) if stdin and not tty else None
    )
    reader = None if stdin_queue is None else loop.create_task(read_stdin(stdin_queue))
    exec_id: str | None = None
    start = 0
    delay = 0.1
    give_up = loop.time() + retry_for
    try:
        while True:
            try:
                async with (
                    deps.client() as client,
                    client.jobs.exec(
                        job_id,
                        cmd,
                        tty=tty,
                        stdin=stdin,
                        stdout=True,
                        stderr=not tty,
                        resumable=exec_id is None,
                        resume=exec_id,
                        offset=start + outcome.seen,
                        size=terminal_size(sys.stdout.fileno()) if tty else None,
                    ) as stream,
                ):
                    exec_id = stream.exec_id or exec_id
                    start, outcome.seen = start + outcome.seen, 0
                    if tty:
                        await pump_tty(stream, outcome, detach_keys=detach_keys)
                    else:
                        await pump_plain(
                            stream, outcome, forward_stdin=False, stdin_queue=stdin_queue
                        )
                if outcome.detached or outcome.exit_code is not None or exec_id is None:
                    return outcome
                # the stream ended without an exit code: the connection dropped
            except ResourceNotFound:
                if exec_id is None:
                    raise
                return outcome  # the command ended (or expired) while we were away
            except Exception as e:
                if not is_connection_error(e) or loop.time() > give_up:
                    raise
            if loop.time() > give_up:
                return outcome
            deps.io.err(("\r\n" if tty else "") + f"Connection lost; reconnecting in {delay:.1f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
