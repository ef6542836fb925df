"""neuro job send-signal: deliver a signal to a running job (e.g. "checkpoint now")."""

from __future__ import annotations

import signal as signal_mod

import click

from ..completion.types import JOB
from ..deps import Deps
from ._jobs_common import resolve_job, run_async


def parse_signal(value: str) -> str:
    """Validate a signal name or number locally: 'USR1', 'SIGUSR1', 'usr1', '10'."""
    text = value.strip()
    if text.isdigit():
        if int(text) in {int(s) for s in signal_mod.valid_signals()} and int(text) != 0:
            return text
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if isinstance(getattr(signal_mod, name, None), signal_mod.Signals):
            return name
    raise ValueError(f"invalid signal {value!r}: use a name like USR1, TERM, HUP or a number")


def _signal(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_signal(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Send a signal to a job")
@click.argument("job", type=JOB)
@click.argument("signal", callback=_signal)
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
