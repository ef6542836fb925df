"""neuro capacity: how many more jobs of each preset fit now."""

from __future__ import annotations

import click

from ..deps import Deps
from ._jobs_common import run_async


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               short_help="Show how many jobs of each preset fit now")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Show how many more jobs of each preset can start now.

    \b
    Examples:
      neuro capacity
    """
    run_async(ctx, lambda deps: run(deps))


async def run(deps: Deps) -> int:
    async with deps.client() as client:
        cap = await client.jobs.get_capacity()
    deps.io.out("PRESET\tJOBS AVAILABLE")
    for name, n in cap.items():
        deps.io.out(f"{name}\t{n}")
    return 0
