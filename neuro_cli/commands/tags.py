"""neuro job tags: the tags you have put on jobs."""

from __future__ import annotations

import click

from ..deps import Deps
from ._jobs_common import run_async


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="List the tags of your jobs",
)
@click.pass_context
def command(ctx: click.Context) -> None:
    """List every tag you have put on jobs (neuro run --tag), one per line.

    \b
    Examples:
      neuro job tags
      neuro ps -a -t "$(neuro job tags | head -1)"
    """

    async def run(deps: Deps) -> int:
        async with deps.client() as client:
            for tag in await client.jobs.tags():
                deps.io.out(tag)
        return 0

    run_async(ctx, run, loop=False)
